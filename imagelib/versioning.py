"""Content-addressed version IDs (DESIGN.md, "versioning").

* root: sha256 over the file's sha256 and the array's address inside the file;
* derived: sha256 over the sorted parent IDs, the canonical JSON of the operation and imagelib's
  major.minor version (a release that changes results must change IDs; patch releases must not).

IDs are the first 32 hex digits (128 bits) so they stay short in URLs and tile paths.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from imagelib._version import __version__
from imagelib.errors import UsageError
from imagelib.hashing import canonical_json

ID_LENGTH = 32
ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def _digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:ID_LENGTH]


def root_version_id(file_sha256: str, address: str | None = None) -> str:
    """ID of a version ingested from a file: same bytes and address ⇒ same ID."""
    return _digest(canonical_json({"kind": "root", "sha256": file_sha256.lower(), "address": address or ""}))


def code_version() -> str:
    """The part of imagelib's version that enters derived IDs (major.minor)."""
    return ".".join(__version__.split(".")[:2])


def derived_version_id(parents: list[str], operation: Any) -> str:
    """ID of a version computed from ``parents`` by ``operation`` (a JSON value, e.g. a filter chain)."""
    for parent in parents:
        check_version_id(parent)
    payload = {"kind": "derived", "parents": sorted(parents), "op": operation, "imagelib": code_version()}
    return _digest(canonical_json(payload))


def check_version_id(version: str) -> str:
    """Refuse anything that is not a well-formed ID (IDs end up in storage keys and URLs)."""
    if not isinstance(version, str) or not ID_PATTERN.match(version):
        raise UsageError(f"{version!r} is not a version ID (32 lowercase hex digits)", field="version")
    return version
