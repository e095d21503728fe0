"""Where exported pyramids go: a local folder (plain file writes) or any fsspec URL through
:class:`imagelib.storage.Store` (``s3://bucket/prefix``)."""

from __future__ import annotations

import mimetypes
import os
import threading
from pathlib import Path

from imagelib.storage import Store


class Sink:
    """Writes ``relative/path`` → bytes under an output folder or object-store prefix."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        text = os.fspath(out)
        self.remote = "://" in text and not text.startswith("file://")
        self.store = Store(text) if self.remote else None
        self.root = Path(text.removeprefix("file://")).resolve() if not self.remote else None
        self._dirs: set[Path] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The output location as a URL."""
        return self.store.url if self.store else self.root.as_uri()

    def _headers(self, rel: str) -> dict[str, str]:
        """Content-Type for S3 objects, so a bucket serves the viewer as a static site."""
        protocol = self.store.fs.protocol if self.store else ()
        if "s3" not in (protocol if isinstance(protocol, tuple) else (protocol,)):
            return {}
        return {"ContentType": mimetypes.guess_type(rel)[0] or "application/octet-stream"}

    def write(self, rel: str, data: bytes | str) -> None:
        """Write one object (text is UTF-8 encoded)."""
        payload = data.encode() if isinstance(data, str) else data
        if self.store is not None:
            self.store.fs.pipe_file(self.store.path(rel), payload, **self._headers(rel))
            return
        path = self.root / rel
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._dirs.add(path.parent)
        path.write_bytes(payload)
