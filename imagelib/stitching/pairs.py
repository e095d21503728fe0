"""Pairwise registration: the neighbour graph, the overlap crops and one phase correlation per edge."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np

from imagelib.backend import select_backend, to_xp
from imagelib.stitching.layout import Layout
from imagelib.stitching.phasecorr import match
from imagelib.stitching.tiles import TileSet

Region = tuple[slice, ...]


@dataclass
class Edge:
    """One neighbour pair: nominal and measured offset of tile ``j`` relative to tile ``i`` (px)."""

    i: int
    j: int
    nominal: np.ndarray
    shift: np.ndarray | None = None
    ncc: float = float("nan")
    rival: float = float("nan")
    score: float = float("nan")
    accepted: bool = False
    reason: str | None = None
    residual: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report row of this edge (strict JSON: NaN as null)."""

        def num(v: float | None) -> float | None:
            return None if v is None or not np.isfinite(v) else round(float(v), 6)

        return {
            "tiles": [self.i, self.j],
            "nominal": [num(v) for v in self.nominal],
            "shift": None if self.shift is None else [num(v) for v in self.shift],
            "score": num(self.score),
            "ncc": num(self.ncc),
            "accepted": self.accepted,
            "reason": self.reason,
            "residual": num(self.residual),
        }


@dataclass(frozen=True)
class Crop:
    """Where an edge reads each tile: ``region_i`` of tile i, ``region_j`` of tile j (same shape)."""

    region_i: Region
    region_j: Region

    def offset(self) -> np.ndarray:
        """``c_i - c_j``: added to a crop-frame shift it gives the tile-frame offset ``p_j - p_i``."""
        return np.array([a.start - b.start for a, b in zip(self.region_i, self.region_j, strict=True)], float)


def max_shift_px(max_shift: float | Sequence[float] | None, layout: Layout) -> np.ndarray:
    """``max_shift`` per axis in pixels; the default is 10 % of the smallest tile side on each axis."""
    if max_shift is None:
        return np.ceil(0.1 * layout.tile_shapes.min(axis=0)).astype(float)
    return np.broadcast_to(np.asarray(max_shift, dtype=float), (layout.ndim,)).copy()


def crop_for(layout: Layout, i: int, j: int, grow: np.ndarray) -> Crop:
    """The nominal overlap of ``i`` and ``j`` grown by ``grow`` into each tile, trimmed to one shape."""
    lo, hi = layout.intersection(i, j)
    centre = (lo + hi) / 2
    region_i, region_j = [], []
    for k in range(layout.ndim):
        spans = []
        for t in (i, j):
            start = max(lo[k] - grow[k], layout.positions[t, k]) - layout.positions[t, k]
            stop = (
                min(hi[k] + grow[k], layout.positions[t, k] + layout.tile_shapes[t, k])
                - layout.positions[t, k]
            )
            spans.append((int(np.floor(start + 1e-9)), int(np.ceil(stop - 1e-9))))
        length = min(b - a for a, b in spans)
        out = []
        for t, (a, b) in zip((i, j), spans, strict=True):
            # Keep the part of the longer span centred on the nominal intersection.
            want = round(centre[k] - layout.positions[t, k] - length / 2)
            start = min(max(want, a), b - length)
            out.append(slice(start, start + length))
        region_i.append(out[0])
        region_j.append(out[1])
    return Crop(tuple(region_i), tuple(region_j))


@dataclass(frozen=True)
class MatchParams:
    """Per-pair matching knobs shared by the edges and the permutation null."""

    filter_sigma: float = 2.0
    upsample: int = 10
    backend: str = "auto"
    prefilter: list[dict[str, Any]] | None = None


def measure(tiles: TileSet, a: int, region_a: Region, b: int, region_b: Region, params: MatchParams) -> Any:
    """Read the two crops (once each) and match them."""
    xp = select_backend(params.backend)
    crop_a = tiles.read(a, region_a)
    crop_b = tiles.read(b, region_b)
    if params.prefilter:
        from imagelib.filters import apply_chain

        crop_a = apply_chain(crop_a, params.prefilter, backend="numpy")
        crop_b = apply_chain(crop_b, params.prefilter, backend="numpy")
    return match(
        to_xp(crop_a, xp), to_xp(crop_b, xp), xp, sigma=params.filter_sigma, upsample=params.upsample
    )


def delayed_measure(
    tiles: TileSet, a: int, region_a: Region, b: int, region_b: Region, params: MatchParams
) -> Any:
    """A Dask task for :func:`measure` (a closure: Dask must neither traverse nor hash the tile set)."""
    return dask.delayed(functools.partial(measure, tiles, a, region_a, b, region_b, params), pure=False)()


def register_pairs(
    tiles: TileSet,
    layout: Layout,
    *,
    max_shift: float | Sequence[float] | None = None,
    params: MatchParams | None = None,
    diagonal: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Edge]:
    """Measure every neighbour edge of the nominal layout (in parallel, Dask threads)."""
    params = params or MatchParams()
    grow = max_shift_px(max_shift, layout)
    edges, crops, tasks = [], [], []
    for i, j in layout.neighbours(diagonal=diagonal):
        crop = crop_for(layout, i, j, grow)
        edges.append(Edge(i, j, layout.positions[j] - layout.positions[i]))
        crops.append(crop)
        tasks.append(delayed_measure(tiles, i, crop.region_i, j, crop.region_j, params))
    results = _compute(tasks, progress)
    for edge, crop, found in zip(edges, crops, results, strict=True):
        edge.ncc, edge.rival, edge.score = found.ncc, found.rival, found.score
        if found.shift is None:
            edge.reason = found.reason
        else:
            edge.shift = crop.offset() + found.shift
    return edges


def _compute(tasks: list[Any], progress: Callable[[int, int], None] | None) -> list[Any]:
    """Compute delayed tasks on Dask's thread pool, reporting (done, total) in batches."""
    if not tasks:
        return []
    if progress is None:
        return list(dask.compute(*tasks, scheduler="threads"))
    out: list[Any] = []
    batch = max(1, len(tasks) // 20)
    for start in range(0, len(tasks), batch):
        out.extend(dask.compute(*tasks[start : start + batch], scheduler="threads"))
        progress(len(out), len(tasks))
    return out
