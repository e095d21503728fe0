"""GeoTIFF / COG reader on rasterio (GDAL restricted to the GTiff driver, no network, no sidecar scans)."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from rasterio.windows import Window

from imagelib.formats.georef import check_plausible, crs_label
from imagelib.formats.lazy import LazySource, guard_dimensions, preferred_chunks, to_dask, yx_chunks
from imagelib.formats.meta import RasterMeta

#: GDAL options for untrusted files: never list directories for sidecars, never reach the network.
SAFE_GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".imagelib-none",
    "GDAL_HTTP_MAX_RETRY": "0",
    "GTIFF_REPORT_COMPD_CS": "NO",
    # GDAL's block cache defaults to 5% of RAM and counts toward RSS; ingest reads each block once.
    "GDAL_CACHEMAX": 128,
    # decode the blocks of one multi-block read (a strip of a tiled file) on every core
    "GDAL_NUM_THREADS": "ALL_CPUS",
}


def safe_env() -> rasterio.Env:
    """A rasterio environment with the untrusted-input GDAL options set."""
    return rasterio.Env(**SAFE_GDAL_ENV)


def crs_string(crs: Any) -> str | None:
    """``AUTHORITY:CODE`` when the CRS has one, else WKT; None without a CRS."""
    return crs_label(crs)


class _Handles(threading.local):
    """One open dataset per thread: GDAL handles are not thread-safe."""

    ds: Any = None


def open_geotiff(path: Path, overview: int | None = None) -> xr.DataArray:
    """Open a GeoTIFF lazily as ``(band, y, x)`` with CRS, transform, bounds and nodata in attrs.

    ``overview`` opens GDAL's internal overview of that index (0 = the first reduction) instead.
    """
    options = {} if overview is None else {"overview_level": overview}
    with safe_env(), rasterio.open(path, driver="GTiff", **options) as ds:
        shape = (ds.count, ds.height, ds.width)
        guard_dimensions(shape, ds.dtypes[0])
        meta = _meta(ds, str(path))
        dtype = np.dtype(ds.dtypes[0])
        block = ds.block_shapes[0]
    handles = _Handles()

    def read(key: tuple[slice, ...]) -> np.ndarray:
        if handles.ds is None:
            with safe_env():
                handles.ds = rasterio.open(path, driver="GTiff", **options)
        b, y, x = key
        window = Window(x.start, y.start, x.stop - x.start, y.stop - y.start)
        with safe_env():  # GDAL reads config (block cache cap) at read time, not at open time
            return handles.ds.read(list(range(b.start + 1, b.stop + 1)), window=window)

    # all bands per chunk: pixel-interleaved files decode them together
    encoding = preferred_chunks(block)
    data = to_dask(LazySource(shape, dtype, read), chunks=(shape[0], *yx_chunks(*shape[1:], encoding)))
    out = xr.DataArray(data, dims=("band", "y", "x"), coords=_coords(meta, shape), attrs=meta.to_attrs())
    out.encoding.update(encoding)
    return out


def open_geotiff_levels(path: Path, max_levels: int | None = None) -> list[xr.DataArray]:
    """Level 0 and the internal overviews that halve each side (``ceil(n/2)``), up to ``max_levels``."""
    levels = [open_geotiff(path)]
    if max_levels == 1:
        return levels
    with safe_env(), rasterio.open(path, driver="GTiff") as ds:
        count = len(ds.overviews(1))
    for index in range(count):
        if max_levels and len(levels) >= max_levels:
            break
        parent = levels[-1].shape
        with safe_env(), rasterio.open(path, driver="GTiff", overview_level=index) as ds:
            size = (ds.height, ds.width)
        if size != (math.ceil(parent[1] / 2), math.ceil(parent[2] / 2)):
            break
        levels.append(open_geotiff(path, overview=index))
    return levels


def _meta(ds: Any, where: str) -> RasterMeta:
    nodata = ds.nodata
    georeferenced = ds.crs is not None or not ds.transform.is_identity
    if ds.crs is not None and not ds.transform.is_identity:
        # a CRS whose coordinates cannot hold this extent: search and XYZ tiles would be wrong
        from pyproj import CRS

        a, b, _, d, e, _ = list(ds.transform)[:6]
        check_plausible(
            CRS.from_wkt(ds.crs.to_wkt()), list(ds.bounds), max(abs(a), abs(b), abs(d), abs(e)), where
        )
    return RasterMeta(
        format="cog" if _is_cog(ds) else "geotiff",
        crs=crs_string(ds.crs),
        crs_wkt=ds.crs.to_wkt() if ds.crs else None,
        transform=list(ds.transform)[:6],
        bounds=list(ds.bounds),  # rasterio computes these from the affine (rotations included)
        nodata=None if nodata is None else float(nodata),
        band_names=[d or f"b{i + 1}" for i, d in enumerate(ds.descriptions)],
        time=ds.tags().get("TIFFTAG_DATETIME"),
        georeferenced=georeferenced,
    )


def _is_cog(ds: Any) -> bool:
    # A COG is tiled with internal overviews; GDAL's LAYOUT=COG tag is not always written.
    return bool(ds.profile.get("tiled")) and bool(ds.overviews(1))


def _coords(meta: RasterMeta, shape: tuple[int, int, int]) -> dict[str, Any]:
    coords: dict[str, Any] = {"band": np.arange(1, shape[0] + 1)}
    a, b, c, d, e, f = meta.transform or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    if meta.georeferenced and b == 0 and d == 0:
        coords["x"] = c + a * (np.arange(shape[2]) + 0.5)
        coords["y"] = f + e * (np.arange(shape[1]) + 0.5)
    return coords
