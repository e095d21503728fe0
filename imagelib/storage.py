"""Object storage behind fsspec (``file://``, ``s3://``, ``gs://``, Ceph via S3) and one small interface.

Writes land under ``staging/<uuid>/`` and become visible only through :meth:`Store.publish`, after
verification. On a local filesystem publishing is one atomic ``rename``; on object stores the
objects are copied and a ``_PUBLISHED`` marker is written last, so readers never see half a version.
The store knows nothing of the catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import zarr
import zarr.storage

from imagelib.config import settings
from imagelib.errors import NotFound, StorageError
from imagelib.hashing import hash_entry, iter_blocks, tree_entries

MARKER = "_PUBLISHED"


class Store:
    """An fsspec-backed object store rooted at ``url``."""

    def __init__(self, url: str | None = None, storage_options: dict[str, Any] | None = None):
        self.url = (url or settings().store).rstrip("/")
        self.options = storage_options or _options_from_env(self.url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.options)
        self.local = self.fs.protocol in ("file", ("file", "local")) or "file" in self.fs.protocol
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    # -- keys -------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """Filesystem path (no protocol) of a key."""
        return f"{self.root}/{key}" if key else self.root

    def key_url(self, key: str) -> str:
        """Full URL of a key, e.g. for the catalog's ``storage_url``."""
        return f"{self.url}/{key}"

    def new_staging(self) -> str:
        """A fresh staging prefix; nothing under it is visible to readers."""
        key = f"staging/{uuid.uuid4().hex}"
        if self.local:
            Path(self.path(key)).mkdir(parents=True)
        return key

    # -- writes -----------------------------------------------------------------------------
    def put_file(self, local: Path, key: str, on_bytes: Callable[[int], None] | None = None) -> str:
        """Stream a local file (or directory tree) to ``key``; return the sha256 of what was sent
        (the same value as :func:`imagelib.hashing.file_sha256`, computed in the same single pass)."""
        digest = hashlib.sha256()
        for item, relative in tree_entries(local):
            hash_entry(digest, relative)
            self._copy(item, f"{key}/{relative}" if relative else key, digest, on_bytes)
        return digest.hexdigest()

    def _copy(self, local: Path, key: str, digest: Any, on_bytes: Callable[[int], None] | None) -> None:
        try:
            if self.local:
                Path(self.path(key)).parent.mkdir(parents=True, exist_ok=True)
            with local.open("rb") as src, self.fs.open(self.path(key), "wb") as dst:
                for chunk in iter_blocks(src):
                    digest.update(chunk)
                    dst.write(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
        except OSError as exc:
            raise StorageError(f"writing {self.key_url(key)} failed: {exc}") from exc

    def zarr_store(self, key: str, read_only: bool = False) -> zarr.storage.StoreLike:
        """A zarr store at ``key`` (LocalStore on disk, FsspecStore elsewhere)."""
        if self.local:
            return zarr.storage.LocalStore(self.path(key), read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self.key_url(key), storage_options=self.options, read_only=read_only
        )

    def verify_size(self, key: str, expected: int) -> None:
        """Refuse to publish a staged object whose size differs from what was written."""
        found = self.fs.size(self.path(key))
        if found != expected:
            raise StorageError(
                f"staged {key} has {found} bytes, expected {expected}", code="STORAGE_VERIFY_FAILED"
            )

    def publish(self, staging: str, final: str) -> bool:
        """Make ``staging`` visible at ``final`` atomically; False if ``final`` was already published."""
        if self.is_published(final):
            self.remove(staging)
            return False
        if self.local:
            Path(self.path(staging), MARKER).write_text("ok")
            Path(self.path(final)).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(self.path(staging), self.path(final))
            except OSError:  # another process published the same content-addressed key first
                self.remove(staging)
                if not self.is_published(final):
                    raise
                return False
            return True
        self.fs.copy(self.path(staging), self.path(final), recursive=True)
        self.fs.pipe(self.path(f"{final}/{MARKER}"), b"ok")
        self.remove(staging)
        return True

    def remove(self, key: str) -> None:
        """Delete a key or prefix; missing keys are fine."""
        if self.local:
            shutil.rmtree(self.path(key), ignore_errors=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(key), recursive=True)

    def collect_staging(self) -> int:
        """Remove abandoned staging prefixes (e.g. from killed ingests); return how many."""
        try:
            entries = self.fs.ls(self.path("staging"), detail=False)
        except FileNotFoundError:
            return 0
        for entry in entries:
            self.fs.rm(entry, recursive=True)
        return len(entries)

    # -- reads ------------------------------------------------------------------------------
    def is_published(self, key: str) -> bool:
        """True when ``key`` exists and its publish completed."""
        return self.fs.exists(self.path(f"{key}/{MARKER}"))

    def open_group(self, key: str) -> zarr.Group:
        """Open a published zarr group read-only."""
        if not self.is_published(key.rsplit("/", 1)[0]) and not self.is_published(key):
            raise NotFound(f"{self.key_url(key)} is not published")
        return zarr.open_group(store=self.zarr_store(key, read_only=True), mode="r")


def _options_from_env(url: str) -> dict[str, Any]:
    """S3-compatible endpoints (moto, Ceph, MinIO) from the standard AWS variables."""
    if url.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        return {"client_kwargs": {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}}
    return {}
