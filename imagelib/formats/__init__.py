"""Lazy readers: every supported file becomes an ``xarray.DataArray`` backed by dask.

Dims are ``y,x``, ``band,y,x`` or ``z,y,x``; attrs always hold the keys in :data:`ATTR_KEYS` and are built
from the typed :class:`RasterMeta` each reader fills. The reader is chosen from the content by the
registry (:func:`readers`; third-party readers join through the ``imagelib.readers`` entry points).
Untrustworthy metadata is never silent: contradictions are coded errors, lost metadata coded warnings in
``attrs["warnings"]``. See ``imagelib.formats.tiff`` for what pyramidal and multi-page TIFFs become.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import xarray as xr

from imagelib.errors import ImagelibError, InputError
from imagelib.formats.detect import check_local_path, detect_format
from imagelib.formats.meta import ATTR_KEYS, MetaWarning, RasterMeta
from imagelib.formats.registry import Reader, ReaderRegistry, reader_for, readers

T = TypeVar("T")

__all__ = [
    "ATTR_KEYS",
    "MetaWarning",
    "RasterMeta",
    "Reader",
    "ReaderRegistry",
    "check_local_path",
    "detect_format",
    "open_array",
    "open_levels",
    "readers",
    "split_address",
]


def split_address(source: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``"file.h5#/group/data"`` → ``("file.h5", "/group/data")``; no ``#`` → address None."""
    text = os.fspath(source)
    if "#" in text:
        path, address = text.split("#", 1)
        return path, address or None
    return text, None


def open_array(source: str | os.PathLike[str], address: str | None = None) -> xr.DataArray:
    """Open a raster lazily, choosing the reader from content; raise coded errors for bad input."""
    path, address, reader = _resolve(source, address)
    data = _guarded(reader, path, lambda: reader.open(path, address))
    return _normalise(data, address)


def open_levels(source: str | os.PathLike[str], address: str | None = None) -> list[xr.DataArray]:
    """Level 0 and the file's own overviews that are exact 2× reductions (``ceil(n/2)``), finest first.

    A reader without pyramids (or a file without overviews) gives ``[open_array(source)]``.
    """
    path, address, reader = _resolve(source, address)
    opener = getattr(reader, "open_levels", None)
    if opener is None:
        return [open_array(path, address)]
    levels = _guarded(reader, path, lambda: opener(path, address))
    return [_normalise(level, address) for level in levels]


def _resolve(source: str | os.PathLike[str], address: str | None) -> tuple[Path, str | None, Reader]:
    text, inline = split_address(source)
    path = check_local_path(text)
    return path, address or inline, reader_for(path)


def _guarded(reader: Reader, path: Path, call: Callable[[], T]) -> T:
    try:
        return call()
    except ImagelibError:
        raise
    except Exception as exc:  # a parser failing on hostile input must still give a coded error
        raise InputError(
            f"{path}: cannot parse {reader.name} structure ({type(exc).__name__}: {exc})"
        ) from exc


def _normalise(data: xr.DataArray, address: str | None) -> xr.DataArray:
    """Every key of :data:`ATTR_KEYS` present, whatever reader (built-in or plugin) made the array."""
    meta = RasterMeta.from_attrs(data.attrs)
    meta.address = meta.address or address
    meta.source_shape = meta.source_shape or list(data.shape)
    data.attrs = meta.to_attrs()
    return data


def source_path(source: str | os.PathLike[str]) -> Path:
    """The local path part of a source string (without ``#address``)."""
    return Path(split_address(source)[0])
