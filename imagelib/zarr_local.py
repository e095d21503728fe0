"""A read-only view of a plain local Zarr v2 group (the layout imagelib's pyramids are written in) read
without zarr-python: the ``.zattrs``/``.zarray`` JSON directly, chunks decoded by their compressor.

zarr-python's import is ~0.15–0.25 s, the largest single part of a CLI tile export's start-up, and the
tile path needs only the metadata and :class:`imagelib.multiscale.ChunkReader`'s plain chunk files. A
group any array of which is not plain (another format, separator, order, filters, big-endian values)
gives None: the caller opens it with zarr-python instead.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np


class LocalArray:
    """One plain Zarr v2 array: ``shape``, ``chunks``, ``dtype``, ``fill_value``, ``compressor``, and
    ``folder`` (where its ``<i>.<j>.<k>`` chunk files are); indexing opens it with zarr-python."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = folder
        self.shape = tuple(int(n) for n in meta["shape"])
        self.chunks = tuple(int(n) for n in meta["chunks"])
        self.dtype = np.dtype(meta["dtype"])
        self.ndim = len(self.shape)
        self.fill_value = meta.get("fill_value")
        self._compressor = meta.get("compressor")

    @cached_property
    def compressor(self) -> Any:
        """The numcodecs codec of the chunks (None: stored raw)."""
        if self._compressor is None:
            return None
        import numcodecs

        return numcodecs.get_codec(dict(self._compressor))

    def decode(self, data: bytes) -> bytes | np.ndarray:
        """One chunk file's bytes, decompressed."""
        return data if self.compressor is None else self.compressor.decode(data)

    def __getitem__(self, region: Any) -> np.ndarray:
        """Any selection, through zarr-python (rare on the tile path: whole slices of volumes)."""
        import zarr

        return zarr.open_array(store=str(self.folder), mode="r", zarr_format=2)[region]


class LocalGroup:
    """A plain local Zarr v2 group: ``attrs`` (a dict) and its arrays by path (``group["0"]``)."""

    def __init__(self, folder: Path, attrs: dict[str, Any], arrays: dict[str, LocalArray]) -> None:
        self.folder, self.attrs, self._arrays = folder, attrs, arrays

    def __getitem__(self, path: str) -> LocalArray:
        return self._arrays[path]


def is_plain(meta: dict[str, Any]) -> bool:
    """True for the layout :class:`imagelib.multiscale.RowWriter` writes: v2, ``.``-separated chunk
    names, C order, no filters, little-endian (or 1-byte) values."""
    dtype = np.dtype(meta.get("dtype", "V"))
    return (
        meta.get("zarr_format") == 2
        and meta.get("dimension_separator", ".") == "."
        and meta.get("order") == "C"
        and not meta.get("filters")
        and (dtype.itemsize == 1 or dtype.byteorder in ("<", "=", "|"))
        and dtype.kind in "biuf"
    )


def open_local_group(folder: Path) -> LocalGroup | None:
    """The multiscale group in ``folder`` when every level array is plain; None otherwise (including
    a folder that is no Zarr v2 group)."""
    try:
        attrs = json.loads((folder / ".zattrs").read_text())
        paths = [d["path"] for d in attrs["multiscales"][0]["datasets"]]
        metas = {p: json.loads((folder / p / ".zarray").read_text()) for p in paths}
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    if not all(is_plain(m) for m in metas.values()):
        return None
    return LocalGroup(folder, attrs, {p: LocalArray(folder / p, m) for p, m in metas.items()})
