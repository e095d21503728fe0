"""Turn a chunk-readable source into a lazy dask array, and guard declared sizes before any allocation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np

from imagelib.config import settings
from imagelib.errors import InputError

#: Default chunk edge for lazy reads and the stored multiscale (pixels).
CHUNK = 1024
#: widest image read in whole-row strips (see :func:`yx_chunks`)
MAX_STRIP_WIDTH = 65536


class LazySource:
    """Minimal array-like (shape, dtype, ndim, __getitem__) whose reads go through ``read(slices)``."""

    def __init__(self, shape: Sequence[int], dtype: Any, read: Callable[[tuple[slice, ...]], np.ndarray]):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self._read = read

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        full = tuple(key) + (slice(None),) * (self.ndim - len(key))
        norm = tuple(slice(*s.indices(n)) for s, n in zip(full, self.shape, strict=True))
        return self._read(norm)


def default_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    """One plane of leading axes, CHUNK×CHUNK in the last two."""
    lead = (1,) * (len(shape) - 2)
    return lead + tuple(min(CHUNK, max(1, n)) for n in shape[-2:])


def preferred_chunks(block_shape: Sequence[int], dims: Sequence[str] = ("y", "x")) -> dict[str, Any]:
    """xarray's ``encoding`` entry naming how the file stores its pixels (a strip or tile, in ``y, x``)."""
    return {"preferred_chunks": {d: int(n) for d, n in zip(dims, block_shape, strict=True)}}


def is_tiled(encoding: dict[str, Any], width: int) -> bool:
    """True when the file stores pixels in tiles narrower than the image that divide :data:`CHUNK`: then
    a CHUNK² window decodes whole tiles, each once, and can be read without a full-width strip."""
    block = encoding.get("preferred_chunks") or {}
    rows, cols = block.get("y", 0), block.get("x", 0)
    return 0 < cols < width and rows > 0 and CHUNK % rows == 0 and CHUNK % cols == 0


def yx_chunks(height: int, width: int, encoding: dict[str, Any]) -> tuple[int, int]:
    """Dask chunks in ``(y, x)`` for a file stored as ``encoding`` says (see :func:`preferred_chunks`).

    Tiled files: 2·CHUNK squares, each a whole number of tiles, so the ingest's Z-order read decodes every
    tile once, four stored chunks per read, and holds no full-width strip. Striped files: strips of
    CHUNK whole rows, so one read per strip decodes each file strip once, straight into the result (no
    per-chunk task or concatenation); beyond MAX_STRIP_WIDTH they are cut into CHUNK-wide columns to
    bound the strip's memory."""
    if is_tiled(encoding, width):
        return min(2 * CHUNK, height), min(2 * CHUNK, width)
    return min(CHUNK, height), width if width <= MAX_STRIP_WIDTH else CHUNK


def to_dask(source: Any, chunks: Sequence[int] | None = None) -> da.Array:
    """Wrap an array-like in dask without copying; reads happen chunk by chunk on compute."""
    chunks = tuple(chunks) if chunks else default_chunks(source.shape)
    # meta given: dask would otherwise read an empty slice (opening the file again) to learn the type
    meta = np.empty((0,) * len(source.shape), dtype=source.dtype)
    return da.from_array(source, chunks=chunks, lock=False, asarray=True, fancy=False, name=False, meta=meta)


def guard_dimensions(shape: Sequence[int], dtype: Any, max_pixels: int | None = None) -> None:
    """Refuse pixel bombs from the declared header, before anything is allocated or read."""
    limits = settings()
    max_pixels = max_pixels or limits.max_pixels
    if any(int(n) <= 0 for n in shape):
        raise InputError(
            f"declared shape {tuple(shape)} has an empty axis", code="FORMAT_CORRUPT", field="shape"
        )
    if any(int(n) > limits.max_side for n in shape):
        raise InputError(
            f"declared side {max(shape)} exceeds the limit {limits.max_side}",
            code="DIMENSIONS_TOO_LARGE",
            field="shape",
            expected=f"<= {limits.max_side} per axis",
            found=list(map(int, shape)),
        )
    pixels = math.prod(int(n) for n in shape)
    if pixels > max_pixels:
        raise InputError(
            f"declared {pixels} elements ({np.dtype(dtype).itemsize * pixels / 2**30:.1f} GiB) exceed "
            f"the limit of {max_pixels}",
            code="DIMENSIONS_TOO_LARGE",
            field="shape",
            expected=f"<= {max_pixels} elements",
            found=list(map(int, shape)),
        )
