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
    """Return one of ``tiff``, ``hdf5``, ``zarr`` (refined later by the readers) or raise a coded error."""
    if path.is_dir():
        if any((path / name).exists() for name in (".zgroup", ".zarray", "zarr.json")):
            return "zarr"
        raise InputError(f"{path}: a directory that is not a Zarr store", code="FORMAT_UNRECOGNIZED")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes)", code="FILE_EMPTY", field="size", found=0)
    with path.open("rb") as fh:
        head = fh.read(8)
        if head[:4] in TIFF_MAGICS:
            return "tiff"
        for offset in HDF5_SUPERBLOCK_OFFSETS:
            fh.seek(offset)
            if fh.read(8) == HDF5_MAGIC:
                return "hdf5"
    if head[:4] in NETCDF3_MAGICS:
        raise InputError(
            f"{path}: NetCDF classic (v3) is not supported; convert to NetCDF4/HDF5",
            code="FORMAT_UNRECOGNIZED",
            found="netcdf3",
        )
    raise InputError(
        f"{path}: content is not TIFF, HDF5/NetCDF4 or Zarr (first bytes {head[:8]!r})",
        code="FORMAT_UNRECOGNIZED",
        field="format",
        expected=["tiff", "geotiff", "cog", "ome-tiff", "hdf5", "netcdf4", "zarr"],
    )
