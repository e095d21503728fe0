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


def file_sha256(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """sha256 of a file's bytes, or of a directory tree (sorted relative path + NUL + content per file)."""
    digest = hashlib.sha256()
    files = (
        [path]
        if path.is_file()
        else sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    )
    for item in files:
        if item is not path:
            digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        with item.open("rb") as fh:
            for chunk in iter_blocks(fh):
                digest.update(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
    return digest.hexdigest()


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
