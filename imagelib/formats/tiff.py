"""TIFF / BigTIFF / OME-TIFF on tifffile; geo-referenced TIFFs go to the rasterio reader.

What a TIFF becomes:

- **GeoTIFF / COG** (GeoTIFF tags, no OME-XML): rasterio, ``band,y,x``; GeoKeys naming an EPSG code that
  does not exist are ``CRS_INVALID`` (GDAL would guess a CRS).
- **Pyramidal TIFF** (COG overviews, whole-slide images: reduced-resolution IFDs or SubIFDs): level 0 is
  the image; :func:`open_tiff_levels` also returns the overviews that are exact 2× reductions
  (``ceil(n / 2)`` per axis, as imagelib's own pyramid) as ready-made pyramid levels, stopping at the first
  that is not.
- **Multi-page TIFF without OME-XML**: tifffile groups consecutive pages of equal shape and dtype into one
  series (axis ``I``), which becomes a ``z,y,x`` stack (ImageJ hyperstacks: T/Z → ``z``, C → ``band``).
  Pages of another shape, or pages written as separate series, are further series: only series 0 is
  read, and a ``SERIES_IGNORED`` warning says how many were left out.
- **OME-TIFF** (an ``<OME>`` root in the ImageDescription): series 0 with physical sizes and channel
  names from ``ome-types``; XML that does not parse gives a ``METADATA_INVALID`` warning, never a silent
  plain ``tiff``.
"""

from __future__ import annotations

import math
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import xarray as xr

from imagelib.errors import InputError
from imagelib.formats.detect import TIFF_MAGICS, has_magic
from imagelib.formats.georef import check_geokeys
from imagelib.formats.geotiff import open_geotiff_levels
from imagelib.formats.lazy import LazySource, guard_dimensions, preferred_chunks, to_dask, yx_chunks
from imagelib.formats.meta import RasterMeta
from imagelib.formats.ome import claims_ome, fill_ome, parse_ome

# tifffile axis letters → imagelib dims; singleton T/Z/C/S/Q axes beyond the three kept are squeezed.
AXIS_NAMES = {"Y": "y", "X": "x", "Z": "z", "C": "band", "S": "band", "T": "t", "I": "z", "Q": "band"}
# ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory, GDAL_METADATA, GDAL_NODATA
GEO_TAGS = (33550, 33922, 34264, 34735, 42112, 42113)


class TiffReader:
    """TIFF, BigTIFF, GeoTIFF/COG (through rasterio) and OME-TIFF."""

    name = "tiff"

    def guess_can_open(self, path: Path) -> bool:
        """A classic or BigTIFF header, either byte order."""
        return has_magic(path, TIFF_MAGICS)

    def open(self, path: Path, address: str | None) -> xr.DataArray:
        """Series 0, level 0, lazily (``address`` is not used by TIFF)."""
        return open_tiff(path)

    def open_levels(self, path: Path, address: str | None) -> list[xr.DataArray]:
        """Level 0 and the internal overviews that are exact 2× reductions."""
        return open_tiff_levels(path)


def open_tiff(path: Path) -> xr.DataArray:
    """Open any TIFF: GeoTIFF/COG through rasterio, plain and OME-TIFF through tifffile."""
    return open_tiff_levels(path, max_levels=1)[0]


def open_tiff_levels(path: Path, max_levels: int | None = None) -> list[xr.DataArray]:
    """Level 0 and, up to ``max_levels`` in all, the overviews that halve each side (``ceil(n/2)``)."""
    check_first_ifd(path)
    tif = _tiff_file(path, {})
    flags: dict[str, bool] = {}
    description = tif.pages.first.description if tif.pages else ""
    ome = claims_ome(description)
    if ome and isinstance(parse_ome(description), str) and not well_formed(description):
        # tifffile would log an error and guess the series on every open; say so once, as a warning
        tif.close()
        flags = {"is_ome": False}
        tif = _tiff_file(path, flags)
    with tif:
        if not tif.pages or not tif.series:
            raise InputError(f"{path}: TIFF without images", code="FORMAT_CORRUPT")
        series = tif.series[0]
        guard_dimensions(series.shape, series.dtype)
        check_extents(tif, path.stat().st_size, path)
        page = tif.pages.first
        if _has_geo_tags(page) and not ome:
            check_geokeys(page.tags, path)
            return open_geotiff_levels(path, max_levels)
        levels = [_open_series(path, tif, series, ome, 0, flags)]
        for level in range(1, min(len(series.levels), max_levels or len(series.levels))):
            if not halves(series.levels[level - 1].shape, series.levels[level].shape):
                break
            levels.append(_open_series(path, tif, series, ome, level, flags))
        return levels


def _tiff_file(path: Path, flags: dict[str, bool]) -> tifffile.TiffFile:
    try:
        return tifffile.TiffFile(path, **flags)
    except Exception as exc:  # tifffile raises many types for malformed headers
        raise InputError(f"{path}: TIFF header is unreadable ({exc})", code="FORMAT_CORRUPT") from exc


def well_formed(xml: str) -> bool:
    """True when the text parses as XML (syntax only; the OME schema is ome-types' concern)."""
    from xml.etree import ElementTree

    try:
        ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return False
    return True


def halves(parent: tuple[int, ...], child: tuple[int, ...]) -> bool:
    """True when ``child`` is ``parent`` with its last two axes halved as ``ceil(n / 2)``."""
    return (
        len(parent) == len(child)
        and tuple(parent[:-2]) == tuple(child[:-2])
        and all(c == math.ceil(p / 2) for p, c in zip(parent[-2:], child[-2:], strict=True))
    )


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


def _open_series(
    path: Path, tif: tifffile.TiffFile, series: Any, ome: bool, level: int, flags: dict[str, bool]
) -> xr.DataArray:
    shaped = series.levels[level]
    dims, keep = _dims(series.axes, shaped.shape)
    shape = tuple(n for n, k in zip(shaped.shape, keep, strict=True) if k)
    dtype = np.dtype(series.dtype)
    bands = shape[dims.index("band")] if "band" in dims else None
    meta = RasterMeta(
        format="ome-tiff" if ome else "tiff",
        band_names=[f"b{i + 1}" for i in range(bands)] if bands else [],
    )
    if ome:
        fill_ome(tif.pages.first.description, meta, bands)
    if level == 0 and len(tif.series) > 1:
        meta.warn(
            "SERIES_IGNORED",
            f"{path}: {len(tif.series)} image series (pages of different shapes or separate stacks); "
            f"only series 0 {series.axes} {tuple(series.shape)} is read",
            "series",
        )

    local = threading.local()

    def read(key: tuple[slice, ...]) -> np.ndarray:
        # One zarr view per thread; aszarr reads only the strips/tiles intersecting the request. A
        # pyramidal series is a zarr group of levels, so the level is always named.
        if getattr(local, "arr", None) is None:
            import zarr  # ~0.15 s to import: only TIFF (not GeoTIFF) inputs read through it

            store = tifffile.TiffFile(path, **flags).series[0].aszarr(level=level)
            local.arr = zarr.open_array(store, mode="r")
        it = iter(key)
        full = tuple(next(it) if k else 0 for k in keep)
        return np.asarray(local.arr[full])

    # as for GeoTIFF: strips of whole rows, or CHUNK² blocks of whole tiles (see yx_chunks)
    height, width = shape[dims.index("y")], shape[dims.index("x")]
    encoding = preferred_chunks(_block_shape(shaped.keyframe, height, width))
    rows, cols = yx_chunks(height, width, encoding)
    chunks = tuple({"y": rows, "x": cols, "band": n}.get(d, 1) for d, n in zip(dims, shape, strict=True))
    data = to_dask(LazySource(shape, dtype, read), chunks=chunks)
    # Pixel-interleaved RGB (axes YXS) and similar: move band/z first, as every other reader does.
    canonical = [d for d in dims if d not in ("y", "x")] + ["y", "x"]
    out = xr.DataArray(data, dims=dims, attrs=meta.to_attrs()).transpose(*canonical)
    out.encoding.update(encoding)
    return out


def _block_shape(page: Any, height: int, width: int) -> tuple[int, int]:
    """The (rows, columns) of one stored tile, or of one strip."""
    if page.is_tiled:
        return page.tilelength, page.tilewidth
    return min(page.rowsperstrip or height, height), width


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
