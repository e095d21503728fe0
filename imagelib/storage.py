"""Object storage behind one small interface: :class:`LocalStore` (a directory) and :class:`FsspecStore`
(``s3://``, ``gs://``, Ceph/MinIO via the S3 API, anything fsspec opens), as zarr-python's
``LocalStore``/``FsspecStore``. ``Store(url)`` picks the class from the URL.

Writes land under ``staging/<uuid>/`` and become visible only through :meth:`Store.publish`, after
verification. A local store publishes with one atomic ``rename``; object stores copy the objects and
write a ``_PUBLISHED`` marker last, so readers never see half a version. The store knows nothing of the
catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from imagelib.config import settings
from imagelib.errors import ImagelibError, NotFound, StorageError
from imagelib.hashing import BLOCK, hash_entry, iter_blocks, tree_entries

if TYPE_CHECKING:  # fsspec and zarr are imported where used: together ~0.3 s of every CLI start-up
    import zarr
    import zarr.storage
    from fsspec import AbstractFileSystem

    from imagelib.zarr_local import LocalGroup

MARKER = "_PUBLISHED"


def is_local_url(url: str) -> bool:
    """True for plain paths and ``file://`` URLs."""
    return "://" not in url or url.startswith("file://")


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn the backend's OSError/ClientError into a coded StorageError naming what failed."""
    try:
        yield
    except ImagelibError:  # already coded (a store error, or an input error surfacing through a write)
        raise
    except FileNotFoundError as exc:
        raise StorageError(f"{what}: not found ({exc})", field="store") from exc
    except Exception as exc:  # botocore/gcsfs raise their own types for refused or unreachable stores
        if isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("botocore", "aiohttp", "gcsfs"):
            raise StorageError(f"{what} failed: {type(exc).__name__}: {exc}", field="store") from exc
        raise


class Store:
    """An object store rooted at ``url``: keys are ``/``-separated paths under the root.

    ``Store(url)`` returns a :class:`LocalStore` or :class:`FsspecStore`; subclasses implement only what
    differs (staging folders, publishing, removal, the zarr store class).
    """

    def __new__(cls, url: str | None = None, storage_options: dict[str, Any] | None = None) -> Store:
        if cls is Store:
            cls = LocalStore if is_local_url(url or settings().store) else FsspecStore
        return super().__new__(cls)

    def __init__(self, url: str | None = None, storage_options: dict[str, Any] | None = None):
        self.url = (url or settings().store).rstrip("/")
        self.options = storage_options or _options_from_env(self.url)
        self.root = self._root()

    def _root(self) -> str:
        """The path of the store's root on its filesystem (no protocol)."""
        return str(self._fs_and_root[1])

    @cached_property
    def _fs_and_root(self) -> tuple[AbstractFileSystem, str]:
        import fsspec

        return fsspec.core.url_to_fs(self.url, **self.options)

    @property
    def fs(self) -> AbstractFileSystem:
        """The fsspec filesystem of the store (imported on first use)."""
        return self._fs_and_root[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- keys -------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """Filesystem path (no protocol) of a key."""
        return f"{self.root}/{key}" if key else self.root

    def key_url(self, key: str) -> str:
        """Full URL of a key, e.g. for the catalog's ``storage_url``."""
        return f"{self.url}/{key}"

    def new_staging(self) -> str:
        """A fresh staging prefix; nothing under it is visible to readers."""
        return f"staging/{uuid.uuid4().hex}"

    # -- writes -----------------------------------------------------------------------------
    def put_file(self, local: Path, key: str, on_bytes: Callable[[int], None] | None = None) -> str:
        """Copy a local file (or directory tree) to ``key``; return the sha256 of the bytes stored (the
        value :func:`imagelib.hashing.file_sha256` gives for the source), hashed as they are sent."""
        digest = hashlib.sha256()
        for item, relative in tree_entries(local):
            hash_entry(digest, relative)
            self._copy(item, f"{key}/{relative}" if relative else key, digest, on_bytes)
        return digest.hexdigest()

    def _copy(self, local: Path, key: str, digest: Any, on_bytes: Callable[[int], None] | None) -> None:
        with (
            storage_errors(f"writing {self.key_url(key)}"),
            local.open("rb") as src,
            self.open_write(key) as dst,
        ):
            for chunk in iter_blocks(src):
                digest.update(chunk)
                dst.write(chunk)
                if on_bytes:
                    on_bytes(len(chunk))

    def open_write(self, key: str) -> Any:
        """A binary file object writing ``key``."""
        return self.fs.open(self.path(key), "wb")

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write one small object."""
        with storage_errors(f"writing {self.key_url(key)}"):
            self.fs.pipe_file(self.path(key), data)

    def zarr_store(self, key: str, read_only: bool = False) -> zarr.storage.StoreLike:
        """A zarr store at ``key``."""
        import zarr.storage

        return zarr.storage.FsspecStore.from_url(
            self.key_url(key), storage_options=self.options, read_only=read_only
        )

    def verify_size(self, key: str, expected: int) -> None:
        """Refuse to publish a staged object (or tree: the total of its files) whose size differs."""
        with storage_errors(f"checking {self.key_url(key)}"):
            found = self.stored_size(key)
        if found != expected:
            raise StorageError(
                f"staged {key} has {found} bytes, expected {expected}",
                code="STORAGE_VERIFY_FAILED",
                field="size",
                expected=expected,
                found=found,
            )

    def stored_size(self, key: str) -> int:
        """Bytes stored at ``key``: the object's size, or the total of a tree's files."""
        path = self.path(key)
        return self.fs.du(path, total=True) if self.fs.isdir(path) else self.fs.size(path)

    def publish(self, staging: str, final: str) -> bool:
        """Make ``staging`` visible at ``final`` atomically; False if ``final`` was already published."""
        if self.is_published(final):
            self.remove(staging)
            return False
        with storage_errors(f"publishing {self.key_url(final)}"):
            self.fs.copy(self.path(staging), self.path(final), recursive=True)
            self.fs.pipe(self.path(f"{final}/{MARKER}"), b"ok")
        self.remove(staging)
        return True

    def remove(self, key: str) -> None:
        """Delete a key or prefix; missing keys are fine."""
        with storage_errors(f"removing {self.key_url(key)}"), contextlib.suppress(FileNotFoundError):
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
        with storage_errors(f"reading {self.key_url(key)}"):
            return self.fs.exists(self.path(f"{key}/{MARKER}"))

    def open_group(self, key: str) -> zarr.Group:
        """Open a published zarr group read-only."""
        import zarr

        self._check_published(key)
        with storage_errors(f"opening {self.key_url(key)}"):
            return zarr.open_group(store=self.zarr_store(key, read_only=True), mode="r")

    def open_levels(self, key: str) -> zarr.Group | LocalGroup:
        """A published group for chunk-by-chunk reads (tiles): :meth:`open_group` here."""
        return self.open_group(key)

    def local_folder(self, key: str) -> Path | None:
        """The folder of ``key`` on this machine's filesystem; None for object stores."""
        return None

    def _check_published(self, key: str) -> None:
        if not self.is_published(key.rsplit("/", 1)[0]) and not self.is_published(key):
            raise NotFound(f"{self.key_url(key)} is not published", field="storage_url")


class LocalStore(Store):
    """A directory on a local (or mounted) filesystem; publishing is one atomic ``rename``."""

    def __init__(self, url: str | None = None, storage_options: dict[str, Any] | None = None):
        super().__init__(url, storage_options)
        with storage_errors(f"creating {self.url}"):
            Path(self.root).mkdir(parents=True, exist_ok=True)
        self._folders: set[Path] = set()  # folders known to exist: one mkdir per folder, not per tile

    def new_staging(self) -> str:
        """A fresh staging folder."""
        key = super().new_staging()
        with storage_errors(f"creating {self.key_url(key)}"):
            Path(self.path(key)).mkdir(parents=True)
        return key

    def open_write(self, key: str) -> Any:
        """A binary file writing ``key`` (parent folders created)."""
        return open(self._with_parent(key), "wb")

    def _with_parent(self, key: str) -> Path:
        """The path of ``key``, its parent folders created."""
        path = Path(self.path(key))
        if path.parent not in self._folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(path.parent)  # set.add is atomic under the GIL; a repeated mkdir is harmless
        return path

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write one small object."""
        with storage_errors(f"writing {self.key_url(key)}"), self.open_write(key) as fh:
            fh.write(data)

    def _copy(self, local: Path, key: str, digest: Any, on_bytes: Callable[[int], None] | None) -> None:
        """Copy block by block in the kernel (``sendfile``), hashing each block of the stored copy back
        from the page cache: the digest is of exactly the bytes stored, for about half the CPU of a
        read–hash–write loop (no copy through user space, one reused buffer). ``on_bytes`` hears of each
        block as it is stored, so progress is live and a caller can cancel by raising from it."""
        with storage_errors(f"writing {self.key_url(key)}"):
            path = self._with_parent(key)
            with local.open("rb") as src, path.open("wb") as dst, path.open("rb", buffering=0) as back:
                copy_and_hash(src, dst, back, digest, on_bytes)

    def _root(self) -> str:
        # fsspec's own rule (``~`` expanded, made absolute), without importing fsspec
        path = self.url.removeprefix("file://") or "/"
        return os.path.abspath(os.path.expanduser(path))

    def stored_size(self, key: str) -> int:
        """Bytes stored at ``key`` (fsspec's ``du``/``size`` answer, without importing fsspec)."""
        path = Path(self.path(key))
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size

    def zarr_store(self, key: str, read_only: bool = False) -> zarr.storage.StoreLike:
        """zarr's LocalStore at ``key`` (the fast chunk writer recognises it)."""
        import zarr.storage

        return zarr.storage.LocalStore(self.path(key), read_only=read_only)

    def is_published(self, key: str) -> bool:
        """True when ``key`` exists and its publish completed."""
        return os.path.exists(self.path(f"{key}/{MARKER}"))

    def local_folder(self, key: str) -> Path:
        """The folder of ``key``."""
        return Path(self.path(key))

    def open_levels(self, key: str) -> zarr.Group | LocalGroup:
        """A plain local Zarr v2 group read without zarr-python (its import is most of a tile export's
        start-up); :meth:`open_group` for any other layout."""
        from imagelib.zarr_local import open_local_group

        self._check_published(key)
        with storage_errors(f"opening {self.key_url(key)}"):
            group = open_local_group(self.local_folder(key))
        return self.open_group(key) if group is None else group

    def publish(self, staging: str, final: str) -> bool:
        """Write the marker into staging, then one ``rename``: the version appears whole or not at all."""
        if self.is_published(final):
            self.remove(staging)
            return False
        with storage_errors(f"publishing {self.key_url(final)}"):
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

    def remove(self, key: str) -> None:
        """Delete a file or folder; missing keys are fine."""
        self._folders.clear()
        path = Path(self.path(key))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def copy_and_hash(
    src: BinaryIO, dst: BinaryIO, back: BinaryIO, digest: Any, on_bytes: Callable[[int], None] | None
) -> None:
    """Copy ``src`` to ``dst`` a block at a time (``sendfile`` on Linux, else through user space) and feed
    each block, read back through ``back`` (the destination opened for reading), to ``digest``."""
    buffer = memoryview(bytearray(BLOCK))
    while _send_block(src, dst):
        while got := back.readinto(buffer):  # up to the end of what is stored so far
            digest.update(buffer[:got])
            if on_bytes:
                on_bytes(got)


def _send_block(src: BinaryIO, dst: BinaryIO) -> int:
    """Copy up to one block from ``src`` to ``dst``; the bytes copied (0 at the end)."""
    if sys.platform == "linux":
        return os.sendfile(dst.fileno(), src.fileno(), None, BLOCK)
    sent = dst.write(src.read(BLOCK))
    dst.flush()
    return sent


class FsspecStore(Store):
    """An object store through fsspec (S3, GCS, Ceph, MinIO, memory); objects carry a Content-Type."""

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write one object with its Content-Type (buckets then serve exported viewers as a site)."""
        with storage_errors(f"writing {self.key_url(key)}"):
            self.fs.pipe_file(self.path(key), data, **self._headers(key))

    def _headers(self, key: str) -> dict[str, str]:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        if not {"s3", "s3a"} & set(protocol):
            return {}
        return {"ContentType": mimetypes.guess_type(key)[0] or "application/octet-stream"}


def store_root(storage_url: str, version: str) -> str:
    """The store a version was written to: its storage URL minus ``/versions/<id>``."""
    suffix = f"/versions/{version}"
    if not storage_url.endswith(suffix):
        raise StorageError(f"storage URL {storage_url!r} does not end in {suffix}", field="storage_url")
    return storage_url[: -len(suffix)]


def _options_from_env(url: str) -> dict[str, Any]:
    """S3-compatible endpoints (moto, Ceph, MinIO) from the standard AWS variables."""
    if url.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        return {"client_kwargs": {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}}
    return {}
