"""Plane sources: one 2D image (with a leading band axis) at every pyramid level down to 1×1.

``StoredPlane`` reads the stored OME-Zarr multiscale chunk by chunk through a shared decoded-chunk
cache, so a tile touches only the chunks under it; levels below the smallest stored one are derived in
memory with the same 2×2 mean. ``MemoryPlane`` holds a small array (3D slices, orthogonal views).
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from imagelib.multiscale import DIM_OF_AXIS, ChunkReader, downsample2, level_attrs
from imagelib.tiling.cache import LruCache
from imagelib.tiling.grid import Window

if TYPE_CHECKING:  # zarr costs ~0.2 s to import; a plain local pyramid is read without it
    import zarr

    from imagelib.zarr_local import LocalGroup

#: Decoded chunks of stored planes opened without a library context's own cache.
CHUNK_CACHE_BYTES = 256 * 1024**2
CHUNKS = LruCache(CHUNK_CACHE_BYTES)


def level_count(height: int, width: int) -> int:
    """Levels from full resolution down to 1×1 (``ceil`` halving)."""
    return math.ceil(math.log2(max(height, width, 1))) + 1


def dims_of(group: zarr.Group | LocalGroup) -> tuple[str, ...]:
    """Dimension names (``band``/``z``/``y``/``x``) of a stored multiscale group, in array order."""
    return tuple(DIM_OF_AXIS.get(a["name"], a["name"]) for a in group.attrs["multiscales"][0]["axes"])


class Plane:
    """A 2D image ``(bands, y, x)`` with levels ``0`` (full) … ``level_count - 1`` (1×1)."""

    height: int
    width: int
    bands: int
    dtype: np.dtype
    attrs: dict[str, Any]

    @property
    def levels(self) -> int:
        """Number of levels down to 1×1."""
        return level_count(self.height, self.width)

    def shape(self, level: int) -> tuple[int, int]:
        """``(height, width)`` of a level."""
        k = 2**level
        return math.ceil(self.height / k), math.ceil(self.width / k)

    def full(self, level: int) -> Window:
        """The whole level as a window."""
        h, w = self.shape(level)
        return Window(0, h, 0, w)

    def read(self, level: int, window: Window) -> np.ndarray:
        """Pixels ``(bands, h, w)`` of a window (must lie inside the level)."""
        raise NotImplementedError


class MemoryPlane(Plane):
    """A plane held in memory; lower levels by :func:`imagelib.multiscale.downsample2`."""

    def __init__(self, data: np.ndarray, attrs: dict[str, Any]) -> None:
        self._levels = [data if data.ndim == 3 else data[None]]
        self.bands, self.height, self.width = self._levels[0].shape
        self.dtype = self._levels[0].dtype
        self.attrs = attrs
        self._lock = threading.Lock()

    def level_array(self, level: int) -> np.ndarray:
        """The whole level ``(bands, h, w)``, derived on first use."""
        with self._lock:
            while len(self._levels) <= level:
                self._levels.append(downsample2(self._levels[-1], self.attrs.get("nodata")))
            return self._levels[level]

    def read(self, level: int, window: Window) -> np.ndarray:
        """Pixels of a window."""
        return self.level_array(level)[:, window.y0 : window.y1, window.x0 : window.x1]


class StoredPlane(Plane):
    """One plane of a stored multiscale group: all bands of ``band,y,x``, or slice ``index`` of ``z,y,x``."""

    def __init__(
        self,
        group: zarr.Group | LocalGroup,
        key: str,
        index: int | None = None,
        chunks: LruCache | None = None,
    ) -> None:
        self.group, self.key, self.index = group, key, index
        self.chunks = CHUNKS if chunks is None else chunks  # a context passes its own (keyed by store)
        self.attrs = level_attrs(group, 0)
        paths = [d["path"] for d in group.attrs["multiscales"][0]["datasets"]]
        self.arrays = [group[p] for p in paths]
        self.readers = [ChunkReader(a) for a in self.arrays]
        dims = dims_of(group)
        self.yaxis, self.xaxis = dims.index("y"), dims.index("x")
        self.dtype = np.dtype(self.arrays[0].dtype)
        self.height, self.width = self.arrays[0].shape[self.yaxis], self.arrays[0].shape[self.xaxis]
        lead = [i for i, d in enumerate(dims) if d not in ("y", "x")]
        if not lead:
            self.leads: list[tuple[tuple[int, int], ...]] = [()]
        elif index is not None or dims[lead[0]] == "z":
            self.leads = [((lead[0], index or 0),)]
        else:
            self.leads = [((lead[0], b),) for b in range(self.arrays[0].shape[lead[0]])]
        self.bands = len(self.leads)
        self._memory: MemoryPlane | None = None
        self._lock = threading.Lock()

    def _tail(self) -> MemoryPlane:
        """The smallest stored level in memory, for the levels below it."""
        with self._lock:
            if self._memory is None:
                last = len(self.arrays) - 1
                self._memory = MemoryPlane(self._read_stored(last, self.full(last)), self.attrs)
            return self._memory

    def read(self, level: int, window: Window) -> np.ndarray:
        """Pixels of a window, from cached chunks."""
        last = len(self.arrays) - 1
        if level > last:
            return self._tail().read(level - last, window)
        return self._read_stored(level, window)

    def _read_stored(self, level: int, window: Window) -> np.ndarray:
        arr = self.arrays[level]
        ch, cw = arr.chunks[self.yaxis], arr.chunks[self.xaxis]
        out = np.empty((self.bands, *window.shape), self.dtype)
        for cy in range(window.y0 // ch, (window.y1 - 1) // ch + 1):
            ys = slice(max(window.y0, cy * ch), min(window.y1, (cy + 1) * ch))
            for cx in range(window.x0 // cw, (window.x1 - 1) // cw + 1):
                xs = slice(max(window.x0, cx * cw), min(window.x1, (cx + 1) * cw))
                for b, lead in enumerate(self.leads):
                    chunk = self._chunk(level, lead, cy, cx)
                    out[
                        b,
                        ys.start - window.y0 : ys.stop - window.y0,
                        xs.start - window.x0 : xs.stop - window.x0,
                    ] = chunk[ys.start - cy * ch : ys.stop - cy * ch, xs.start - cx * cw : xs.stop - cx * cw]
        return out

    def _chunk(self, level: int, lead: tuple[tuple[int, int], ...], cy: int, cx: int) -> np.ndarray:
        reader = self.readers[level]
        return self.chunks.get_or_load(
            (self.key, level, lead, cy, cx), lambda: reader.read(lead, self.yaxis, self.xaxis, cy, cx)
        )
