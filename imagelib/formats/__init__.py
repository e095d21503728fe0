"""Lazy readers: every supported file becomes an ``xarray.DataArray`` backed by dask.

Dims are ``y,x``, ``band,y,x`` or ``z,y,x``; attrs always hold the keys in :data:`ATTR_KEYS`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import xarray as xr

from imagelib.errors import ImagelibError, InputError
from imagelib.formats.detect import check_local_path, detect_format
from imagelib.formats.hdf5 import open_hdf5
from imagelib.formats.tiff import open_tiff
from imagelib.formats.zarr_store import open_zarr

ATTR_KEYS = (
    "format",
    "crs",
    "crs_wkt",
    "transform",
    "bounds",
    "nodata",
    "band_names",
    "time",
    "georeferenced",
    "spacing",
    "address",
    "source_shape",
)

__all__ = ["ATTR_KEYS", "detect_format", "open_array", "split_address"]


def split_address(source: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``"file.h5#/group/data"`` → ``("file.h5", "/group/data")``; no ``#`` → address None."""
    text = os.fspath(source)
    if "#" in text:
        path, address = text.split("#", 1)
        return path, address or None
    return text, None


def open_array(source: str | os.PathLike[str], address: str | None = None) -> xr.DataArray:
    """Open a raster lazily, detecting its format from content; raise coded errors for bad input."""
    text, inline = split_address(source)
    address = address or inline
    path = check_local_path(text)
    kind = detect_format(path)
    try:
        if kind == "tiff":
            data = open_tiff(path)
        elif kind == "hdf5":
            data = open_hdf5(path, address)
        else:
            data = open_zarr(path, address)
    except ImagelibError:
        raise
    except Exception as exc:  # a parser failing on hostile input must still give a coded error
        raise InputError(f"{path}: cannot parse {kind} structure ({type(exc).__name__}: {exc})") from exc
    return _normalise_attrs(data, address)


def _normalise_attrs(data: xr.DataArray, address: str | None) -> xr.DataArray:
    attrs: dict[str, Any] = {key: None for key in ATTR_KEYS}
    attrs.update(data.attrs)
    attrs["address"] = attrs["address"] or address
    attrs["source_shape"] = attrs["source_shape"] or list(data.shape)
    attrs["band_names"] = attrs["band_names"] or []
    attrs["georeferenced"] = bool(attrs["georeferenced"])
    data.attrs = attrs
    return data


def source_path(source: str | os.PathLike[str]) -> Path:
    """The local path part of a source string (without ``#address``)."""
    return Path(split_address(source)[0])
