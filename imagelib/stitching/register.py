"""``register``: pairwise registration + edge acceptance + global solve, as one report (no fusion)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from imagelib.backend import select_backend
from imagelib.errors import InputError
from imagelib.stitching.accept import accept_edges, auto_threshold
from imagelib.stitching.fuse import Blend, Interpolation, fuse
from imagelib.stitching.layout import Layout
from imagelib.stitching.pairs import Edge, MatchParams, max_shift_px, register_pairs
from imagelib.stitching.solve import Solver, solve
from imagelib.stitching.tiles import TileSet, tile_set


class StitchWarning(UserWarning):
    """A coded stitching warning (``STITCH_NO_OVERLAP``)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class StitchParams:
    """Every knob of a stitch (its canonical JSON is part of the derived version's op)."""

    channel: int = 0
    max_shift: float | tuple[float, ...] | None = None
    filter_sigma: float = 2.0
    upsample: int = 10
    prefilter: tuple[dict[str, Any], ...] | None = None
    diagonal: bool = False
    threshold: float | str = "auto"
    false_positive_ratio: float = 0.01
    seed: int = 0
    solver: Solver = "least_squares"
    max_residual: float = 2.0
    relative_residual: float = 4.0
    blend: Blend = "linear"
    interpolation: Interpolation = "linear"

    def __post_init__(self) -> None:
        from imagelib.errors import UsageError
        from imagelib.stitching.fuse import BLENDS

        choices = {
            "solver": ("least_squares", "spanning_tree"),
            "blend": BLENDS,
            "interpolation": ("linear", "fourier"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UsageError(
                    f"unknown {name} {getattr(self, name)!r}", field=name, expected=list(allowed)
                )
        if self.threshold != "auto" and not isinstance(self.threshold, int | float):
            raise UsageError("threshold must be 'auto' or a number", field="threshold", found=self.threshold)
        if not 0 < self.false_positive_ratio < 1:
            raise UsageError("false_positive_ratio must be in (0, 1)", field="false_positive_ratio")

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (tuples as lists)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StitchParams:
        """From a params JSON document (unknown keys are a usage error)."""
        from imagelib.errors import UsageError

        unknown = sorted(set(doc) - set(cls.__dataclass_fields__))
        if unknown:
            raise UsageError(f"unknown stitch parameters {unknown}", field="params", found=unknown)
        values = dict(doc)
        for key in ("max_shift", "prefilter"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass
class Registration:
    """Solved positions (N × ndim px) with the per-edge/per-tile report; ``fuse()`` builds the mosaic."""

    tiles: TileSet
    layout: Layout
    params: StitchParams
    positions: np.ndarray
    placed_by_model: np.ndarray
    edges: list[Edge]
    report: dict[str, Any] = field(default_factory=dict)

    def fuse(
        self,
        *,
        blend: Blend | None = None,
        interpolation: Interpolation | None = None,
        chunks: Sequence[int] | None = None,
        fill: float = 0,
        flat: Any = None,
        dark: Any = None,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> xr.DataArray:
        """The mosaic as a lazy DataArray (blend/interpolation default to the params'; flat/dark override)."""
        tiles = self.tiles
        if flat is not None or dark is not None:
            tiles = tile_set(tiles.arrays, self.layout, channel=self.params.channel, flat=flat, dark=dark)
        return fuse(
            tiles,
            self.positions,
            blend=blend or self.params.blend,
            interpolation=interpolation or self.params.interpolation,
            chunks=chunks,
            fill=fill,
            on_chunk=on_chunk,
        )


def _report(
    layout: Layout, edges: list[Edge], solution: Any, threshold: float, null: dict[str, Any], notes: list[str]
) -> dict[str, Any]:
    tiles = [
        {
            "tile": k,
            "position": [round(float(v), 4) for v in solution.positions[k]],
            "residual": round(float(solution.tile_residuals[k]), 4),
            "placed_by_model": bool(solution.placed_by_model[k]),
        }
        for k in range(len(layout))
    ]
    return {
        "tiles": tiles,
        "edges": [e.to_dict() for e in edges],
        "components": solution.components,
        "threshold": None if not np.isfinite(threshold) else round(float(threshold), 6),
        "null": null,
        "model": solution.model,
        "accepted": sum(e.accepted for e in edges),
        "notes": notes,
    }


def register_tiles(
    tiles: TileSet,
    layout: Layout,
    params: StitchParams,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "auto",
) -> Registration:
    """Register checked tiles against their layout (see :func:`register`)."""
    # Resolve the backend before any tile is read: a missing GPU is the caller's coded error, up front.
    backend = select_backend(backend).__name__
    notes: list[str] = []
    grow = max_shift_px(params.max_shift, layout)
    match_params = MatchParams(
        params.filter_sigma, params.upsample, backend, list(params.prefilter) if params.prefilter else None
    )
    isolated = layout.isolated() if len(layout) > 1 else []
    if 0 < len(isolated) < len(layout):
        raise InputError(
            f"tiles {isolated} overlap no other tile: a layout must connect every tile",
            code="STITCH_LAYOUT_MISMATCH",
            field="layout",
            found=isolated,
        )
    if len(layout) == 1:
        edges: list[Edge] = []
        notes.append("single_tile")
    elif len(isolated) == len(layout):
        edges = []
        notes.append("STITCH_NO_OVERLAP")
        warnings.warn(
            StitchWarning("no neighbouring tiles overlap: nominal positions are used", "STITCH_NO_OVERLAP"),
            stacklevel=3,
        )
    else:
        edges = register_pairs(
            tiles,
            layout,
            max_shift=params.max_shift,
            params=match_params,
            diagonal=params.diagonal,
            progress=progress,
        )
    null: dict[str, Any] = {}
    if params.threshold == "auto":
        if edges:
            threshold, null = auto_threshold(
                tiles,
                layout,
                edges,
                max_shift=params.max_shift,
                params=match_params,
                false_positive_ratio=params.false_positive_ratio,
                seed=params.seed,
            )
        else:
            threshold = float("nan")
    else:
        threshold = float(params.threshold)
    accept_edges(edges, threshold, grow)
    solution = solve(
        edges,
        layout,
        solver=params.solver,
        max_residual=params.max_residual,
        relative_residual=params.relative_residual,
    )
    report = _report(layout, edges, solution, threshold, null, notes)
    return Registration(tiles, layout, params, solution.positions, solution.placed_by_model, edges, report)


def register(
    tiles: Sequence[Any],
    layout: Layout,
    *,
    params: StitchParams | None = None,
    flat: Any = None,
    dark: Any = None,
    progress: Callable[[int, int], None] | None = None,
    backend: str = "auto",
    **options: Any,
) -> Registration:
    """Register lazy tiles (NumPy, Dask or xarray) placed by ``layout``: positions + report, no fusion.

    ``options`` are :class:`StitchParams` fields (``max_shift``, ``threshold``, ``solver``, …);
    ``backend`` picks NumPy or CuPy for the FFT work (``"auto"``: CuPy when a GPU is present).
    """
    params = params or StitchParams.from_json(options)
    tileset = tile_set(tiles, layout, channel=params.channel, flat=flat, dark=dark)
    return register_tiles(tileset, layout, params, progress, backend)


__all__ = ["Registration", "StitchParams", "StitchWarning", "register", "register_tiles"]
