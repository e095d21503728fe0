"""xarray backend: ``xr.open_dataset("scene.tif", engine="imagelib")`` (and ``"file.h5#/data"``).

The dataset holds one lazy variable (named after the file or the addressed array) with the reader's
attrs; the same readers, content detection and untrusted-input checks as ``imagelib.formats``.
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr
from xarray.backends import BackendEntrypoint

from imagelib.errors import ImagelibError
from imagelib.formats import open_array, split_address
from imagelib.formats.detect import check_local_path
from imagelib.formats.registry import reader_for
from imagelib.hashing import jsonable


class ImagelibBackendEntrypoint(BackendEntrypoint):
    """Open any raster imagelib reads (GeoTIFF/COG, TIFF/OME-TIFF, HDF5/NetCDF4, Zarr) lazily."""

    description = "Large rasters through imagelib's readers (format detected from content)"
    url = "https://imagelib.readthedocs.io"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "address")

    def open_dataset(
        self, filename_or_obj: Any, *, drop_variables: Any = None, address: str | None = None
    ) -> xr.Dataset:
        """One variable: the raster as a lazy DataArray (attrs made netCDF-safe)."""
        data = open_array(os.fspath(filename_or_obj), address=address)
        text, inline = split_address(os.fspath(filename_or_obj))
        stem = os.path.splitext(os.path.basename(text.rstrip("/")))[0]
        name = (address or inline or stem).strip("/").replace("/", "_") or "image"
        data.attrs = {k: _attr(v) for k, v in data.attrs.items() if v is not None}
        return data.to_dataset(name=name)

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """True when a registered reader (built-in or plugin) claims the content, whatever the suffix."""
        try:
            reader_for(check_local_path(split_address(os.fspath(filename_or_obj))[0]))
        except (ImagelibError, TypeError, OSError):
            return False
        return True


def _attr(value: Any) -> Any:
    """Attributes netCDF can hold: numeric lists stay, other lists and dicts become JSON, booleans ints."""
    import json

    value = jsonable(value)
    if isinstance(value, bool):
        return int(value)
    numbers = isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    )
    if isinstance(value, dict) or (isinstance(value, list) and not numbers):
        return json.dumps(value)
    return value
