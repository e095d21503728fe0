"""3D volumes ``(z, y, x)``: one plane per slice along any axis, resampled so each pixel is square in
physical units (anisotropic voxel sizes look right), and the three orthogonal views through a point."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from imagelib.errors import UsageError
from imagelib.tiling.cache import LruCache
from imagelib.tiling.source import MemoryPlane, Plane, StoredPlane, dims_of

if TYPE_CHECKING:  # zarr costs ~0.2 s to import; a plain local pyramid is read without it
    import zarr

    from imagelib.zarr_local import LocalGroup

AXES = ("z", "y", "x")
#: view name → the axis it is perpendicular to
VIEWS = {"xy": "z", "xz": "y", "yz": "x"}


def spacing(attrs: dict[str, Any]) -> dict[str, float]:
    """Physical voxel size per axis (1.0 where unknown)."""
    given = attrs.get("spacing") or {}
    return {a: float(given.get(a) or 1.0) for a in AXES}


def plane_for(
    group: zarr.Group | LocalGroup,
    key: str,
    axis: str | None = None,
    index: int | None = None,
    chunks: LruCache | None = None,
) -> Plane:
    """The plane to tile: the image itself, or slice ``index`` across ``axis`` of a volume."""
    dims = dims_of(group)
    if "z" not in dims:
        if axis not in (None, "z") or index not in (None, 0):
            raise UsageError("--axis/--index apply to z,y,x volumes only", field="axis")
        return StoredPlane(group, key, chunks=chunks)
    axis = axis or "z"
    if axis not in AXES:
        raise UsageError(f"axis must be one of {AXES}", field="axis", found=axis)
    size = group["0"].shape[dims.index(axis)]
    index = size // 2 if index is None else index
    if not 0 <= index < size:
        raise UsageError(f"index {index} outside 0..{size - 1} along {axis}", field="index", found=index)
    plane = StoredPlane(group, key, index, chunks) if axis == "z" else None
    sp = spacing(plane.attrs if plane else StoredPlane(group, key, 0).attrs)
    if plane is not None and sp["y"] == sp["x"]:
        return plane
    return section(group, key, axis, index, sp)


def section(
    group: zarr.Group | LocalGroup, key: str, axis: str, index: int, sp: dict[str, float]
) -> MemoryPlane:
    """A full-resolution slice in memory, resampled to square physical pixels."""
    attrs = StoredPlane(group, key, 0).attrs
    dims = dims_of(group)
    data = np.asarray(group["0"][tuple(index if a == axis else slice(None) for a in dims)])
    rows, cols = (a for a in dims if a != axis)
    return MemoryPlane(isotropic(data, sp[rows], sp[cols], attrs.get("nodata")), attrs)


def isotropic(data: np.ndarray, row_size: float, col_size: float, nodata: Any = None) -> np.ndarray:
    """Resample a 2D slice so rows and columns have the finer of the two physical sizes."""
    target = min(row_size, col_size)
    factors = (row_size / target, col_size / target)
    if factors == (1.0, 1.0):
        return data
    order = 0 if nodata is not None or data.dtype.kind == "f" else 1
    shape = [max(round(n * f), 1) for n, f in zip(data.shape, factors, strict=True)]
    zoom = [s / n for s, n in zip(shape, data.shape, strict=True)]
    from scipy import ndimage  # ~0.3 s to import; only volumes with anisotropic voxels need it

    return ndimage.zoom(data, zoom, order=order, mode="nearest", grid_mode=True)
