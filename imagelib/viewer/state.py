"""The view a share link carries (version, chain, style, slice, viewport) and its URL query, both ways.

Framework-free: the Panel app syncs the same names with ``pn.state.location``, and tests round-trip it
without a browser. Values travel as the tile URL's own canonical text (chain, bands, rescale, colormap,
axis, index) plus ``x``/``y``/``zoom`` (the OpenSeadragon viewport: centre in image-width units, zoom 1 =
whole image width in view)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from imagelib.errors import UsageError
from imagelib.tiling.http import parse_tile_query, query_pairs
from imagelib.tiling.scale import Style
from imagelib.versioning import check_version_id

#: a share link's chain is a URL: the same bound as the tile servers' ``?chain=``
MAX_CHAIN_BYTES = 8192
#: query keys in the order a share link writes them
KEYS = ("version", "chain", "bands", "rescale", "colormap", "axis", "index", "x", "y", "zoom")
#: viewport numbers are rounded so a restored view gives the same URL again
DIGITS = 6


@dataclass(frozen=True)
class ViewState:
    """Everything that decides what a viewer shows."""

    version: str | None = None
    chain: list[dict[str, Any]] | None = None  # validated, canonical
    style: Style = field(default_factory=Style)
    axis: str | None = None
    index: int | None = None
    x: float | None = None
    y: float | None = None
    zoom: float | None = None

    def tile_query(self) -> str:
        """The ``?chain=…&bands=…`` part of this view's tile URLs ('' when all default)."""
        pairs = query_pairs(self.chain, self.style, self.axis, self.index)
        return "?" + urlencode(pairs, quote_via=quote, safe="") if pairs else ""

    def to_params(self) -> dict[str, str]:
        """The share link's query parameters as text (defaults left out)."""
        out: dict[str, str] = {}
        if self.version:
            out["version"] = self.version
        out.update(query_pairs(self.chain, self.style, self.axis, self.index))
        for key in ("x", "y", "zoom"):
            value = getattr(self, key)
            if value is not None:
                out[key] = _text(value)
        return out

    def to_query(self) -> str:
        """``?version=…&chain=…&x=…&y=…&zoom=…`` ('' for the empty view)."""
        params = self.to_params()
        pairs = [(k, params[k]) for k in KEYS if k in params]
        return "?" + urlencode(pairs, quote_via=quote, safe=",") if pairs else ""

    def with_viewport(self, x: float, y: float, zoom: float) -> ViewState:
        """This view panned/zoomed to ``(x, y, zoom)`` (rounded as a share link keeps them)."""
        return replace(self, x=_round(x), y=_round(y), zoom=_round(zoom))


def _round(value: float) -> float:
    return round(float(value), DIGITS)


def _text(value: float) -> str:
    value = _round(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _viewport(params: dict[str, str], key: str) -> float | None:
    text = params.get(key)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (key == "zoom" and value <= 0):
        raise UsageError(f"{key} must be a finite number" + (" > 0" if key == "zoom" else ""), field=key)
    return _round(value)


def from_params(params: dict[str, str]) -> ViewState:
    """Query parameters (decoded) → a validated :class:`ViewState`; a malformed value is a coded error."""
    version = params.get("version") or None
    if version is not None:
        check_version_id(version)
    query = parse_tile_query(lambda name: params.get(name), MAX_CHAIN_BYTES)
    return ViewState(
        version,
        query.chain,
        query.style,
        query.axis,
        query.index,
        _viewport(params, "x"),
        _viewport(params, "y"),
        _viewport(params, "zoom"),
    )


def from_query(query: str) -> ViewState:
    """``?version=…&…`` (or a whole URL) → :class:`ViewState`."""
    text = query.split("?", 1)[1] if "?" in query else query
    return from_params(dict(parse_qsl(text.split("#", 1)[0], keep_blank_values=False)))
