"""Packed tile stores: a whole pyramid as ONE uncompressed ("stored") zip instead of one file per tile.

Why zip: every tile is one contiguous byte range and the central directory at the end is the index, so
a browser reads a tile with one HTTP ``Range`` request (``static/tilearchive.js``); any static host or
bucket serves it; ``unzip`` (or Python's :mod:`zipfile`) turns it back into the directory export, entry
names being the directory export's relative paths; no new dependency on either side. Tiles are already
compressed images, so entries are stored, never deflated.

The writer is our own (not :mod:`zipfile`): it only appends, so it streams to write-only object-store
files (fsspec's S3 writer cannot seek), entries land in the order given with a fixed timestamp (the same
pyramid gives the same bytes), and Zip64 records appear only where a field would overflow.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any

from imagelib.errors import UsageError
from imagelib.storage import Store, storage_errors
from imagelib.tiling.sink import Sink, TileWriter

SUFFIX = ".zip"
#: offsets/sizes from here on are written as 0xFFFFFFFF + a Zip64 record (module constants: tests lower them)
ZIP64_LIMIT = 0xFFFFFFFF
ZIP64_COUNT = 0xFFFF
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01: a fixed time keeps archives reproducible
_UTF8 = 0x0800  # general-purpose flag bit 11: names are UTF-8
_LOCAL = struct.Struct("<IHHHHHIIIHH")  # local file header, 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # central directory header, 46 bytes
_EOCD = struct.Struct("<IHHHHIIH")  # end of central directory, 22 bytes
_EOCD64 = struct.Struct("<IQHHIIQQQQ")  # Zip64 end of central directory record, 56 bytes
_LOCATOR64 = struct.Struct("<IIQI")  # Zip64 end of central directory locator, 20 bytes


class TileArchive:
    """Appends ``relative/path`` → bytes entries to one stored zip at ``key`` of a store; :meth:`close`
    writes the index. Writes must come from one thread at a time (``ordered``: the pyramid writer then
    renders in parallel and appends in job order)."""

    ordered = True
    forkable = False

    def __init__(self, store: Store, key: str) -> None:
        self.store, self.key = store, key
        with storage_errors(f"writing {store.key_url(key)}"):
            self._fh: Any = store.open_write(key)
        self._entries: list[tuple[bytes, int, int, int]] = []  # name, crc32, size, local header offset
        self._offset = 0
        self._lock = threading.Lock()  # appends are serial by contract; the lock makes misuse harmless

    @property
    def url(self) -> str:
        """The archive's URL."""
        return self.store.key_url(self.key)

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._offset

    def write(self, rel: str, data: bytes | str) -> None:
        """Append one entry (text is UTF-8 encoded)."""
        body = data.encode() if isinstance(data, str) else data
        name = rel.encode()
        if len(body) >= 0xFFFFFFFF:  # local headers carry 32-bit sizes; no tile comes near 4 GiB
            raise UsageError(f"{rel} is too large for an archive entry ({len(body)} bytes)", field="archive")
        crc = zlib.crc32(body)
        header = _LOCAL.pack(0x04034B50, 20, _UTF8, 0, 0, _DOS_DATE, crc, len(body), len(body), len(name), 0)
        with self._lock, storage_errors(f"writing {self.url}"):
            self._entries.append((name, crc, len(body), self._offset))
            self._fh.write(header + name + body)  # one write per tile
            self._offset += len(header) + len(name) + len(body)

    def close(self) -> None:
        """Write the central directory (the index) and the end records; the archive is then complete."""
        with self._lock, storage_errors(f"writing {self.url}"):
            start = self._offset
            directory = b"".join(_central(*entry) for entry in self._entries)
            end = len(directory) + start
            count = len(self._entries)
            tail = b""
            if count >= ZIP64_COUNT or start >= ZIP64_LIMIT or len(directory) >= ZIP64_LIMIT:
                tail = _EOCD64.pack(0x06064B50, 44, 45, 45, 0, 0, count, count, len(directory), start)
                tail += _LOCATOR64.pack(0x07064B50, 0, end, 1)
                count16, size32, start32 = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
            else:
                count16, size32, start32 = count, len(directory), start
            tail += _EOCD.pack(0x06054B50, 0, 0, count16, count16, size32, start32, 0)
            self._fh.write(directory + tail)
            self._offset = end + len(tail)
            self._fh.close()

    def abort(self) -> None:
        """Close and delete a partial archive (a reader would otherwise find no index)."""
        with contextlib.suppress(Exception):
            self._fh.close()
        self.store.remove(self.key)


def _central(name: bytes, crc: int, size: int, offset: int) -> bytes:
    """One central directory record; the header offset moves to a Zip64 extra field past 4 GiB."""
    extra = b""
    if offset >= ZIP64_LIMIT:
        extra = struct.pack("<HHQ", 0x0001, 8, offset)
        offset = 0xFFFFFFFF
    needed = 45 if extra else 20
    head = _CENTRAL.pack(
        0x02014B50,
        needed,
        needed,
        _UTF8,
        0,
        0,
        _DOS_DATE,
        crc,
        size,
        size,
        len(name),
        len(extra),
        0,
        0,
        0,
        0,
        offset,
    )
    return head + name + extra


@contextlib.contextmanager
def tile_writer(sink: Sink, archive: str | None) -> Iterator[TileWriter]:
    """The sink itself, or a :class:`TileArchive` at ``archive`` under it: closed (index written) when
    the block succeeds, removed when it fails."""
    if archive is None:
        yield sink
        return
    packed = TileArchive(sink.store, archive)
    try:
        yield packed
    except BaseException:
        packed.abort()
        raise
    packed.close()
