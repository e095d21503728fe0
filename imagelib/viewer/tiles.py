"""Tornado handlers of the tile grammar inside the Panel app's server, under ``{prefix}/tiles/…`` (Bokeh
prefixes every extra pattern), plus the vendored viewer JS under ``{prefix}/viewer-static/``.

Same paths, ETags, 304s and immutable caching as the HTTP API and the Jupyter extension, so the page's
OpenSeadragon reads tiles from the server that serves it. No login of its own: ``imagelib viewer`` binds
loopback only, and behind jupyter-server-proxy the Jupyter server's authentication guards the proxy.
``ROUTES`` makes this module a ``panel serve --plugins`` plugin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import tornado.web

from imagelib.errors import UsageError, error, error_body, from_exception
from imagelib.tiling.http import IMMUTABLE, MEDIA, etag, not_modified, parse_tile_query, render_answer
from imagelib.versioning import check_version_id
from imagelib.viewer.state import MAX_CHAIN_BYTES

log = logging.getLogger("imagelib.viewer")

VENDOR = Path(__file__).resolve().parents[1] / "tiling" / "static" / "vendor"
VERSION = r"([^/]+)"
FMT = r"(jpg|jpeg|png|webp)"
NUM = r"(\d{1,9})"  # bounded: no huge ints


def allow_origin() -> str | None:
    """``$IMAGELIB_VIEWER_ALLOW_ORIGIN`` (``*`` or one origin), if set."""
    return os.environ.get("IMAGELIB_VIEWER_ALLOW_ORIGIN") or None


class TileBase(tornado.web.RequestHandler):
    """Check, revalidate, render in a worker thread, answer; every failure is a coded JSON error."""

    def set_default_headers(self) -> None:
        """CORS for embeds on other origins when configured."""
        origin = allow_origin()
        if origin:
            self.set_header("Access-Control-Allow-Origin", origin)

    async def answer(self, version: str, scheme: str, tile: tuple[int, int, int] | None, fmt: str) -> None:
        """The tile (or the DZI descriptor when ``tile`` is None), a 304, or the coded error."""
        try:
            await self._answer(version, scheme, tile, fmt)
        except Exception as exc:
            self.fail(exc)

    def fail(self, exc: Exception) -> None:
        """Answer a coded JSON error with the code's HTTP status (no caching headers)."""
        coded = from_exception(exc)
        if coded.code == "INTERNAL":
            log.exception("tile request %s failed", self.request.path)
        self.clear_header("ETag")
        self.clear_header("Cache-Control")
        self.set_status(coded.spec.http)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(error_body(coded)))

    async def _answer(self, version: str, scheme: str, tile: tuple[int, int, int] | None, fmt: str) -> None:
        check_version_id(version)
        query = parse_tile_query(lambda name: self.get_query_argument(name, None), MAX_CHAIN_BYTES)
        fmt = "jpg" if fmt == "jpeg" else fmt
        tag = etag(version, scheme, tile or "descriptor", fmt, query)
        self.set_header("ETag", tag)
        self.set_header("Cache-Control", IMMUTABLE)
        if not_modified(self.request.headers.get("If-None-Match"), tag):
            self.set_status(304)
            self.finish()
            return
        from imagelib.tiling import renderer_for

        if tile is None:
            renderer = await asyncio.to_thread(
                renderer_for, version, query.chain, axis=query.axis, index=query.index
            )
            self.set_header("Content-Type", "application/xml")
            self.finish(renderer.dzi_grid().xml(fmt))
            return
        # rendering reads chunks and encodes: a worker thread keeps the app's event loop free
        data, extra = await asyncio.to_thread(render_answer, version, scheme, tile, fmt, query)
        for name, value in extra.items():
            self.set_header(name, value)
        self.set_header("Content-Type", MEDIA[fmt])
        self.finish(data)


class DescriptorHandler(TileBase):
    """``GET {prefix}/tiles/{version}.dzi[?format=jpg|png|webp][&chain=…]``."""

    async def get(self, version: str) -> None:
        """The ``.dzi`` descriptor naming ``?format=`` (jpg by default)."""
        fmt = self.get_query_argument("format", "jpg")
        if fmt not in MEDIA:
            self.fail(UsageError("unknown tile format", field="format", expected=sorted(MEDIA), found=fmt))
            return
        await self.answer(version, "dzi", None, fmt)


class DziTileHandler(TileBase):
    """``GET {prefix}/tiles/{version}_files/{level}/{col}_{row}.{fmt}``."""

    async def get(self, version: str, level: str, col: str, row: str, fmt: str) -> None:
        """One DZI tile (254 px, overlap 1)."""
        await self.answer(version, "dzi", (int(level), int(col), int(row)), fmt)


class XyzTileHandler(TileBase):
    """``GET {prefix}/tiles/{version}/{z}/{x}/{y}.{fmt}``."""

    async def get(self, version: str, z: str, x: str, y: str, fmt: str) -> None:
        """One WebMercatorQuad tile (256 px) of a georeferenced version."""
        await self.answer(version, "xyz", (int(z), int(x), int(y)), fmt)


class UnknownTileHandler(TileBase):
    """Anything else under ``tiles/``: a coded 404, nothing read."""

    def get(self, rest: str) -> None:
        """ROUTE_NOT_FOUND."""
        self.fail(error("ROUTE_NOT_FOUND", "no tile endpoint at this path", found=self.request.path))


class VendorHandler(tornado.web.StaticFileHandler):
    """The vendored OpenSeadragon/Leaflet files (never a CDN), cached for a day."""

    def set_extra_headers(self, path: str) -> None:
        """Vendored files change only with the package."""
        self.set_header("Cache-Control", "public, max-age=86400")


def routes() -> list[tuple[str, type, dict[str, Any]]]:
    """The handler table, relative to the server's prefix."""
    return [
        (rf"/tiles/{VERSION}\.dzi", DescriptorHandler, {}),
        (rf"/tiles/{VERSION}_files/{NUM}/{NUM}_{NUM}\.{FMT}", DziTileHandler, {}),
        (rf"/tiles/{VERSION}/{NUM}/{NUM}/{NUM}\.{FMT}", XyzTileHandler, {}),
        (r"/tiles/(.*)", UnknownTileHandler, {}),
        (r"/viewer-static/(.*)", VendorHandler, {"path": str(VENDOR)}),
    ]


#: ``panel serve imagelib/viewer/panel_app.py --plugins imagelib.viewer.tiles``
ROUTES = routes()
