"""Caches: a thread-safe, byte-bounded LRU (decoded source chunks, encoded tiles) and the tile cache
keyed on version + level + tile + format + canonical chain + render options (optionally on disk)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np


def _nbytes(value: Any) -> int:
    return value.nbytes if isinstance(value, np.ndarray) else len(value)


class LruCache:
    """Least-recently-used cache bounded by bytes; concurrent misses of one key load it once."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._pending: dict[Any, Future[Any]] = {}
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any) -> Any | None:
        """The cached value or None."""
        with self._lock:
            return self._hit(key)

    def _hit(self, key: Any) -> Any | None:
        """Lookup under the lock: a hit becomes the most recently used entry."""
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
            self.hits += 1
        return value

    def put(self, key: Any, value: Any) -> None:
        """Store a value, evicting the least recently used ones beyond ``max_bytes``."""
        size = _nbytes(value)
        with self._lock:
            if key in self._data:
                self._size -= _nbytes(self._data.pop(key))
            self._data[key] = value
            self._size += size
            while self._size > self.max_bytes and len(self._data) > 1:
                self._size -= _nbytes(self._data.popitem(last=False)[1])

    def get_or_load(self, key: Any, load: Callable[[], Any]) -> Any:
        """The cached value, else ``load()`` once (other threads asking meanwhile wait for it)."""
        with self._lock:
            value = self._hit(key)
            if value is not None:
                return value
            future = self._pending.get(key)
            owner = future is None
            if owner:
                future = self._pending[key] = Future()
                self.misses += 1
        if not owner:
            return future.result()
        try:
            value = load()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._pending.pop(key, None)
        self.put(key, value)
        future.set_result(value)
        return value

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._data.clear()
            self._size = 0


def tile_key(**parts: Any) -> str:
    """Stable hex key of a tile request (JSON of its parts, keys sorted)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class TileCache:
    """Encoded tiles in memory (LRU) and, when ``directory`` is given, on disk as ``<key>.<fmt>``."""

    def __init__(self, max_bytes: int = 128 * 1024**2, directory: str | Path | None = None) -> None:
        self.memory = LruCache(max_bytes)
        self.directory = Path(directory) if directory else None

    def get(self, key: str) -> bytes | None:
        """Cached tile bytes or None."""
        found = self.memory.get(key)
        if found is None and self.directory and (path := self.directory / key[:2] / key).is_file():
            found = path.read_bytes()
            self.memory.put(key, found)
        return found

    def clear(self) -> None:
        """Forget the tiles held in memory (a disk cache stays: its keys include the store)."""
        self.memory.clear()

    def put(self, key: str, data: bytes) -> None:
        """Remember a tile."""
        self.memory.put(key, data)
        if self.directory:
            path = self.directory / key[:2] / key
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
