"""HTTP rules of tiles shared by every server of the tile grammar (the FastAPI service, the Jupyter server
extension): media types, the strong ETag, ``If-None-Match`` revalidation and immutable caching (the coded
error body is :func:`imagelib.errors.error_body`). Framework-free: any server imports it."""

from __future__ import annotations

import hashlib

MEDIA = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
#: versions are immutable, so a tile never changes: shared caches and CDNs may keep it forever
IMMUTABLE = "public, max-age=31536000, immutable"


def etag(version: str, scheme: str, tile: tuple[int, ...] | str, fmt: str, chain: list | None) -> str:
    """Strong ETag from what determines the bytes: version, scheme, tile, format and canonical chain."""
    from imagelib.filters import chain_json

    text = f"{version}|{scheme}|{tile}|{fmt}|{chain_json(chain) if chain else ''}"
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:40] + '"'


def not_modified(if_none_match: str | None, tag: str) -> bool:
    """``If-None-Match`` lists ``tag`` (weak comparison, as RFC 9110 asks for this header) or is ``*``."""
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or tag in tags
