"""HTTP rules of tiles shared by every server of the tile grammar (the FastAPI service, the Jupyter server
extension): media types, the strong ETag, ``If-None-Match`` revalidation and immutable caching (the coded
error body is :func:`imagelib.errors.error_body`). Framework-free: any server imports it."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np

from imagelib.config import decimal
from imagelib.errors import ChainError, UsageError, error
from imagelib.tiling.colormap import ANCHORS
from imagelib.tiling.scale import Style

MEDIA = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
#: versions are immutable, so a tile never changes: shared caches and CDNs may keep it forever
IMMUTABLE = "public, max-age=31536000, immutable"
#: the response header naming what a chain only approximates in a tile (the notes of
#: :func:`imagelib.tiling.render.tile_notes`, ASCII, joined by "; ")
NOTES_HEADER = "X-Imagelib-Approximate"


def notes_header(notes: list[str]) -> dict[str, str]:
    """``{NOTES_HEADER: "note; note"}``, or no header when nothing is approximated."""
    return {NOTES_HEADER: "; ".join(notes)} if notes else {}


def etag(
    version: str, scheme: str, tile: tuple[int, ...] | str, fmt: str, query: TileQuery | list | None
) -> str:
    """Strong ETag from what determines the bytes: version, scheme, tile, format and the query (canonical
    chain, style, slice; a bare chain list is taken as a query with only that chain)."""
    if not isinstance(query, TileQuery):
        from imagelib.filters import canonical_chain

        query = TileQuery(canonical_chain(query) if query else None)
    text = f"{version}|{scheme}|{tile}|{fmt}|{query.tag()}"
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:40] + '"'


def not_modified(if_none_match: str | None, tag: str) -> bool:
    """``If-None-Match`` lists ``tag`` (weak comparison, as RFC 9110 asks for this header) or is ``*``."""
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or tag in tags


#: the largest slice index any volume can have (the global side limit)
MAX_INDEX = 1 << 20
AXES = ("z", "y", "x")


@dataclass(frozen=True)
class TileQuery:
    """What a tile URL's query adds to the path: the chain, the display style and a volume slice."""

    chain: list[dict[str, Any]] | None  # validated, canonical
    style: Style = field(default_factory=Style)
    axis: str | None = None  # z|y|x for volumes
    index: int | None = None

    def tag(self) -> str:
        """The part of the ETag these add (canonical chain text, style, slice); '' when all are default."""
        from imagelib.filters.schema import canonical_text

        text = canonical_text(self.chain) if self.chain else ""
        if self.style != Style():
            text += "|style=" + json.dumps(self.style.key(), sort_keys=True, separators=(",", ":"))
        if self.axis is not None or self.index is not None:  # a slice of a volume is another image
            text += f"|{self.axis}|{self.index}"
        return text


def parse_chain(text: str | None, max_bytes: int) -> list[dict[str, Any]] | None:
    """``?chain=`` (URL-decoded JSON array) → validated canonical chain; never a file path."""
    if text is None or text == "":
        return None
    if len(text.encode()) > max_bytes:
        raise error("PAYLOAD_TOO_LARGE", f"?chain= is longer than {max_bytes} bytes", field="chain")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ChainError(f"chain is not valid JSON: {exc}", field="chain") from None
    except RecursionError:  # "[[[[…" nested deeper than the parser's stack
        raise ChainError("chain is nested too deeply", field="chain") from None
    if not isinstance(value, list):
        raise ChainError("a chain is a JSON array of ops", field="chain", found=type(value).__name__)
    from imagelib.filters import canonical_chain

    return canonical_chain(value) or None


def _bands(text: str | None) -> tuple[int, ...] | None:
    if text is None or text == "":
        return None
    parts = text.split(",")
    if not all(decimal(p.strip()) and len(p.strip()) <= 6 for p in parts):
        raise UsageError("bands are 1-based band numbers: 1 or 3 of them", field="bands", found=text[:32])
    bands = tuple(int(p) for p in parts)
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise error(
            "BAND_INDEX_INVALID", "give 1 or 3 band numbers, each ≥ 1", field="bands", found=list(bands)
        )
    return bands


def _number(text: str) -> float:
    value = float(text)  # ValueError for junk, caught by the caller
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _rescale(text: str | None, bands: tuple[int, ...] | None) -> Any:
    if text is None or text == "":
        return None
    try:
        pairs = [tuple(_number(v) for v in p.split(",")) for p in text.split(";")]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or p[0] >= p[1] for p in pairs) or len(pairs) not in (1, 3):
        raise UsageError(
            "rescale is lo,hi (lo < hi) or one lo,hi per band separated by ';'",
            field="rescale",
            found=text[:64],
        )
    if len(pairs) > 1 and bands is not None and len(pairs) != len(bands):
        raise UsageError(
            "rescale needs one lo,hi pair, or one per band",
            field="rescale",
            expected=len(bands),
            found=len(pairs),
        )
    return pairs[0] if len(pairs) == 1 else tuple(pairs)


def _colormap(text: str | None, bands: tuple[int, ...] | None) -> str | None:
    if text is None or text == "":
        return None
    if text not in ANCHORS:
        raise UsageError("unknown colormap", field="colormap", expected=sorted(ANCHORS), found=text[:32])
    if bands is not None and len(bands) != 1:
        raise UsageError("a colormap applies to one band", field="colormap", found=list(bands))
    return text


def _slice(axis: str | None, index: str | None) -> tuple[str | None, int | None]:
    if axis is not None and axis not in AXES:
        raise UsageError("axis must be z, y or x", field="axis", expected=list(AXES), found=axis[:8])
    if index is not None and (not decimal(index) or len(index) > 8 or int(index) > MAX_INDEX):
        raise UsageError("index must be a non-negative integer", field="index", found=index[:16])
    return axis, None if index is None else int(index)


def parse_tile_query(arg: Callable[[str], str | None], max_chain_bytes: int) -> TileQuery:
    """A tile URL's query (``arg(name)`` gives one decoded value or None) → :class:`TileQuery`; every
    malformed value is a coded 400 naming its field."""
    chain = parse_chain(arg("chain"), max_chain_bytes)
    bands = _bands(arg("bands"))
    style = Style(bands, _rescale(arg("rescale"), bands), _colormap(arg("colormap"), bands))
    return TileQuery(chain, style, *_slice(arg("axis"), arg("index")))


def _num(value: float) -> str:
    """Shortest text of a number (``0`` rather than ``0.0``), so equal styles give equal URLs."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def query_pairs(
    chain: Any = None, style: Style | None = None, axis: str | None = None, index: int | None = None
) -> list[tuple[str, str]]:
    """The query parameters of a tile URL in canonical order (chain, bands, rescale, colormap, axis,
    index); defaults left out."""
    from imagelib.filters.schema import canonical_text, load_chain

    pairs: list[tuple[str, str]] = []
    ops = load_chain(chain) if chain else []
    if ops:
        pairs.append(("chain", canonical_text(ops)))
    style = style or Style()
    if style.bands:
        pairs.append(("bands", ",".join(str(int(b)) for b in style.bands)))
    if style.rescale:
        rows = [style.rescale] if np.ndim(style.rescale) == 1 else list(style.rescale)
        pairs.append(("rescale", ";".join(",".join(_num(v) for v in row) for row in rows)))
    if style.colormap is not None:
        if not isinstance(style.colormap, str):
            raise UsageError(
                "only named colormaps travel in a tile URL", field="colormap", expected=sorted(ANCHORS)
            )
        pairs.append(("colormap", style.colormap))
    if axis is not None:
        pairs.append(("axis", axis))
    if index is not None:
        pairs.append(("index", str(int(index))))
    return pairs


def query_string(
    chain: Any = None, style: Style | None = None, axis: str | None = None, index: int | None = None
) -> str:
    """``?chain=…&bands=…&rescale=…&colormap=…&axis=…&index=…`` (the inverse of :func:`parse_tile_query`,
    canonical order, '' when empty); braces are encoded, so Leaflet never sees a ``{…}`` placeholder."""
    pairs = query_pairs(chain, style, axis, index)
    return "?" + urlencode(pairs, quote_via=quote, safe="") if pairs else ""


def render_answer(
    version: str, scheme: str, tile: tuple[int, int, int], fmt: str, query: TileQuery, lib: Any = None
) -> tuple[bytes, dict[str, str]]:
    """One tile's bytes and its extra headers (what the chain only approximates at this zoom), as every
    tile server answers them; blocking, so servers run it in a worker thread (one hop for both)."""
    from imagelib.tiling.render import render_tile, tile_notes

    options = {"axis": query.axis, "index": query.index, "style": query.style, "lib": lib}
    data = render_tile(version, *tile, fmt=fmt, chain=query.chain, scheme=scheme, **options)
    if not query.chain:
        return data, {}
    # the renderer is memoised by render_tile: the notes reuse it, no second open
    return data, notes_header(tile_notes(version, tile[0], query.chain, scheme, **options))
