"""Tiles over HTTP: DZI (descriptor + ``_files`` tiles, OpenSeadragon's paths) and XYZ WebMercatorQuad,
each with ``?chain=``, strong ETags, ``If-None-Match`` → 304 and immutable caching (versions never change).

Routes come from :class:`TileFactory` (titiler's factory shape): one place that says how a tile request
is checked, authorised, revalidated, rendered and answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from imagelib.api.deps import Audited, Service, audited, service
from imagelib.api.errors import responses
from imagelib.api.params import VersionId
from imagelib.tiling import http
from imagelib.tiling.colormap import ANCHORS
from imagelib.tiling.http import (
    AXES,
    IMMUTABLE,
    MAX_INDEX,
    MEDIA,
    NOTES_HEADER,
    TileQuery,
    etag,
    parse_tile_query,
    render_answer,
)
from imagelib.versioning import check_version_id

Format = Literal["jpg", "jpeg", "png", "webp"]
CHAIN_DOC = (
    "URL-encoded JSON filter chain applied on the fly (native pixel grid, before scaling); spatial "
    "parameters are in full-resolution pixels and rescaled for each zoom level"
)
INDEX_SCHEMA = {"pattern": "^[0-9]+$", "maxLength": len(str(MAX_INDEX))}
AXIS_DOC = "volumes (z,y,x): show the slice across this axis (with index; default the middle one)"
INDEX_DOC = "volumes: the slice index along axis (default z when only index is given)"
BANDS_DOC = "1-based bands to show: one (e.g. 1) or three for RGB (e.g. 4,3,2); default 1,2,3 or 1"
RESCALE_DOC = "display stretch lo,hi (lo < hi), or one lo,hi per band separated by ';'"
COLORMAP_DOC = f"colormap of a single band: one of {', '.join(sorted(ANCHORS))}"
NOTES_DOC = (
    "what the chain only approximates at this zoom (its spatial parameters are in full-resolution "
    "pixels, rescaled per level), '; '-separated; absent when the tile is exact"
)


async def tile_query(  # async: no threadpool hop per tile (chain texts are validated once, then memoised)
    request: Request,
    chain: str | None = Query(None, description=CHAIN_DOC),
    bands: str | None = Query(None, description=BANDS_DOC),
    rescale: str | None = Query(None, description=RESCALE_DOC),
    colormap: str | None = Query(None, description=COLORMAP_DOC),
    axis: str | None = Query(None, description=AXIS_DOC, json_schema_extra={"enum": list(AXES)}),
    index: str | None = Query(None, description=INDEX_DOC, json_schema_extra=INDEX_SCHEMA),
    svc: Service = Depends(service),
) -> TileQuery:
    """The query of a tile URL, parsed by the grammar's one parser (the declared parameters document it
    in the OpenAPI; malformed values are coded 400s naming the field). ``axis`` and ``index`` are declared
    as text so that FastAPI does not answer a 422 of its own first: a bad slice is a 400 ``USAGE`` here
    as in the Jupyter extension."""
    return parse_tile_query(request.query_params.get, svc.settings.max_chain_bytes)


Query_ = Annotated[TileQuery, Depends(tile_query)]


def not_modified(request: Request, tag: str) -> bool:
    """``If-None-Match`` of the request lists ``tag`` or is ``*`` (the rule shared with the extension)."""
    return http.not_modified(request.headers.get("if-none-match"), tag)


@dataclass
class TileFactory:
    """Builds the tile routes of one router."""

    prefix: str = "/v1"

    async def answer(
        self,
        request: Request,
        svc: Service,
        audit: Audited,
        version: str,
        scheme: str,
        tile: tuple[int, int, int] | None,
        fmt: str,
        query: TileQuery,
    ) -> Response:
        """Check, authorise, revalidate, render, answer (catalog misses and rendering in threads)."""
        check_version_id(version)
        chain, axis, index = query.chain, query.axis, query.index
        namespaces = svc.cached_namespaces(version) or await run_in_threadpool(
            svc.version_namespaces, version
        )
        namespace = audit.allow_any(namespaces, "tile", "tile.read", version)
        fmt = "jpg" if fmt == "jpeg" else fmt
        tag = etag(version, scheme, tile or "descriptor", fmt, query)
        headers = {"ETag": tag, "Cache-Control": IMMUTABLE}
        target = f"{version}/{scheme}/{'/'.join(map(str, tile)) if tile else 'descriptor'}.{fmt}"
        if not_modified(request, tag):
            audit.record("tile.read", namespace, target, outcome="not_modified")
            return Response(status_code=304, headers=headers)
        if tile is None:
            from imagelib.tiling import renderer_for

            renderer = await run_in_threadpool(
                lambda: renderer_for(version, chain, axis=axis, index=index, lib=svc.lib)
            )
            audit.record("tile.read", namespace, target)
            return Response(renderer.dzi_grid().xml(fmt), media_type="application/xml", headers=headers)
        svc.tile_requests += 1
        data, extra = await run_in_threadpool(render_answer, version, scheme, tile, fmt, query, svc.lib)
        headers.update(extra)
        audit.record("tile.read", namespace, target)
        return Response(data, media_type=MEDIA[fmt], headers=headers)

    def register(self) -> APIRouter:
        """Add the DZI descriptor, DZI tile and XYZ tile routes."""
        r, answer = APIRouter(prefix=self.prefix, tags=["tiles"]), self.answer
        errs = responses(400, 401, 403, 404, 413, 422, 503)
        notes = {"description": NOTES_DOC, "schema": {"type": "string"}}
        ok = {
            "description": "tile image",
            "content": {m: {} for m in sorted(set(MEDIA.values()))},
            "headers": {NOTES_HEADER: notes},
        }

        @r.get(
            "/tiles/{version}.dzi",
            response_class=Response,
            responses={
                200: {"content": {"application/xml": {}}},
                304: {"description": "not modified"},
                **errs,
            },
        )
        async def dzi_descriptor(
            request: Request,
            version: VersionId,
            query: Query_,
            format: Format = Query("jpg", description="tile format named in the descriptor"),
            svc: Service = Depends(service),
            audit: Audited = Depends(audited),
        ) -> Response:
            """The ``.dzi`` descriptor (OpenSeadragon derives the tile URLs from it)."""
            return await answer(request, svc, audit, version, "dzi", None, format, query)

        @r.get(
            "/tiles/{version}_files/{level}/{col}_{row}.{fmt}",
            response_class=Response,
            responses={200: ok, 304: {"description": "not modified"}, **errs},
        )
        async def dzi_tile(
            request: Request,
            version: VersionId,
            level: int,
            col: int,
            row: int,
            fmt: Format,
            query: Query_,
            svc: Service = Depends(service),
            audit: Audited = Depends(audited),
        ) -> Response:
            """One DZI tile (254 px, overlap 1)."""
            return await answer(request, svc, audit, version, "dzi", (level, col, row), fmt, query)

        @r.get(
            "/tiles/{version}/{z}/{x}/{y}.{fmt}",
            response_class=Response,
            responses={200: ok, 304: {"description": "not modified"}, **errs},
        )
        async def xyz_tile(
            request: Request,
            version: VersionId,
            z: int,
            x: int,
            y: int,
            fmt: Format,
            query: Query_,
            svc: Service = Depends(service),
            audit: Audited = Depends(audited),
        ) -> Response:
            """One WebMercatorQuad tile (256 px) of a georeferenced version."""
            return await answer(request, svc, audit, version, "xyz", (z, x, y), fmt, query)

        return r


def router(prefix: str = "/v1") -> APIRouter:
    """The tile routes."""
    return TileFactory(prefix).register()
