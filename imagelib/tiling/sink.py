"""Where exported pyramids go: any store URL or local folder, written through :class:`imagelib.storage.Store`
(a local folder, or ``s3://bucket/prefix`` with Content-Types so a bucket serves the viewer)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from imagelib.storage import LocalStore, Store, is_local_url


class TileWriter(Protocol):
    """Where the pyramid writer puts tiles: a :class:`Sink` (one object per tile) or a
    :class:`imagelib.tiling.archive.TileArchive` (one packed file; ``ordered``: one writer thread).
    ``forkable``: forked render processes may each write tiles into it themselves."""

    ordered: bool
    forkable: bool

    def write(self, rel: str, data: bytes | str) -> None: ...


class Sink:
    """Writes ``relative/path`` → bytes under an output folder or object-store prefix."""

    ordered = False  # objects are independent: tiles are written from the render threads

    def __init__(self, out: str | os.PathLike[str]) -> None:
        text = os.fspath(out)
        if is_local_url(text):
            text = Path(text.removeprefix("file://")).resolve().as_uri()
        self.store = Store(text)
        # a folder, yes; an object store's client (fsspec, aiohttp) keeps threads and sessions of its own
        self.forkable = isinstance(self.store, LocalStore)

    @property
    def url(self) -> str:
        """The output location as a URL."""
        return self.store.url

    def write(self, rel: str, data: bytes | str) -> None:
        """Write one object (text is UTF-8 encoded)."""
        self.store.write_bytes(rel, data.encode() if isinstance(data, str) else data)
