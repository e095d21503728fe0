"""``stitch``: register + fuse stored tile versions and publish the mosaic as a derived version."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from imagelib.errors import InputError
from imagelib.stitching.layout import Layout
from imagelib.stitching.register import Registration, StitchParams, register_tiles
from imagelib.stitching.tiles import check_count, tile_set

#: ``progress(phase, done, total)``: phase ``"register"`` counts edges, ``"fuse"`` counts mosaic chunks
StitchProgress = Callable[[str, int, int], None]


@dataclass
class StitchResult:
    """A stitch: the derived version (None for lazy-array input), positions, report and the lazy mosaic."""

    version: str | None
    positions: np.ndarray
    placed_by_model: np.ndarray
    report: dict[str, Any]
    mosaic: xr.DataArray
    parents: list[str] = field(default_factory=list)
    op: dict[str, Any] | None = None
    deduplicated: bool = False

    def summary(self) -> dict[str, Any]:
        """The CLI/API result ``{"version","parents","op","report"}``."""
        return {"version": self.version, "parents": self.parents, "op": self.op, "report": self.report}


def stitch_operation(tiles: Sequence[str], layout: Layout, params: StitchParams) -> dict[str, Any]:
    """The lineage op: inputs only (tile order, layout, params), so equal inputs give equal IDs."""
    return {"op": "stitch", "tiles": list(tiles), "layout": layout.to_json(), "params": params.to_json()}


def check_size(layout: Layout, bands: int = 1, lib: Any = None) -> None:
    """``DIMENSIONS_TOO_LARGE`` when the nominal mosaic exceeds the configured pixel limits."""
    from imagelib.context import current

    settings = current(lib).settings
    shape = layout.mosaic_shape()
    # Jitter can grow the mosaic a little beyond the nominal box; the guard is about orders of magnitude.
    pixels = int(np.prod(shape)) * bands
    if pixels > settings.max_pixels or max(shape) > settings.max_side:
        raise InputError(
            f"the mosaic would be {shape} ({pixels} px), over the limit",
            code="DIMENSIONS_TOO_LARGE",
            field="layout",
            expected={"max_pixels": settings.max_pixels, "max_side": settings.max_side},
            found=list(shape),
        )


def _phase(progress: bool | StitchProgress, phase: str) -> Callable[[int, int], None] | None:
    """The ``(done, total)`` callback of one phase of a :data:`StitchProgress` (None without one)."""
    if not callable(progress):
        return None
    return lambda done, total: progress(phase, done, total)


def _stored_result(version: str, row: dict[str, Any], result: dict[str, Any], lib: Any) -> StitchResult:
    from imagelib.stored import open_version

    saved = (row.get("attrs") or {}).get("stitch") or {}
    return StitchResult(
        version,
        np.asarray(saved.get("positions", []), dtype=np.float64),
        np.asarray(saved.get("placed_by_model", []), dtype=bool),
        saved.get("report", {}),
        open_version(version, lib=lib),
        result["parents"],
        result["op"],
        deduplicated=True,
    )


def stitch(
    tiles: Sequence[Any],
    layout: Layout,
    *,
    namespace: str | None = None,
    dataset: str | None = None,
    flat: Any = None,
    dark: Any = None,
    lib: Any = None,
    progress: bool | StitchProgress = False,
    params: StitchParams | None = None,
    **options: Any,
) -> StitchResult:
    """Stitch tiles placed by ``layout``; version IDs are published as a derived version, arrays are not.

    ``options`` are :class:`StitchParams` fields: ``channel``, ``max_shift``, ``filter_sigma``,
    ``threshold`` (``"auto"`` or a float), ``solver`` (``least_squares``|``spanning_tree``), ``blend``, …
    ``progress``: True for a bar on stderr, or a :data:`StitchProgress` callable (edges registered, then
    chunks fused when a version is written).
    """
    params = params or StitchParams.from_json(options)
    versions = all(isinstance(t, str) for t in tiles) and len(tiles) > 0
    if not versions:
        tileset = tile_set(tiles, layout, channel=params.channel, flat=flat, dark=dark)
        check_size(layout, tileset.bands, lib)
        reg = register_tiles(tileset, layout, params, _phase(progress, "register"))
        return StitchResult(None, reg.positions, reg.placed_by_model, reg.report, reg.fuse())
    return _stitch_versions(list(tiles), layout, params, namespace, dataset, flat, dark, lib, progress)


def _stitch_versions(
    tiles: list[str],
    layout: Layout,
    params: StitchParams,
    namespace: str | None,
    dataset: str | None,
    flat: Any,
    dark: Any,
    lib: Any,
    progress: bool | StitchProgress,
) -> StitchResult:
    from imagelib.context import current
    from imagelib.stored import Provenance, open_version, write_version
    from imagelib.versioning import check_version_id, derived_version_id

    lib = current(lib)
    for version in tiles:
        check_version_id(version)
    check_count(tiles, layout)
    check_size(layout, 1, lib)
    if flat is not None or dark is not None:
        # Corrections change the pixels, so they would have to enter the op (and the ID) as data.
        raise InputError("flat/dark correction is only for array input", code="STITCH_INCOMPATIBLE_TILES")
    operation = stitch_operation(tiles, layout, params)
    derived = derived_version_id(tiles, operation)
    result = {"version": derived, "parents": list(tiles), "op": operation}
    if lib.catalog.has_version(derived):
        return _stored_result(derived, lib.catalog.get_version(derived), result, lib)
    arrays = [open_version(v, lib=lib) for v in tiles]
    tileset = tile_set(arrays, layout, channel=params.channel)
    check_size(layout, tileset.bands, lib)
    reg: Registration = register_tiles(tileset, layout, params, _phase(progress, "register"))
    # Chunks are fused while write_version reads the mosaic through, so they count as it stores them.
    mosaic = reg.fuse(on_chunk=_phase(progress, "fuse"))
    first = lib.catalog.get_version(tiles[0])
    if namespace is None or dataset is None:
        ns, ds = first["datasets"][0].split("/", 1)
        namespace, dataset = namespace or ns, dataset or f"{ds}-mosaic"
    saved = {
        "positions": reg.positions.tolist(),
        "placed_by_model": reg.placed_by_model.tolist(),
        "report": reg.report,
    }
    mosaic.attrs.update(
        {k: v for k, v in arrays[0].attrs.items() if k in ("spacing", "band_names", "format")}
    )
    # In the data's attrs, so both the catalog row and the group metadata carry positions and report.
    mosaic.attrs["stitch"] = saved
    write_version(
        mosaic,
        version=derived,
        namespace=namespace,
        dataset=dataset,
        origin=Provenance(kind="derived", parents=dict.fromkeys(tiles, operation)),
        lib=lib,
        progress=bool(progress) and not callable(progress),
    )
    stored = open_version(derived, lib=lib)
    return StitchResult(
        derived, reg.positions, reg.placed_by_model, reg.report, stored, list(tiles), operation
    )
