"""Query-parameter parsing shared by ``/search`` and the STAC API (bbox, datetime intervals, chains)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path as PathParam

from imagelib.errors import UsageError

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
HEX32 = r"^[0-9a-f]{32}$"


#: path parameters whose accepted values the schema states (so schemathesis and clients know them)
VersionId = Annotated[str, PathParam(pattern=HEX32, description="version ID (32 lowercase hex digits)")]
JobId = Annotated[str, PathParam(pattern=HEX32, description="job ID")]
Namespace = Annotated[str, PathParam(pattern=NAME, description="namespace name")]
Dataset = Annotated[str, PathParam(pattern=NAME, description="dataset name")]


def parse_bbox(text: str | list[float] | None) -> tuple[float, float, float, float] | None:
    """``w,s,e,n`` (EPSG:4326) → tuple; 6-number 3-D boxes keep their horizontal part."""
    if text is None or text == "":
        return None
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        raise UsageError("bbox must be west,south,east,north numbers", field="bbox", found=text) from None
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    if len(values) != 4 or not all(abs(v) <= 360 for v in values) or values[1] > values[3]:
        raise UsageError("bbox must be west,south,east,north in degrees", field="bbox", found=text)
    return values[0], values[1], values[2], values[3]


def _instant(text: str) -> datetime | None:
    if text in ("", ".."):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not an RFC 3339 date-time", field="datetime", found=text) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_datetime(text: str | None) -> tuple[datetime | None, datetime | None] | None:
    """An instant or an interval ``start/end`` (either end open with ``..``) → (start, end)."""
    if not text:
        return None
    if "/" in text:
        start_text, _, end_text = text.partition("/")
        start, end = _instant(start_text), _instant(end_text)
        if start and end and start > end:
            raise UsageError("datetime interval ends before it starts", field="datetime", found=text)
        return start, end
    instant = _instant(text)
    return instant, instant


def parse_chain(text: str | None, max_bytes: int) -> list[dict[str, Any]] | None:
    """``?chain=`` (URL-decoded JSON array) → validated canonical chain; never a file path."""
    from imagelib.tiling.http import parse_chain as parse  # one parser for every server of the grammar

    return parse(text, max_bytes)
