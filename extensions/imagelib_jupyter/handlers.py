"""Tornado handlers of the tile grammar under ``{base_url}imagelib/tiles/…`` (same paths, ETags and
caching as the HTTP API, so one client-side viewer works against both).

They subclass jupyter_server's :class:`APIHandler` (a ``JupyterHandler``): the server's own identity
provider authenticates every request (token, cookie, or JupyterHub's OAuth behind the hub proxy), and an
unauthenticated API request is a 403 rather than a redirect to the login page. Each ``get`` carries
``@tornado.web.authenticated``: jupyter_server 2 still serves undecorated extension handlers to anyone by
default (``ServerApp.allow_unauthenticated_access``), so the decorator is what guards the tiles.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from imagelib.context import Library
from imagelib.errors import UsageError, error, error_body, from_exception
from imagelib.tiling.http import MEDIA, etag, not_modified, parse_tile_query, render_answer
from imagelib.versioning import check_version_id
from imagelib_jupyter.hubauth import authorize_tile

log = logging.getLogger("imagelib.jupyter")

#: URL fragments (positional groups only: tornado drops unnamed groups once any group is named); it
#: matches them on the still-encoded path and URL-decodes the groups
VERSION = r"([^/]+)"
FMT = r"(jpg|jpeg|png|webp)"


class TileBase(APIHandler):
    """Check, revalidate, render in a worker thread, answer; every failure is a coded JSON error."""

    def initialize(self, lib: Library | None, max_chain_bytes: int, cache_control: str) -> None:
        """``lib`` None: the environment's library context at each request."""
        self.lib, self.max_chain_bytes, self.cache_control = lib, max_chain_bytes, cache_control

    async def answer(self, version: str, scheme: str, tile: tuple[int, int, int] | None, fmt: str) -> None:
        """The tile (or the DZI descriptor when ``tile`` is None), a 304, or the coded error."""
        try:
            await self._answer(version, scheme, tile, fmt)
        except Exception as exc:
            coded = from_exception(exc)
            if coded.code == "INTERNAL":
                log.exception("tile request %s failed", self.request.path)
            self.clear_header("ETag")
            self.clear_header("Cache-Control")
            self.set_status(coded.spec.http)
            self.finish(json.dumps(error_body(coded)))

    async def _answer(self, version: str, scheme: str, tile: tuple[int, int, int] | None, fmt: str) -> None:
        check_version_id(version)
        # under a hub the user's namespace roles decide, as in the API (see hubauth.py)
        await asyncio.to_thread(authorize_tile, version, self.lib)
        query = parse_tile_query(lambda name: self.get_query_argument(name, None), self.max_chain_bytes)
        chain, axis, index = query.chain, query.axis, query.index
        fmt = "jpg" if fmt == "jpeg" else fmt
        tag = etag(version, scheme, tile or "descriptor", fmt, query)
        self.set_header("ETag", tag)
        self.set_header("Cache-Control", self.cache_control)
        if not_modified(self.request.headers.get("If-None-Match"), tag):
            self.set_status(304)
            self.finish()
            return
        if tile is None:
            xml = await asyncio.to_thread(self._descriptor, version, chain, fmt, axis, index)
            self.finish(xml, set_content_type="application/xml")
            return
        # rendering reads chunks and encodes: a worker thread keeps the server's event loop free
        data, extra = await asyncio.to_thread(render_answer, version, scheme, tile, fmt, query, self.lib)
        for name, value in extra.items():
            self.set_header(name, value)
        self.finish(data, set_content_type=MEDIA[fmt])

    def _descriptor(
        self, version: str, chain: list[dict[str, Any]] | None, fmt: str, axis: str | None, index: int | None
    ) -> str:
        from imagelib.tiling import renderer_for

        return renderer_for(version, chain, axis=axis, index=index, lib=self.lib).dzi_grid().xml(fmt)


class DescriptorHandler(TileBase):
    """``GET {base_url}imagelib/tiles/{version}.dzi[?format=jpg|png|webp][&chain=…]``."""

    @tornado.web.authenticated
    async def get(self, version: str) -> None:
        """The ``.dzi`` descriptor naming ``?format=`` (jpg by default) as the tile format."""
        fmt = self.get_query_argument("format", "jpg")
        if fmt not in MEDIA:
            bad = UsageError("unknown tile format", field="format", expected=sorted(MEDIA), found=fmt)
            self.set_status(bad.spec.http)
            self.finish(json.dumps(error_body(bad)))
            return
        await self.answer(version, "dzi", None, fmt)


class DziTileHandler(TileBase):
    """``GET {base_url}imagelib/tiles/{version}_files/{level}/{col}_{row}.{fmt}``."""

    @tornado.web.authenticated
    async def get(self, version: str, level: str, col: str, row: str, fmt: str) -> None:
        """One DZI tile (254 px, overlap 1), as ``render_tile(..., scheme="dzi")`` makes it."""
        await self.answer(version, "dzi", (int(level), int(col), int(row)), fmt)


class XyzTileHandler(TileBase):
    """``GET {base_url}imagelib/tiles/{version}/{z}/{x}/{y}.{fmt}``."""

    @tornado.web.authenticated
    async def get(self, version: str, z: str, x: str, y: str, fmt: str) -> None:
        """One WebMercatorQuad tile (256 px) of a georeferenced version."""
        await self.answer(version, "xyz", (int(z), int(x), int(y)), fmt)


class UnknownTileHandler(APIHandler):
    """Anything else under ``imagelib/tiles/`` (``../`` tricks included): a coded 404, nothing read."""

    @tornado.web.authenticated
    def get(self, rest: str) -> None:
        """ROUTE_NOT_FOUND."""
        missing = error("ROUTE_NOT_FOUND", "no tile endpoint at this path", found=self.request.path)
        self.set_status(missing.spec.http)
        self.finish(json.dumps(error_body(missing)))


def routes(
    base_url: str, lib: Library | None, max_chain_bytes: int, cache_control: str
) -> list[tuple[str, type, dict]]:
    """The handler table of the extension under ``base_url``."""
    root = url_path_join(base_url, "imagelib/tiles")
    args = {"lib": lib, "max_chain_bytes": max_chain_bytes, "cache_control": cache_control}
    num = r"(\d{1,9})"  # bounded: no huge ints
    return [
        (rf"{root}/{VERSION}\.dzi", DescriptorHandler, args),
        (rf"{root}/{VERSION}_files/{num}/{num}_{num}\.{FMT}", DziTileHandler, args),
        (rf"{root}/{VERSION}/{num}/{num}/{num}\.{FMT}", XyzTileHandler, args),
        (rf"{root}/(.*)", UnknownTileHandler, {}),
    ]
