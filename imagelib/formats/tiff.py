"""TIFF / BigTIFF / OME-TIFF on tifffile; dispatch of geo-referenced TIFFs to the rasterio reader."""

from __future__ import annotations

import re
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import xarray as xr
import zarr

from imagelib.errors import InputError
from imagelib.formats.geotiff import open_geotiff
from imagelib.formats.lazy import CHUNK, LazySource, guard_dimensions, to_dask

# tifffile axis letters → imagelib dims; singleton T/Z/C/S/Q axes beyond the three kept are squeezed.
AXIS_NAMES = {"Y": "y", "X": "x", "Z": "z", "C": "band", "S": "band", "T": "t", "I": "z", "Q": "band"}
# ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory, GDAL_METADATA, GDAL_NODATA
GEO_TAGS = (33550, 33922, 34264, 34735, 42112, 42113)


def open_tiff(path: Path) -> xr.DataArray:
    """Open any TIFF: GeoTIFF/COG through rasterio, plain and OME-TIFF through tifffile."""
    check_first_ifd(path)
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises many types for malformed headers
        raise InputError(f"{path}: TIFF header is unreadable ({exc})", code="FORMAT_CORRUPT") from exc
    with tif:
        if not tif.pages or not tif.series:
            raise InputError(f"{path}: TIFF without images", code="FORMAT_CORRUPT")
        series = tif.series[0]
        guard_dimensions(series.shape, series.dtype)
        check_extents(tif, path.stat().st_size, path)
        if _has_geo_tags(tif.pages[0]) and not tif.is_ome:
            return open_geotiff(path)
        return _open_series(path, tif, series)


def _has_geo_tags(page: Any) -> bool:
    return any(code in page.tags for code in GEO_TAGS)


def check_first_ifd(path: Path) -> None:
    """A first IFD offset past the end of the file means the tail (often the IFD itself) was cut off."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(16)
    order = "<" if head[:2] == b"II" else ">"
    big = struct.unpack(order + "H", head[2:4])[0] == 43
    if len(head) < (16 if big else 8):
        raise InputError(f"{path}: TIFF header is cut short ({size} bytes)", code="TRUNCATED", field="size")
    offset = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
    if offset >= size:
        raise InputError(
            f"{path}: first image directory at byte {offset} but the file has {size} bytes",
            code="TRUNCATED",
            field="size",
            expected=offset,
            found=size,
        )


def check_extents(tif: tifffile.TiffFile, size: int, path: Path) -> None:
    """Refuse a TIFF whose strips/tiles point past the end of the file (truncated download)."""
    for page in tif.pages:
        offsets, counts = page.dataoffsets, page.databytecounts
        if len(offsets) and max(o + c for o, c in zip(offsets, counts, strict=False)) > size:
            end = max(o + c for o, c in zip(offsets, counts, strict=False))
            raise InputError(
                f"{path}: image data ends at byte {end} but the file has {size} bytes",
                code="TRUNCATED",
                field="size",
                expected=end,
                found=size,
            )


def _open_series(path: Path, tif: tifffile.TiffFile, series: Any) -> xr.DataArray:
    dims, keep = _dims(series.axes, series.shape)
    shape = tuple(n for n, k in zip(series.shape, keep, strict=True) if k)
    dtype = np.dtype(series.dtype)
    attrs = _ome_attrs(tif) if tif.is_ome else {"format": "tiff"}

    local = threading.local()

    def read(key: tuple[slice, ...]) -> np.ndarray:
        # One zarr view per thread; aszarr reads only the strips/tiles intersecting the request.
        if getattr(local, "arr", None) is None:
            local.arr = zarr.open_array(tifffile.TiffFile(path).series[0].aszarr(), mode="r")
        it = iter(key)
        full = tuple(next(it) if k else 0 for k in keep)
        return np.asarray(local.arr[full])

    chunks = tuple({"y": CHUNK, "x": CHUNK, "band": n}.get(d, 1) for d, n in zip(dims, shape, strict=True))
    data = to_dask(
        LazySource(shape, dtype, read), chunks=tuple(min(c, n) for c, n in zip(chunks, shape, strict=True))
    )
    attrs.update(
        {
            "crs": None,
            "crs_wkt": None,
            "transform": None,
            "bounds": None,
            "nodata": None,
            "georeferenced": False,
            "band_names": [f"b{i + 1}" for i in range(shape[dims.index("band")])] if "band" in dims else [],
            "time": None,
        }
    )
    # Pixel-interleaved RGB (axes YXS) and similar: move band/z first, as every other reader does.
    canonical = [d for d in dims if d not in ("y", "x")] + ["y", "x"]
    return xr.DataArray(data, dims=dims, attrs=attrs).transpose(*canonical)


def _dims(axes: str, shape: tuple[int, ...]) -> tuple[tuple[str, ...], list[bool]]:
    """Map tifffile axes to at most three imagelib dims, squeezing singleton extras."""
    names = [AXIS_NAMES.get(a, a.lower()) for a in axes]
    keep = [n in ("y", "x") or size > 1 for n, size in zip(names, shape, strict=True)]
    dims = [n for n, k in zip(names, keep, strict=True) if k]
    if len(dims) > 3 or len(set(dims)) != len(dims):
        raise InputError(
            f"TIFF axes {axes} {shape} cannot be mapped to y,x / band,y,x / z,y,x",
            code="DIMENSIONS_NOT_ALLOWED",
            field="dims",
            found=axes,
        )
    if dims[0] == "t":
        dims[0] = "z"  # a time stack is treated as a volume of planes
    return tuple(dims), keep


def _ome_attrs(tif: tifffile.TiffFile) -> dict[str, Any]:
    xml = tif.ome_metadata or ""
    spacing = {}
    for axis in ("Z", "Y", "X"):
        match = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', xml)
        if match:
            spacing[axis.lower()] = float(match.group(1))
    return {"format": "ome-tiff", "spacing": spacing or None}
