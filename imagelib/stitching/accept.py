"""Edge acceptance: max-shift and score thresholds, ``"auto"`` from a permutation null."""

from __future__ import annotations

from collections.abc import Sequence

import dask
import numpy as np

from imagelib.stitching.layout import Layout
from imagelib.stitching.pairs import Crop, Edge, MatchParams, crop_for, delayed_measure, max_shift_px
from imagelib.stitching.tiles import TileSet

#: the rival's NCC at this fraction of the best one's makes an edge ambiguous (periodic texture)
AMBIGUITY = 0.8
#: at least this many null pairs, at most NULL_MAX
NULL_MIN, NULL_MAX = 24, 100
#: the threshold when no pair of crops is known not to overlap (tiny layouts)
FALLBACK_THRESHOLD = 0.3


def _far_region(crop: Crop, layout: Layout, j: int) -> tuple[slice, ...] | None:
    """``region_j`` moved to the opposite side of tile ``j`` on its thinnest axis (no shared content)."""
    sizes = [s.stop - s.start for s in crop.region_j]
    axis = int(np.argmin(np.array(sizes) / layout.tile_shapes[j]))
    n, size = int(layout.tile_shapes[j, axis]), sizes[axis]
    start = crop.region_j[axis].start
    moved = n - size if start < n / 2 else 0
    if abs(moved - start) < 2 * size:
        return None  # the tile is too narrow: the far crop would overlap the near one
    region = list(crop.region_j)
    region[axis] = slice(moved, moved + size)
    return tuple(region)


def null_pairs(
    layout: Layout, edges: Sequence[Edge], grow: np.ndarray, count: int, seed: int
) -> list[tuple[int, tuple[slice, ...], int, tuple[slice, ...]]]:
    """Pairs of crops known not to overlap: an edge's crop of ``i`` against a non-neighbour's crop."""
    rng = np.random.default_rng(seed)
    touching = {(e.i, e.j) for e in edges} | {(e.j, e.i) for e in edges}
    touching |= {(a, b) for a, b in layout.neighbours(diagonal=True)} | {
        (b, a) for a, b in layout.neighbours(diagonal=True)
    }
    out = []
    for _ in range(count * 4):
        if len(out) >= count or not edges:
            break
        edge = edges[int(rng.integers(len(edges)))]
        crop = crop_for(layout, edge.i, edge.j, grow)
        others = [
            k
            for k in range(len(layout))
            if k != edge.i
            and (edge.i, k) not in touching
            and np.all(layout.tile_shapes[k] >= [s.stop for s in crop.region_j])
        ]
        if others:
            k = others[int(rng.integers(len(others)))]
            out.append((edge.i, crop.region_i, k, crop.region_j))
        else:
            far = _far_region(crop, layout, edge.j)
            if far is not None:
                out.append((edge.i, crop.region_i, edge.j, far))
    return out


def auto_threshold(
    tiles: TileSet,
    layout: Layout,
    edges: Sequence[Edge],
    *,
    max_shift: float | Sequence[float] | None,
    params: MatchParams,
    false_positive_ratio: float = 0.01,
    seed: int = 0,
) -> tuple[float, dict[str, object]]:
    """The (1 − ``false_positive_ratio``) quantile of scores of non-overlapping pairs, and its summary."""
    grow = max_shift_px(max_shift, layout)
    count = int(np.clip(len(edges), NULL_MIN, NULL_MAX))
    pairs = null_pairs(layout, edges, grow, count, seed)
    tasks = [delayed_measure(tiles, a, ra, b, rb, params) for a, ra, b, rb in pairs]
    found = dask.compute(*tasks, scheduler="threads") if tasks else []
    # A pair with no usable texture scores like no match at all.
    scores = np.array([m.score if np.isfinite(m.score) else 0.0 for m in found], dtype=float)
    if scores.size == 0:
        return FALLBACK_THRESHOLD, {"null_pairs": 0, "seed": seed, "fallback": True}
    threshold = float(np.quantile(scores, 1.0 - false_positive_ratio))
    summary = {
        "null_pairs": int(scores.size),
        "seed": seed,
        "null_median": float(np.median(scores)),
        "null_max": float(scores.max()),
    }
    return threshold, summary


def accept_edges(edges: Sequence[Edge], threshold: float, max_shift: np.ndarray) -> None:
    """Set ``accepted``/``reason`` on every edge (no texture, max shift, ambiguity, score)."""
    for edge in edges:
        edge.accepted = False
        if edge.shift is None:
            edge.reason = edge.reason or "no_texture"
        elif np.any(np.abs(edge.shift - edge.nominal) > max_shift + 1e-9):
            edge.reason = "max_shift"
        elif np.isfinite(edge.rival) and edge.rival >= AMBIGUITY * edge.ncc:
            edge.reason = "ambiguous"
        elif not edge.score > threshold:
            edge.reason = "low_score"
        else:
            edge.accepted, edge.reason = True, "ok"
