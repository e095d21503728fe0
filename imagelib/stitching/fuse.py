"""Lazy fusion: the mosaic as a Dask-backed DataArray, each chunk computed from the tiles touching it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage

from imagelib.errors import UsageError
from imagelib.formats.lazy import preferred_chunks
from imagelib.stitching.tiles import TileSet

Blend = Literal["linear", "max", "first", "none"]
Interpolation = Literal["linear", "fourier"]
BLENDS = ("linear", "max", "first", "none")


def mosaic_shape(positions: np.ndarray, tile_shapes: np.ndarray) -> tuple[int, ...]:
    """Shape covering every placed tile (positions have their minimum at 0)."""
    return tuple(int(np.ceil(v - 1e-9)) for v in (positions + tile_shapes).max(axis=0))


def _default_side(ndim: int) -> int:
    """The default chunk side of a mosaic: 1024 for 2D (the stored chunk), 128 for volumes."""
    return 1024 if ndim == 2 else 128


def _default_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(min(_default_side(len(shape)), n) for n in shape)


class _Placement:
    """Where tile ``k`` lands: integer corner ``ip``, fractional part ``f`` (linear interpolation)."""

    def __init__(self, position: np.ndarray, shape: np.ndarray, fractional: bool) -> None:
        self.ip = np.floor(position).astype(np.int64)
        self.f = (position - self.ip) if fractional else np.zeros_like(position)
        self.shape = shape
        self.position = position
        # Mosaic pixels q with both interpolation neighbours inside the tile: q - ip in [lo, hi).
        self.lo = np.where(self.f > 0, 1, 0)
        self.hi = shape.copy()

    def span(self, b0: np.ndarray, b1: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Tile-frame range ``[q0, q1)`` of ``q - ip`` for mosaic block ``[b0, b1)``, or None."""
        q0 = np.maximum(b0 - self.ip, self.lo)
        q1 = np.minimum(b1 - self.ip, self.hi)
        return None if np.any(q1 <= q0) else (q0, q1)


def _interpolate(values: np.ndarray, f: np.ndarray, spatial: int) -> np.ndarray:
    """Linear interpolation at ``u = q' - f`` from samples ``q'-1`` and ``q'`` (separable)."""
    lead = values.ndim - spatial
    for k in range(spatial):
        if f[k] == 0:
            continue
        ax = lead + k
        upper = np.take(values, np.arange(1, values.shape[ax]), axis=ax)
        lower = np.take(values, np.arange(0, values.shape[ax] - 1), axis=ax)
        values = (1.0 - f[k]) * upper + f[k] * lower
    return values


def _ramp(q0: int, q1: int, f: float, n: int) -> np.ndarray:
    """Distance-to-edge weight along one axis at tile coordinates ``u = q - f`` (1 at the border)."""
    u = np.arange(q0, q1, dtype=np.float64) - f
    return np.minimum(u + 1.0, n - u).clip(min=1e-6)


def _block(
    tiles: TileSet,
    arrays: Sequence[Any],
    places: Sequence[_Placement],
    blend: str,
    fill: float,
    dtype: np.dtype,
    b0: np.ndarray,
    b1: np.ndarray,
) -> np.ndarray:
    """Fuse one mosaic block ``[b0, b1)`` (all bands) from the tiles that touch it."""
    spatial = len(b0)
    bshape = tuple(int(v) for v in b1 - b0)
    bands = tiles.bands
    acc = np.zeros((bands, *bshape), dtype=np.float64)
    wsum = np.zeros(bshape, dtype=np.float64)
    filled = np.zeros(bshape, dtype=bool)
    for k, place in enumerate(places):
        span = place.span(b0, b1)
        if span is None:
            continue
        q0, q1 = span
        read0 = q0 - (place.f > 0)  # the low interpolation neighbour
        region = tuple(slice(int(a), int(b)) for a, b in zip(read0, q1, strict=True))
        key = (slice(None), *region) if tiles.has_band else region
        raw = np.asarray(arrays[k][key].compute(scheduler="sync"), dtype=np.float64)
        raw = raw if tiles.has_band else raw[None]
        raw = np.stack([tiles.correct(raw[b].astype(np.float32), region) for b in range(bands)]).astype(
            np.float64
        )
        values = _interpolate(raw, place.f, spatial)
        valid = np.all(np.isfinite(values), axis=0)
        out = tuple(
            slice(int(a), int(b)) for a, b in zip(q0 + place.ip - b0, q1 + place.ip - b0, strict=True)
        )
        if blend == "linear":
            weight = np.ones(tuple(int(v) for v in q1 - q0))
            for ax in range(spatial):
                ramp = _ramp(int(q0[ax]), int(q1[ax]), float(place.f[ax]), int(place.shape[ax]))
                weight = weight * ramp.reshape([-1 if a == ax else 1 for a in range(spatial)])
            weight = np.where(valid, weight, 0.0)
            acc[(slice(None), *out)] += np.where(valid, values, 0.0) * weight
            wsum[out] += weight
        elif blend == "max":
            region_now = acc[(slice(None), *out)]
            best = np.where(filled[out], np.fmax(region_now, values), values)
            acc[(slice(None), *out)] = np.where(valid, best, region_now)
        else:  # "first": keep what is there; "none": later tiles overwrite (plain paste in layout order)
            take = valid & ~filled[out] if blend == "first" else valid
            acc[(slice(None), *out)] = np.where(take, values, acc[(slice(None), *out)])
        filled[out] |= valid
    if blend == "linear":
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(wsum > 0, acc / np.where(wsum > 0, wsum, 1.0), fill)
    else:
        acc = np.where(filled, acc, fill)
    return _cast(acc if tiles.has_band else acc[0], dtype)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Back to the tiles' dtype: integers rounded and clipped to their range."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


class _ShiftCache:
    """A small LRU of Fourier-shifted tiles, one per :func:`fuse` call (shared by its chunks)."""

    TILES = 8

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tiles: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, k: int, make: Any) -> np.ndarray:
        with self.lock:
            if k in self.tiles:
                self.tiles.move_to_end(k)
                return self.tiles[k]
        values = make()
        with self.lock:
            self.tiles[k] = values
            while len(self.tiles) > self.TILES:
                self.tiles.popitem(last=False)
        return values


class _FourierTile:
    """Tile ``k`` shifted by ``+f`` in the Fourier domain, computed on first read (sliced like an array)."""

    def __init__(self, k: int, tile: da.Array, f: np.ndarray, spatial: int, cache: _ShiftCache) -> None:
        self.k, self.tile, self.f, self.spatial, self.cache = k, tile, f, spatial, cache

    def _shift(self) -> np.ndarray:
        values = np.asarray(self.tile.compute(scheduler="sync"), dtype=np.float64)
        if np.any(self.f > 0):
            lead = values.ndim - self.spatial
            planes = values.reshape((-1, *values.shape[lead:]))
            shifted = [np.fft.ifftn(ndimage.fourier_shift(np.fft.fftn(p), self.f)).real for p in planes]
            values = np.stack(shifted).reshape(values.shape)
        return values

    def __getitem__(self, key: tuple[slice, ...]) -> da.Array:
        return da.from_array(self.cache.get(self.k, self._shift)[key], chunks=-1)


class _ChunkCounter:
    """Counts distinct fused chunks and reports ``(done, total)`` in order across Dask's threads."""

    def __init__(self, chunks: tuple[tuple[int, ...], ...], report: Callable[[int, int], None]) -> None:
        self.total = int(np.prod([len(c) for c in chunks]))
        self.report = report
        self.seen: set[tuple[int, ...]] = set()
        self.lock = threading.Lock()

    def done(self, location: tuple[int, ...]) -> None:
        # Reported under the lock: two threads must not deliver their counts out of order (monotonic).
        with self.lock:
            if location in self.seen:
                return
            self.seen.add(tuple(location))
            self.report(len(self.seen), self.total)


def fuse(
    tiles: TileSet,
    positions: np.ndarray,
    *,
    blend: Blend = "linear",
    interpolation: Interpolation = "linear",
    chunks: Sequence[int] | None = None,
    fill: float = 0,
    dims: Sequence[str] | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> xr.DataArray:
    """The mosaic, lazily: chunk by chunk from the touching tiles; dtype of the tiles, ``fill`` elsewhere.

    ``on_chunk(done, total)`` is called after each chunk is fused (distinct chunks, so ``done`` never
    exceeds ``total`` even when a reader computes a chunk twice).
    """
    if blend not in BLENDS:
        raise UsageError(f"unknown blend {blend!r}", field="blend", expected=list(BLENDS), found=blend)
    if interpolation not in ("linear", "fourier"):
        raise UsageError(
            f"unknown interpolation {interpolation!r}", field="interpolation", found=interpolation
        )
    positions = np.asarray(positions, dtype=np.float64)
    shapes = np.array([a.shape[-tiles.ndim :] for a in tiles.arrays], dtype=np.int64)
    shape = mosaic_shape(positions, shapes)
    # the chunk side as declared, before _default_chunks clips it to the shape
    declared = tuple(chunks) if chunks is not None else (_default_side(len(shape)),) * len(shape)
    chunks = tuple(chunks) if chunks is not None else _default_chunks(shape)
    arrays: list[Any] = list(tiles.arrays)
    if interpolation == "fourier":
        # Whole tiles shifted once and kept in a small LRU shared by the chunks; placement is then integer.
        cache = _ShiftCache()
        arrays = [
            _FourierTile(k, arr, positions[k] - np.floor(positions[k]), tiles.ndim, cache)
            for k, arr in enumerate(arrays)
        ]
        places = [_Placement(p, s, fractional=False) for p, s in zip(positions, shapes, strict=True)]
    else:
        places = [_Placement(p, s, fractional=True) for p, s in zip(positions, shapes, strict=True)]
    dtype = tiles.dtype
    lead = (tiles.bands,) if tiles.has_band else ()

    def block(block_info: dict | None = None) -> np.ndarray:
        loc = block_info[None]["array-location"][len(lead) :]
        b0 = np.array([a for a, _ in loc], dtype=np.int64)
        b1 = np.array([b for _, b in loc], dtype=np.int64)
        return _block(tiles, arrays, places, blend, fill, dtype, b0, b1)

    full_chunks = da.core.normalize_chunks((*((tiles.bands,) if lead else ()), *chunks), (*lead, *shape))
    counter = _ChunkCounter(full_chunks, on_chunk) if on_chunk else None

    def counted(block_info: dict | None = None) -> np.ndarray:
        values = block(block_info)
        if counter is not None:
            counter.done(block_info[None]["chunk-location"])
        return values

    data = da.map_blocks(counted, dtype=dtype, chunks=full_chunks)
    names = (
        tuple(dims)
        if dims
        else (("band",) if lead else ()) + (("z", "y", "x") if tiles.ndim == 3 else ("y", "x"))
    )
    mosaic = xr.DataArray(data, dims=names, attrs={"nodata": tiles.nodata})
    if tiles.ndim == 2:  # storing reads 2D mosaics in Z order (chunks that divide 1024): flat in the width
        mosaic.encoding.update(preferred_chunks(declared[-2:]))
    return mosaic
