"""Streaming sha256 of files and directory trees, and canonical JSON for content-addressed IDs."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

BLOCK = 8 * 1024 * 1024


def iter_blocks(fh: BinaryIO, block: int = BLOCK) -> Iterator[bytes]:
    """Yield a binary stream in fixed-size blocks (memory stays flat)."""
    while chunk := fh.read(block):
        yield chunk


def tree_entries(path: Path) -> list[tuple[Path, str]]:
    """Files a content hash covers, with their relative paths: the file itself (``""``), or a
    directory's files sorted by relative POSIX path."""
    if path.is_file():
        return [(path, "")]
    files = ((p, p.relative_to(path).as_posix()) for p in path.rglob("*") if p.is_file())
    return sorted(files, key=lambda entry: entry[1])


def hash_entry(digest: Any, relative: str) -> None:
    """A directory member's relative path + NUL precede its bytes in the tree hash."""
    if relative:
        digest.update(relative.encode() + b"\0")


def file_sha256(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """sha256 of a file's bytes, or of a directory tree (sorted relative path + NUL + content per file)."""
    digest = hashlib.sha256()
    for item, relative in tree_entries(path):
        hash_entry(digest, relative)
        update_from_file(digest, item, on_bytes)
    return digest.hexdigest()


def update_from_file(digest: Any, path: Path, on_bytes: Callable[[int], None] | None = None) -> None:
    """Feed a file's bytes to ``digest`` through one reused buffer (a fresh 8 MiB ``bytes`` per block
    costs a page fault per 4 KiB, as much system time as the hashing itself)."""
    buffer = memoryview(bytearray(BLOCK))
    with path.open("rb", buffering=0) as fh:
        while size := fh.readinto(buffer):
            digest.update(buffer[:size])
            if on_bytes:
                on_bytes(size)


def jsonable(value: Any) -> Any:
    """Make a value strict-JSON safe: NaN/inf become strings, numpy scalars and tuples plain Python."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, strict JSON: equal values serialise to equal strings."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)
