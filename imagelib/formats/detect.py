"""Detect a raster format from content (magic bytes and structure), never from the file name."""

from __future__ import annotations

import os
from pathlib import Path

from imagelib.errors import InputError

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NETCDF3_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
# HDF5 allows a user block before the superblock, at 0, 512, 1024, 2048, ...
HDF5_SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048, 4096, 8192)


def check_local_path(source: str | os.PathLike[str]) -> Path:
    """Refuse GDAL virtual/network paths and URLs; return an existing local path."""
    text = os.fspath(source)
    if text.startswith("/vsi") or "://" in text or text.startswith(("\\\\", "//")):
        raise InputError(
            f"{text!r} is a network or virtual path; only local files are read",
            code="EXTERNAL_REFERENCE",
            field="path",
        )
    path = Path(text)
    if not path.exists():
        raise InputError(f"{text}: no such file or directory", code="FILE_NOT_FOUND", field="path")
    return path


def detect_format(path: Path) -> str:
    """The name of the registered reader claiming the content (``tiff``, ``hdf5``, ``zarr``, a plugin's)."""
    from imagelib.formats.registry import reader_for

    return reader_for(path).name


def has_magic(path: Path, magics: tuple[bytes, ...], offsets: tuple[int, ...] = (0,)) -> bool:
    """True when a regular file holds one of ``magics`` at one of ``offsets``."""
    if not path.is_file():
        return False
    with path.open("rb") as fh:
        for offset in offsets:
            fh.seek(offset)
            head = fh.read(max(len(m) for m in magics))
            if any(head.startswith(m) for m in magics):
                return True
    return False


def unrecognized(path: Path) -> InputError:
    """The coded error for content no reader claims (a plain directory, NetCDF classic, anything else)."""
    if path.is_dir():
        return InputError(f"{path}: a directory that is not a Zarr store", code="FORMAT_UNRECOGNIZED")
    with path.open("rb") as fh:
        head = fh.read(8)
    if head[:4] in NETCDF3_MAGICS:
        return InputError(
            f"{path}: NetCDF classic (v3) is not supported; convert to NetCDF4/HDF5",
            code="FORMAT_UNRECOGNIZED",
            found="netcdf3",
        )
    return InputError(
        f"{path}: content is not TIFF, HDF5/NetCDF4 or Zarr (first bytes {head[:8]!r})",
        code="FORMAT_UNRECOGNIZED",
        field="format",
        expected=["tiff", "geotiff", "cog", "ome-tiff", "hdf5", "netcdf4", "zarr"],
    )
