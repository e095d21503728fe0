"""Running a chain over Dask arrays of shape ``(band, *spatial)``.

* Runs of consecutive band/local ops are fused into one ``map_overlap`` whose depth is the sum of their
  halos. ``boundary="none"``: a block at the array edge gets no artificial padding, so each op applies
  its own edge rule there (scipy's ``mode="reflect"``, skimage's padding for rolling ball and
  Richardson–Lucy) exactly as on the whole array, while interior blocks see real neighbours. Chunks
  smaller than the halo are merged first. Result: chunked == whole-array, for any chunking.
* Band-count changing ops (``band_math``) run with ``map_blocks`` on all bands at once.
* Ops needing whole-array statistics (``percentile_stretch``) are fitted first (computes upstream).
* Global ops (FFT filters, notch, Wiener) run on whole planes (spatial axes rechunked to one chunk) when
  a plane's working set fits ``memory_budget`` — then the result equals the whole-array result.
  Otherwise they run on tiles overlapping by the op's ``halo`` and the tile results are blended by
  overlap-add with sin² tapers that sum to one (an approximation: frequency content longer than the
  overlap and the periodic boundary of the whole plane are not reproduced).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from imagelib.backend import get_xp, to_xp
from imagelib.filters.base import Op

if TYPE_CHECKING:  # dask is imported where a chain meets a Dask array: NumPy-only callers skip its ~0.4 s
    import dask.array as da

#: Working-set estimate of an FFT/deconvolution op, bytes per pixel (spectra, masks, output).
GLOBAL_BYTES_PER_PIXEL = 48
DEFAULT_MEMORY_BUDGET = 1 << 30


def run_ops(stack: Any, ops: list[Op], xp: ModuleType) -> Any:
    """Apply ``ops`` in order to an in-memory ``(band, *spatial)`` array."""
    for op in ops:
        if op.scope == "band":
            stack = op(stack, xp)
        else:
            planes = [op(stack[b], xp) for b in range(stack.shape[0])]
            stack = planes[0][None] if len(planes) == 1 else xp.stack(planes)
    return stack


def _on_device(ops: list[Op], xp: ModuleType) -> Callable[[Any], Any]:
    """A block function computing on ``xp`` and returning the block's own array type."""

    def block_fn(block: Any) -> Any:
        return to_xp(run_ops(to_xp(block, xp), ops, xp), get_xp(block))

    return block_fn


def _sum_halo(ops: list[Op], ndim: int) -> tuple[int, ...]:
    halos = [op.halo(ndim) for op in ops]
    return tuple(sum(h[a] for h in halos) for a in range(ndim))


def _local_run(arr: da.Array, ops: list[Op], xp: ModuleType) -> da.Array:
    """One fused ``map_overlap`` for a run of band/local ops."""
    from dask.array.overlap import ensure_minimum_chunksize

    halo = _sum_halo(ops, arr.ndim - 1)
    chunks: list[Any] = [-1 if any(op.scope == "band" for op in ops) else arr.chunks[0]]
    depth = {0: 0}
    for axis, h in enumerate(halo, start=1):
        if h >= arr.shape[axis] - 1:  # halo spans the axis: one chunk, nothing to exchange
            chunks.append(-1)
            depth[axis] = 0
        else:
            chunks.append(ensure_minimum_chunksize(max(h, 1), arr.chunks[axis]))
            depth[axis] = h
    arr = arr.rechunk(tuple(chunks))
    return arr.map_overlap(_on_device(ops, xp), depth=depth, boundary="none", trim=True, dtype=arr.dtype)


def _band_change(arr: da.Array, op: Op, xp: ModuleType) -> da.Array:
    """An op changing the band count, on all bands of each spatial block."""
    arr = arr.rechunk({0: -1})
    out_chunks = ((op.out_bands(arr.shape[0]),), *arr.chunks[1:])
    return arr.map_blocks(_on_device([op], xp), chunks=out_chunks, dtype=arr.dtype)


def _taper(length: int, o: int, first: bool, last: bool) -> np.ndarray:
    """1D blending window: sin² ramps over 2·o samples at interior tile edges, flat at array edges."""
    w = np.ones(length)
    ramp = np.sin(np.pi / 2 * (np.arange(2 * o) + 0.5) / (2 * o)) ** 2
    if not first:
        w[: 2 * o] = ramp
    if not last:
        w[-2 * o :] = ramp[::-1]  # cos² of the neighbour's sin² position: the two sum to one
    return w


def _edges(info: dict[str, Any], axis: int) -> tuple[bool, bool]:
    loc, n = info["chunk-location"][axis], info["num-chunks"][axis]
    return loc == 0, loc == n - 1


def _fold_axis(block: Any, axis: int, o: int, first: bool, last: bool) -> Any:
    """Along ``axis``: a tile's core plus the tails its neighbours spilled into it (``o`` each side).

    ``block`` is the tile extended by ``o`` on each side, itself padded with ``o`` of each neighbour
    tile (absent at the array edge).
    """

    def cut(start: int | None, stop: int | None) -> tuple[slice, ...]:
        return (slice(None),) * axis + (slice(start, stop),)

    lp, rp = (0 if first else o), (0 if last else o)
    n = block.shape[axis]
    core = block[cut(lp + o, n - rp - o)].copy()
    if not first:
        core[cut(0, o)] += block[cut(0, o)]
    if not last:
        core[cut(-o, None)] += block[cut(n - o, n)]
    return core


def overlap_add(
    arr: da.Array, fn: Callable[[Any], Any], core: dict[int, int], depth: dict[int, int]
) -> da.Array:
    """``fn`` on tiles of ``core`` size extended by ``depth`` per axis, blended back by tapered overlap-add.

    With ``fn`` the identity the result equals ``arr`` (the tapers form a partition of unity).
    """
    from dask.array.overlap import ensure_minimum_chunksize, overlap

    axes = [a for a in range(arr.ndim) if depth.get(a, 0) > 0]
    chunks = {a: ensure_minimum_chunksize(2 * depth[a], arr.rechunk({a: core[a]}).chunks[a]) for a in axes}
    arr = arr.rechunk(chunks)

    def windowed(block: Any, block_info: dict[Any, Any]) -> Any:
        out = fn(block)
        wxp = get_xp(out)
        for a in axes:
            first, last = _edges(block_info[0], a)
            shape = [1] * out.ndim
            shape[a] = -1
            out = out * wxp.asarray(
                _taper(out.shape[a], depth[a], first, last).reshape(shape), dtype=out.dtype
            )
        return out

    extended = overlap(arr, depth={a: depth.get(a, 0) for a in range(arr.ndim)}, boundary="reflect")
    tiles = extended.map_blocks(windowed, dtype=arr.dtype)

    def fold(block: Any, block_info: dict[Any, Any]) -> Any:
        for a in axes:
            first, last = _edges(block_info[0], a)
            block = _fold_axis(block, a, depth[a], first, last)
        return block

    neighbours = overlap(tiles, depth={a: depth.get(a, 0) for a in range(arr.ndim)}, boundary="none")
    return neighbours.map_blocks(fold, chunks=arr.chunks, dtype=arr.dtype)


def _global_op(arr: da.Array, op: Op, xp: ModuleType, memory_budget: int) -> da.Array:
    """A whole-plane op: exact on whole planes when they fit the budget, else tapered overlap-add."""
    spatial = arr.shape[1:]
    pixels_fit = memory_budget // (GLOBAL_BYTES_PER_PIXEL * arr.dtype.itemsize // 4)
    if math.prod(spatial) <= pixels_fit:
        arr = arr.rechunk((1,) + (-1,) * len(spatial))
        return arr.map_blocks(_on_device([op], xp), dtype=arr.dtype)
    halo = op.halo(len(spatial))
    side = max(2 * max(halo), int(pixels_fit ** (1 / len(spatial))) - 2 * max(halo))
    core = {a + 1: min(side, n) for a, n in enumerate(spatial)}
    depth = {a + 1: (h if spatial[a] > core[a + 1] else 0) for a, h in enumerate(halo)}
    return overlap_add(arr.rechunk({0: 1}), _on_device([op], xp), core, depth)


def run_dask(arr: da.Array, ops: list[Op], xp: ModuleType, memory_budget: int) -> da.Array:
    """The chain over a lazy ``(band, *spatial)`` array (see the module docstring for the semantics)."""
    pending: list[Op] = []
    for op in ops:
        fits = type(op).fit is not Op.fit
        if op.scope == "global" or op.changes_bands or fits:
            arr = _local_run(arr, pending, xp) if pending else arr
            pending = []
        op = op.fit(arr, xp) if fits else op
        if op.scope == "global":
            arr = _global_op(arr, op, xp, memory_budget)
        elif op.changes_bands:
            arr = _band_change(arr, op, xp)
        else:
            pending.append(op)
    return _local_run(arr, pending, xp) if pending else arr
