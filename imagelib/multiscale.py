"""OME-Zarr (NGFF 0.4, Zarr v2 on disk) multiscale arrays: write level 0 block by block, derive the
lower levels by 2×2 nodata-aware means, read any level back as a lazy ``xarray.DataArray``.

Only ``y`` and ``x`` are halved: band and z axes keep their size (anisotropic volumes stay correct).
Each level has ``ceil(n / 2)`` pixels per axis; an odd last row/column is averaged with its edge copy.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imagelib.backend import CV2_MAX_SIZE, cv2_module
from imagelib.hashing import jsonable
from imagelib.zarr_local import LocalArray, LocalGroup, create_group, read_chunk

if TYPE_CHECKING:  # dask and xarray cost ~1 s to import, zarr ~0.2 s; tile rendering needs none of them
    import numcodecs
    import xarray as xr
    import zarr

CHUNK = 1024
MIN_LEVEL_SIDE = 256  # stop halving once a level fits one 256 px tile
#: every level's chunks: Blosc LZ4 with byte shuffle (numcodecs' config)
COMPRESSOR_CONFIG = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
NGFF_AXES = {
    "band": {"name": "c", "type": "channel"},
    "z": {"name": "z", "type": "space"},
    "y": {"name": "y", "type": "space"},
    "x": {"name": "x", "type": "space"},
}
DIM_OF_AXIS = {"c": "band", "z": "z", "y": "y", "x": "x"}


def level_shapes(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Shapes of every level, halving y and x until both fit ``MIN_LEVEL_SIDE``."""
    shapes = [tuple(int(n) for n in shape)]
    while max(shapes[-1][-2:]) > MIN_LEVEL_SIDE:
        *lead, h, w = shapes[-1]
        shapes.append((*lead, math.ceil(h / 2), math.ceil(w / 2)))
    return shapes


def chunks_for(shape: Sequence[int]) -> tuple[int, ...]:
    """One plane of leading axes, CHUNK×CHUNK in y, x."""
    return (1,) * (len(shape) - 2) + (min(CHUNK, shape[-2]), min(CHUNK, shape[-1]))


def compressor() -> numcodecs.abc.Codec:
    """The codec of :data:`COMPRESSOR_CONFIG`."""
    import numcodecs

    return numcodecs.get_codec(dict(COMPRESSOR_CONFIG))


def create_local(folder: Path, data: xr.DataArray, attrs: dict[str, Any]) -> LocalGroup:
    """:func:`create` in a local folder, written without zarr-python (:mod:`imagelib.zarr_local`)."""
    levels = {path: {**spec, "compressor": dict(COMPRESSOR_CONFIG)} for path, spec in _levels(data, attrs)}
    return create_group(folder, levels, _group_attrs(data, attrs))


def create(store: zarr.storage.StoreLike, data: xr.DataArray, attrs: dict[str, Any]) -> zarr.Group:
    """Create the group, every level's empty array and the NGFF metadata."""
    import zarr

    group = zarr.open_group(store=store, mode="w", zarr_format=2)
    for path, spec in _levels(data, attrs):
        group.create_array(path, **spec, compressors=compressor(), overwrite=True)
    group.attrs.update(_group_attrs(data, attrs))
    return group


def _levels(data: xr.DataArray, attrs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every level's array path and its shape, chunks, dtype and fill value."""
    fill = _fill(attrs.get("nodata"), data.dtype)
    dtype = np.dtype(data.dtype.str)  # canonical type code: zarr refuses e.g. "L" for uint64
    return [
        (str(level), {"shape": shape, "chunks": chunks_for(shape), "dtype": dtype, "fill_value": fill})
        for level, shape in enumerate(level_shapes(data.shape))
    ]


def _group_attrs(data: xr.DataArray, attrs: dict[str, Any]) -> dict[str, Any]:
    """The group's attributes: NGFF multiscales and the version's own (``imagelib``)."""
    ngff = _ngff(data.dims, len(level_shapes(data.shape)), attrs)
    return {"multiscales": [ngff], "imagelib": jsonable(attrs)}


def _fill(nodata: Any, dtype: np.dtype) -> Any:
    if nodata is None or (isinstance(nodata, float) and np.isnan(nodata) and dtype.kind != "f"):
        return 0
    return np.array(nodata).astype(dtype).item()


def _ngff(dims: Sequence[str], levels: int, attrs: dict[str, Any]) -> dict[str, Any]:
    spacing = attrs.get("spacing") or {}
    transform = attrs.get("transform")
    base = {d: float(spacing.get(d, 1.0)) for d in dims}
    if transform and not spacing:
        base["x"], base["y"] = abs(transform[0]) or 1.0, abs(transform[4]) or 1.0
    datasets = []
    for level in range(levels):
        scale = [base[d] * (2**level if d in ("y", "x") else 1) for d in dims]
        datasets.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    return {
        "version": "0.4",
        "name": attrs.get("name", "image"),
        "axes": [NGFF_AXES[d] for d in dims],
        "datasets": datasets,
        "type": "mean",
    }


def downsample2(block: np.ndarray, nodata: Any = None) -> np.ndarray:
    """2×2 mean over the last two axes, ignoring nodata/NaN; odd edges averaged with their copy.

    Works on the four strided quadrants (each a quarter of the block) instead of full-size float copies,
    so temporaries stay small; integers round half up, exactly as ``floor(mean + 0.5)``.
    """
    h, w = block.shape[-2:]
    if h % 2 or w % 2:
        pad = [(0, 0)] * (block.ndim - 2) + [(0, h % 2), (0, w % 2)]
        block = np.pad(block, pad, mode="edge")
    quads = (block[..., ::2, ::2], block[..., 1::2, ::2], block[..., ::2, 1::2], block[..., 1::2, 1::2])
    has_nodata = nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata))
    if block.dtype.kind in "iu" and block.dtype.itemsize == 8:
        return _wide_int_mean(quads, block.dtype, nodata if has_nodata else None)
    if block.dtype.kind in "iu" and not has_nodata:
        halved = _opencv_halve(block)
        if halved is not None:
            return halved
        total = quads[0].astype(_accumulator(block.dtype))
        for q in quads[1:]:
            total += q
        total += 2
        total >>= 2  # arithmetic shift = floor division by 4: rounds half up, negatives included
        return total.astype(block.dtype)
    return _masked_mean(quads, block.dtype, nodata if has_nodata else None)


#: smaller planes stay in NumPy (importing OpenCV costs ~0.13 s, more than a small ingest gains)
OPENCV_MIN_PIXELS = 1 << 20


def _opencv_halve(block: np.ndarray) -> np.ndarray | None:
    """OpenCV's 2×2 area mean of even-sized 8/16-bit planes, or None where it does not apply.

    ``INTER_AREA`` at exactly half size computes ``(a + b + c + d + 2) >> 2`` in SIMD: the same integers
    as the NumPy quadrant sum below (tested bit for bit), about 6× faster on an ingest strip."""
    h, w = block.shape[-2:]
    if block.dtype not in _OPENCV_HALVE or not OPENCV_MIN_PIXELS <= h * w < CV2_MAX_SIZE:
        return None
    cv2 = cv2_module()
    if cv2 is None:
        return None
    planes = block.reshape(-1, h, w)
    out = np.empty((planes.shape[0], h // 2, w // 2), block.dtype)
    for plane, half in zip(planes, out, strict=True):
        cv2.resize(np.ascontiguousarray(plane), (w // 2, h // 2), dst=half, interpolation=cv2.INTER_AREA)
    return out.reshape(*block.shape[:-2], h // 2, w // 2)


_OPENCV_HALVE = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16))


def _accumulator(dtype: np.dtype) -> type:
    """The narrowest integer type holding the sum of four values (less memory traffic)."""
    if dtype.itemsize == 1:
        return np.int16 if dtype.kind == "i" else np.uint16
    return np.int32 if dtype.itemsize == 2 else np.int64


def _wide_int_mean(quads: tuple[np.ndarray, ...], dtype: np.dtype, nodata: Any) -> np.ndarray:
    """Exact ``floor(mean + 0.5)`` for 64-bit integers, where a sum of four overflows and float64 rounds.

    Without nodata each value is split as ``4q + r`` (``q = v >> 2``, ``r = v & 3``): the four ``q`` sum
    without overflow and the remainders carry the rounding. With nodata (rare) Python integers do it."""
    if nodata is None:
        total = sum(q >> 2 for q in quads)
        total += (sum(q & 3 for q in quads) + 2) >> 2
        return total.astype(dtype)
    marker = np.array(nodata).astype(dtype)
    values = [q.astype(object) for q in quads]
    valid = [q != marker for q in quads]
    count = sum(v.astype(np.int64) for v in valid)
    total = sum(np.where(ok, v, 0) for v, ok in zip(values, valid, strict=True))
    safe = np.maximum(count, 1).astype(object)
    mean = (2 * total + safe) // (2 * safe)  # floor(total / count + 1/2) in exact integer arithmetic
    return np.where(count == 0, marker, mean).astype(dtype)


def _masked_mean(quads: tuple[np.ndarray, ...], dtype: np.dtype, nodata: Any) -> np.ndarray:
    work = np.float32 if dtype.itemsize <= 2 else np.float64
    total = np.zeros(quads[0].shape, dtype=work)
    count = np.zeros(quads[0].shape, dtype=np.uint8)
    for q in quads:
        valid = ~np.isnan(q) if dtype.kind == "f" else np.ones(q.shape, dtype=bool)
        if nodata is not None:
            valid &= q != np.array(nodata).astype(dtype)
        total += np.where(valid, q, 0)
        count += valid
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        mean = np.clip(np.floor(mean + 0.5), info.min, info.max)
    empty = count == 0
    if empty.any():
        mean[empty] = _empty_value(nodata, dtype)
    return mean.astype(dtype)


def _empty_value(nodata: Any, dtype: np.dtype) -> float:
    """What a window with no valid pixel becomes: nodata, else NaN for floats, else 0."""
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        return float(nodata)
    return float("nan") if dtype.kind == "f" else 0.0


def build_lower_levels(group: zarr.Group, nodata: Any = None) -> None:
    """Fill levels 1..n from the level above, chunk-aligned so memory stays at a few chunks."""
    import dask
    import dask.array as da

    level = 1
    while str(level) in group:
        src, dst = group[str(level - 1)], group[str(level)]
        lead = (1,) * (src.ndim - 2)
        source = da.from_zarr(src).rechunk((*lead, 2 * CHUNK, 2 * CHUNK))
        out_chunks = tuple(
            tuple(math.ceil(c / 2) for c in axis) if i >= src.ndim - 2 else axis
            for i, axis in enumerate(source.chunks)
        )
        result = source.map_blocks(downsample2, nodata=nodata, chunks=out_chunks, dtype=src.dtype)
        with dask.config.set(scheduler="threads"):
            da.store(result, dst, lock=False)
        level += 1


def level_attrs(group: zarr.Group | LocalGroup, level: int = 0) -> dict[str, Any]:
    """A level's attrs: the version's, with ``level``, ``levels`` and the transform scaled to the level
    (no xarray or Dask: the tile servers need only these)."""
    meta = group.attrs["multiscales"][0]
    attrs = json.loads(json.dumps(dict(group.attrs.get("imagelib", {}))))
    attrs["level"] = level
    attrs["levels"] = len(meta["datasets"])
    if attrs.get("transform"):
        a, b, c, d, e, f = attrs["transform"]
        k = 2**level
        attrs["transform"] = [a * k, b * k, c, d * k, e * k, f]
    return attrs


def read_level(group: zarr.Group, level: int = 0) -> xr.DataArray:
    """One level as a lazy DataArray with the version's attrs (transform scaled to the level)."""
    import dask.array as da
    import xarray as xr

    meta = group.attrs["multiscales"][0]
    dims = tuple(DIM_OF_AXIS.get(a["name"], a["name"]) for a in meta["axes"])
    arr = group[meta["datasets"][level]["path"]]
    return xr.DataArray(da.from_zarr(arr), dims=dims, attrs=level_attrs(group, level))


class RowWriter:
    """Writes whole chunk rows (all leading axes, full width) of one Zarr v2 array.

    On a local store each chunk is encoded with the array's own compressor and written as the
    ``<level>/<i>.<j>.<k>`` file the Zarr v2 spec names — about 8× faster than zarr-python's generic
    async path for these aligned writes. Other stores (S3, memory) use the generic path.
    """

    def __init__(self, arr: zarr.Array | LocalArray):
        self.arr, self.chunks = arr, tuple(arr.chunks)
        self.folder, self.fill, self.codec = plain_chunks(arr)

    def write(self, y0: int, rows: np.ndarray, lead: Sequence[int] = (), x0: int = 0) -> None:
        """Store ``rows`` at row ``y0``, column ``x0`` and leading offsets ``lead`` (default 0: a volume's
        z slab starts there); ``y0`` and ``x0`` are chunk-aligned, rows span whole chunks (cut at the
        array's edge) and the leading axes' chunks are 1."""
        lead = tuple(lead) or (0,) * (rows.ndim - 2)
        if self.folder is None:
            where = tuple(slice(o, o + n) for o, n in zip(lead, rows.shape[:-2], strict=True))
            h, w = rows.shape[-2:]
            self.arr[(*where, slice(y0, y0 + h), slice(x0, x0 + w))] = rows
            return
        chunks, codec, fill = self.chunks, self.codec, self.fill
        steps = [range(0, n, c) for n, c in zip(rows.shape[:-2], chunks[:-2], strict=True)]
        ch, cw = chunks[-2:]
        for offsets in itertools.product(*steps):
            for c0 in range(0, rows.shape[-1], cw):
                for r0 in range(0, rows.shape[-2], ch):
                    part = rows[
                        (
                            *(slice(o, o + c) for o, c in zip(offsets, chunks[:-2], strict=True)),
                            slice(r0, r0 + ch),
                            slice(c0, c0 + cw),
                        )
                    ]
                    key = ".".join(
                        str(i)
                        for i in (
                            *((b + o) // c for b, o, c in zip(lead, offsets, chunks, strict=False)),
                            (y0 + r0) // ch,
                            (x0 + c0) // cw,
                        )
                    )
                    (self.folder / key).write_bytes(codec.encode(_full_chunk(part, chunks, fill)))


def plain_chunks(arr: zarr.Array | LocalArray) -> tuple[Path | None, Any, Any]:
    """``(folder, fill value, codec)`` of an array whose chunk files imagelib reads and writes itself: a
    :class:`LocalArray`'s, or a zarr array's where :func:`chunk_folder` finds one (None: zarr-python
    does the I/O)."""
    if isinstance(arr, LocalArray):
        return arr.folder, arr.fill_value, arr.compressor
    return chunk_folder(arr), arr.metadata.fill_value, arr.metadata.compressor


def chunk_folder(arr: zarr.Array) -> Path | None:
    """The folder of a local Zarr v2 array whose chunk files are plain ``<i>.<j>.<k>`` files of C-order,
    little-endian (or 1-byte) values through one compressor; None where zarr-python must do the I/O."""
    import zarr.storage

    store, meta = arr.store_path.store, arr.metadata
    little = np.dtype(arr.dtype).itemsize == 1 or getattr(meta.dtype, "endianness", "little") == "little"
    plain = (
        isinstance(store, zarr.storage.LocalStore)
        and meta.zarr_format == 2
        and meta.dimension_separator == "."
        and meta.order == "C"
        and not meta.filters
        and little
    )
    return Path(store.root) / arr.store_path.path if plain else None


class ChunkReader:
    """Reads one 2D chunk (a y/x chunk at fixed leading indices) of a Zarr v2 array.

    The inverse of :class:`RowWriter`: on a local store the chunk file is read and decoded with the
    array's own compressor — zarr-python's async path costs a few ms per chunk, several times the
    decode, and a tile server or export reads thousands. Missing chunks are the fill value; other stores
    go through zarr-python. ``arr`` is a zarr array or a :class:`imagelib.zarr_local.LocalArray` (a
    plain local array opened without zarr-python).
    """

    def __init__(self, arr: zarr.Array | LocalArray) -> None:
        self.arr, self.shape, self.chunks = arr, tuple(arr.shape), tuple(arr.chunks)
        self.folder, self.fill, self.codec = plain_chunks(arr)
        self.dtype = np.dtype(arr.dtype).newbyteorder("<") if self.folder else np.dtype(arr.dtype)

    def read(self, lead: Sequence[tuple[int, int]], yaxis: int, xaxis: int, cy: int, cx: int) -> np.ndarray:
        """The chunk at grid row ``cy`` and column ``cx`` (``yaxis``/``xaxis`` its axes), at the leading
        ``(axis, index)`` pairs, cut to the array's edge: a 2D array."""
        chunks, shape = self.chunks, self.shape
        ch, cw = chunks[yaxis], chunks[xaxis]
        if self.folder is None:
            region: list[Any] = [slice(None)] * len(shape)
            region[yaxis], region[xaxis] = slice(cy * ch, (cy + 1) * ch), slice(cx * cw, (cx + 1) * cw)
            for axis, i in lead:
                region[axis] = i
            return self.arr[tuple(region)]
        grid, within = [0] * len(shape), [0] * len(shape)
        grid[yaxis], grid[xaxis] = cy, cx
        for axis, i in lead:
            grid[axis], within[axis] = divmod(i, chunks[axis])
        h, w = min(ch, shape[yaxis] - cy * ch), min(cw, shape[xaxis] - cx * cw)
        block = read_chunk(self.folder, grid, chunks, self.dtype, self.codec)
        if block is None:  # never written: zarr's fill value
            return np.full((h, w), self.fill, dtype=self.dtype)
        at: list[Any] = [within[a] for a in range(len(shape))]
        at[yaxis], at[xaxis] = slice(0, h), slice(0, w)
        return block[tuple(at)]


def _full_chunk(part: np.ndarray, chunks: Sequence[int], fill: Any) -> np.ndarray:
    """Zarr v2 stores edge chunks at full size, padded with the fill value."""
    if part.shape == tuple(chunks):
        return np.ascontiguousarray(part)
    full = np.full(chunks, fill, dtype=part.dtype)
    full[tuple(slice(0, n) for n in part.shape)] = part
    return full


class PyramidWriter:
    """Write level 0 block by block and cascade 2×2 means into every lower level in the same pass.

    Blocks come in one of two orders (all bands, or a slab of z planes, each), and no level is read back:

    - strips of whole rows, in row order: each level buffers at most one chunk row;
    - ``CHUNK``² blocks in Z order (tiled sources; the index has an x slice): each lower-level chunk is
      assembled from its four children and written as soon as the last one is in, so each level holds
      at most one open chunk and memory is flat in the image's width as well as its height.

    Volumes (``z,y,x``) arrive as z slabs, each in one of those orders: only y and x are halved, so a
    slab's lower levels depend on that slab alone, and they are flushed when its last block arrives.
    """

    #: writes allowed in flight: compression and file I/O release the GIL, so one writer thread overlaps
    #: them with reading the next block; the bound keeps memory flat. Z-order blocks are one chunk each,
    #: so more of them may wait, up to MAX_BLOCKS_IN_FLIGHT and IN_FLIGHT_BYTES.
    MAX_IN_FLIGHT = 2
    MAX_BLOCKS_IN_FLIGHT = 8
    IN_FLIGHT_BYTES = 64 * 1024 * 1024

    def __init__(self, group: zarr.Group | LocalGroup, dims: Sequence[str], nodata: Any = None):
        self.group, self.nodata = group, nodata
        self.arrays = [group[str(k)] for k in range(len(group))]
        self.writers = [RowWriter(arr) for arr in self.arrays]
        self.height = self.arrays[0].shape[-2]
        self.lead: tuple[int, ...] = ()  # leading offsets of the slab being streamed
        self.pending: list[np.ndarray | None] = [None] * len(self.arrays)
        self.rows = [0] * len(self.arrays)
        self.open: dict[tuple[int, int, int], list[Any]] = {}  # Z order: (level, cy, cx) → [chunk, children]
        self._io = ThreadPoolExecutor(1, thread_name_prefix="imagelib-chunks")
        self._in_flight: deque[Future[None]] = deque()
        self._bound = self.MAX_IN_FLIGHT

    def __enter__(self) -> PyramidWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._io.shutdown(wait=True)  # never leave a thread writing into staging behind

    def _store(self, level: int, y0: int, rows: np.ndarray, x0: int = 0) -> None:
        self._in_flight.append(self._io.submit(self.writers[level].write, y0, rows, self.lead, x0))
        while len(self._in_flight) > self._bound:
            self._in_flight.popleft().result()  # re-raises a failed write here

    def write(self, index: tuple[slice, ...], block: np.ndarray) -> None:
        """Store one block of level 0 (``index`` as yielded by the validation read-through)."""
        if len(index) == block.ndim:
            self._write_tile(index, block)
            return
        rows = index[-1]
        if rows.start == 0:  # a new slab (the whole image, unless a volume)
            self.lead = tuple(s.start or 0 for s in index[:-1])
        self._store(0, rows.start, block)
        if len(self.arrays) > 1:
            self._push(1, downsample2(block, self.nodata))
        if rows.stop == self.height:
            self._flush()

    def _write_tile(self, index: tuple[slice, ...], block: np.ndarray) -> None:
        """A ``CHUNK``² block of level 0 in Z order: store it, then complete its parents."""
        rows, cols = index[-2:]
        if rows.start == 0 and cols.start == 0:  # a new slab
            self.lead = tuple(s.start or 0 for s in index[:-2])
            fits = self.IN_FLIGHT_BYTES // max(1, block.nbytes)
            self._bound = max(self.MAX_IN_FLIGHT, min(self.MAX_BLOCKS_IN_FLIGHT, fits))
        self._store(0, rows.start, block, cols.start)
        self._complete(0, rows.start // CHUNK, cols.start // CHUNK, block)

    def _complete(self, level: int, cy: int, cx: int, chunk: np.ndarray) -> None:
        """Chunk ``(cy, cx)`` of ``level`` is stored: put its 2×2 mean into its parent, and store the
        parent (and so on down) once all of the parent's children are in."""
        if level + 1 == len(self.arrays):
            return
        half, key = downsample2(chunk, self.nodata), (level + 1, cy // 2, cx // 2)
        if key not in self.open:
            self.open[key] = [np.empty(self._chunk_shape(*key, half.shape[:-2]), half.dtype), 0]
        parent = self.open[key]
        y0, x0 = (cy % 2) * (CHUNK // 2), (cx % 2) * (CHUNK // 2)
        parent[0][..., y0 : y0 + half.shape[-2], x0 : x0 + half.shape[-1]] = half
        parent[1] += 1
        if parent[1] == self._children(level, cy // 2, cx // 2):
            del self.open[key]
            self._store(level + 1, key[1] * CHUNK, parent[0], key[2] * CHUNK)
            self._complete(*key, parent[0])

    def _chunk_shape(self, level: int, cy: int, cx: int, lead: tuple[int, ...]) -> tuple[int, ...]:
        h, w = self.arrays[level].shape[-2:]
        return (*lead, min(CHUNK, h - cy * CHUNK), min(CHUNK, w - cx * CHUNK))

    def _children(self, level: int, py: int, px: int) -> int:
        """How many chunks of ``level`` make up chunk ``(py, px)`` of the level below it (1 to 4)."""
        h, w = self.arrays[level].shape[-2:]
        rows, cols = -(-h // CHUNK), -(-w // CHUNK)
        return (min(2 * py + 2, rows) - 2 * py) * (min(2 * px + 2, cols) - 2 * px)

    def _push(self, level: int, rows: np.ndarray) -> None:
        buffered = self.pending[level]
        buffered = rows if buffered is None else np.concatenate([buffered, rows], axis=-2)
        while buffered.shape[-2] >= CHUNK:
            self._emit(level, buffered[..., :CHUNK, :])
            buffered = buffered[..., CHUNK:, :]
        self.pending[level] = buffered if buffered.shape[-2] else None

    def _emit(self, level: int, rows: np.ndarray) -> None:
        self._store(level, self.rows[level], rows)
        self.rows[level] += rows.shape[-2]
        if level + 1 < len(self.arrays):
            self._push(level + 1, downsample2(rows, self.nodata))

    def _flush(self) -> None:
        """End of a slab: write the partial last chunk row of every level, start the next slab at row 0."""
        for level in range(1, len(self.arrays)):
            rest = self.pending[level]
            self.pending[level] = None
            if rest is not None:
                self._emit(level, rest)
        self.rows = [0] * len(self.arrays)

    def close(self) -> None:
        """Wait for every chunk write (slabs were flushed as their last row arrived)."""
        self._flush()
        while self._in_flight:
            self._in_flight.popleft().result()
        if self.open:  # a Z-order slab missed blocks: its lower levels would be incomplete
            raise RuntimeError(f"pyramid chunks never completed: {sorted(self.open)[:4]}")
