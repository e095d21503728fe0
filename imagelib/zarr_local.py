"""Plain local Zarr v2 groups (the layout imagelib's pyramids are written in) without zarr-python: the
``.zgroup``/``.zattrs``/``.zarray`` JSON written and read directly, chunks decoded by their compressor.

zarr-python's import is ~0.15–0.25 s, the largest single part of a CLI tile export's start-up, and its
sync API keeps an event-loop thread and an executor alive in the process afterwards (so an ingest could
not fork its tile renderers). Writing a local pyramid needs only the metadata files and
:class:`imagelib.multiscale.RowWriter`'s plain chunk files; reading one, only
:class:`imagelib.multiscale.ChunkReader`'s. A group any array of which is not plain (another format,
separator, order, filters, big-endian values) gives None: the caller opens it with zarr-python instead.
Every file written here is one zarr-python reads (tested).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np


class LocalArray:
    """One plain Zarr v2 array: ``shape``, ``chunks``, ``dtype``, ``fill_value``, ``compressor``, and
    ``folder`` (where its ``<i>.<j>.<k>`` chunk files are); indexed from its chunk files."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = folder
        self.shape = tuple(int(n) for n in meta["shape"])
        self.chunks = tuple(int(n) for n in meta["chunks"])
        self.dtype = np.dtype(meta["dtype"])
        self.ndim = len(self.shape)
        self.fill_value = _decode_fill(meta.get("fill_value"), self.dtype)
        self._compressor = meta.get("compressor")

    @cached_property
    def compressor(self) -> Any:
        """The codec of the chunks (None: stored raw): see :func:`codec`."""
        return codec(self._compressor)

    def chunk(self, grid: Sequence[int]) -> np.ndarray:
        """The whole chunk at grid position ``grid`` (the fill value where it was never written)."""
        block = read_chunk(self.folder, grid, self.chunks, self.dtype, self.compressor)
        return np.full(self.chunks, self.fill_value, self.dtype) if block is None else block

    def __getitem__(self, region: Any) -> np.ndarray:
        """Integers and unit-step slices per axis (``arr[...]``, ``arr[z]``, ``arr[1, :10, 5:]``), from
        the chunks under the selection; other selections through zarr-python."""
        bounds = _bounds(region, self.shape)
        if bounds is None:
            import zarr

            return zarr.open_array(store=str(self.folder), mode="r", zarr_format=2)[region]
        out = np.empty([stop - start for start, stop, _ in bounds], self.dtype)
        spans = [
            range(start // c, -(-stop // c)) for (start, stop, _), c in zip(bounds, self.chunks, strict=True)
        ]
        for grid in itertools.product(*spans):
            src, dst = [], []
            for (start, stop, _), g, c in zip(bounds, grid, self.chunks, strict=True):
                lo, hi = max(start, g * c), min(stop, (g + 1) * c)
                src.append(slice(lo - g * c, hi - g * c))
                dst.append(slice(lo - start, hi - start))
            out[tuple(dst)] = self.chunk(grid)[tuple(src)]
        return out.reshape([stop - start for start, stop, whole in bounds if whole])


def codec(config: dict[str, Any] | None) -> Any:
    """The chunk codec a numcodecs ``config`` names (None: stored raw). Blosc is :class:`Blosc`; any other
    codec is numcodecs' own."""
    if config is None:
        return None
    if Blosc.handles(config):
        return Blosc(config)
    import numcodecs

    return numcodecs.get_codec(dict(config))


class Blosc:
    """numcodecs' Blosc codec through imagecodecs: the same c-blosc frames either way (tested both
    ways), but imagecodecs loads in ~5 ms where numcodecs' registry costs ~60 ms of every ingest's and
    export's start-up, and it en/decodes a chunk 2–3× faster here (one thread per call, no global
    lock: the writer and render threads each run their own)."""

    #: numcodecs' ``shuffle`` values imagecodecs takes as they are: none, byte, bit (not -1, "auto")
    SHUFFLES = (0, 1, 2)

    def __init__(self, config: dict[str, Any]) -> None:
        self.cname, self.clevel = config["cname"], int(config["clevel"])
        self.shuffle, self.blocksize = int(config["shuffle"]), int(config.get("blocksize") or 0)

    @staticmethod
    def handles(config: dict[str, Any]) -> bool:
        """True for a Blosc config this class writes exactly as numcodecs would."""
        return (
            config.get("id") == "blosc"
            and config.get("cname") in ("lz4", "lz4hc", "blosclz", "zstd", "zlib")
            and config.get("shuffle") in Blosc.SHUFFLES
        )

    def encode(self, data: np.ndarray) -> bytes:
        """One chunk's frame (imagecodecs, as numcodecs, takes the type size from the array's items)."""
        import imagecodecs

        return imagecodecs.blosc_encode(
            np.ascontiguousarray(data),
            level=self.clevel,
            compressor=self.cname,
            shuffle=self.shuffle,
            blocksize=self.blocksize,
            numthreads=1,
        )

    def decode(self, data: bytes) -> bytes:
        """The chunk's bytes."""
        import imagecodecs

        return imagecodecs.blosc_decode(data, numthreads=1)


def read_chunk(
    folder: Path, grid: Sequence[int], chunks: Sequence[int], dtype: np.dtype, codec: Any
) -> np.ndarray | None:
    """The chunk file ``<i>.<j>.<k>`` at ``grid``, decoded by ``codec`` (None: stored raw) to the full
    chunk shape; None where it was never written."""
    try:
        data = (folder / ".".join(map(str, grid))).read_bytes()
    except FileNotFoundError:
        return None
    raw = data if codec is None else codec.decode(data)
    return np.frombuffer(raw, dtype).reshape(chunks)


def _bounds(region: Any, shape: tuple[int, ...]) -> list[tuple[int, int, bool]] | None:
    """``(start, stop, keeps_axis)`` per axis for integers, unit-step slices and one Ellipsis; None for
    any other selection."""
    items = list(region) if isinstance(region, tuple) else [region]
    if items.count(Ellipsis) > 1:
        return None
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (len(shape) - len(items) + 1)
    items += [slice(None)] * (len(shape) - len(items))
    if len(items) != len(shape):
        return None
    out = []
    for item, n in zip(items, shape, strict=True):
        if isinstance(item, slice) and item.step in (None, 1):
            start, stop, _ = item.indices(n)
            out.append((start, max(start, stop), True))
        elif isinstance(item, int | np.integer) and -n <= item < n:
            out.append((int(item) % n, int(item) % n + 1, False))
        else:
            return None
    return out


def _decode_fill(value: Any, dtype: np.dtype) -> Any:
    """Zarr v2's JSON fill value: ``"NaN"``/``"Infinity"``/``"-Infinity"`` for floats."""
    return float(value) if isinstance(value, str) and dtype.kind == "f" else value


def _encode_fill(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


class LocalAttrs(dict[str, Any]):
    """A group's attributes, written back to ``.zattrs`` (atomically) on every change."""

    def __init__(self, path: Path, values: dict[str, Any]) -> None:
        super().__init__(values)
        self.path = path

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._save()

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """``dict.update``, then saved."""
        super().update(*args, **kwargs)
        self._save()

    def asdict(self) -> dict[str, Any]:
        """A plain copy (zarr-python's ``Attributes.asdict``)."""
        return dict(self)

    def _save(self) -> None:
        _write_json(self.path, dict(self))


class LocalGroup:
    """A plain local Zarr v2 group: ``attrs`` (a dict) and its arrays by path (``group["0"]``)."""

    def __init__(self, folder: Path, attrs: dict[str, Any], arrays: dict[str, LocalArray]) -> None:
        self.folder, self._arrays = folder, arrays
        self.attrs = LocalAttrs(folder / ".zattrs", attrs)

    def __getitem__(self, path: str) -> LocalArray:
        return self._arrays[path]

    def __len__(self) -> int:
        return len(self._arrays)


def create_group(folder: Path, arrays: dict[str, dict[str, Any]], attrs: dict[str, Any]) -> LocalGroup:
    """A new group in ``folder`` with empty arrays ``{path: {"shape", "chunks", "dtype", "fill_value",
    "compressor"}}`` (numcodecs config) and ``attrs``; replaces what was there."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / ".zgroup", {"zarr_format": 2})
    made = {}
    for path, spec in arrays.items():
        dtype = np.dtype(spec["dtype"])
        meta = {
            "shape": list(spec["shape"]),
            "chunks": list(spec["chunks"]),
            "dtype": dtype.str,
            "fill_value": _encode_fill(spec.get("fill_value")),
            "order": "C",
            "filters": None,
            "dimension_separator": ".",
            "compressor": spec.get("compressor"),
            "zarr_format": 2,
        }
        (folder / path).mkdir(exist_ok=True)
        _write_json(folder / path / ".zarray", meta)
        made[path] = LocalArray(folder / path, meta)
    group = LocalGroup(folder, {}, made)
    group.attrs.update(attrs)
    return group


def _write_json(path: Path, value: Any) -> None:
    """Write JSON whole or not at all (a reader never sees half a metadata file)."""
    part = path.with_name(f".{path.name}.part")
    part.write_text(json.dumps(value, indent=2, allow_nan=True))  # as zarr-python writes them
    os.replace(part, path)


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
