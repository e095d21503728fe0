"""The app factory: one library context, one queue, one verifier, one audit writer per app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from imagelib._version import __version__
from imagelib.api import catalog, errors, health, stac, tiles, tus, uploads
from imagelib.api.deps import Service
from imagelib.api.middleware import RequestContext
from imagelib.api.settings import ApiSettings
from imagelib.audit import AuditWriter
from imagelib.context import Library, current
from imagelib.observability import Metrics

if TYPE_CHECKING:
    from imagelib.auth import TokenVerifier
    from imagelib.queue import JobQueue

#: headers browsers may read from cross-origin answers (tus clients need the Upload-* ones)
EXPOSED = [
    "ETag",
    "Location",
    "X-Request-ID",
    "Upload-Offset",
    "Upload-Length",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Imagelib-Job",
    "X-Imagelib-Approximate",  # what a chain only approximates in a tile (viewers show it)
]


def create_app(
    lib: Library | None = None,
    *,
    settings: ApiSettings | None = None,
    verifier: TokenVerifier | None = None,
    queue: JobQueue | None = None,
) -> FastAPI:
    """The FastAPI app serving ``/v1`` over ``lib`` (default: the environment's context).

    ``verifier`` defaults to one for ``IMAGELIB_OIDC_ISSUER``; with no issuer every caller is the local
    user (``imagelib serve`` then binds loopback only). ``queue`` defaults to ``IMAGELIB_QUEUE``.
    """
    lib = current(lib)
    settings = settings or ApiSettings.from_env()
    if verifier is None and lib.settings.oidc_issuer:
        from imagelib.auth import TokenVerifier

        verifier = TokenVerifier(lib.settings.oidc_issuer, lib.settings.oidc_audience, settings.auth_leeway)
    metrics = Metrics()
    svc = Service(lib, settings, verifier, AuditWriter(lib.catalog), metrics, queue)
    health.add_metric_sources(svc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        svc.close()

    app = FastAPI(
        title="imagelib",
        version=__version__,
        description="Large scientific rasters: uploads, versions, lineage, STAC search, tiles.",
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = svc
    errors.install(app)
    app.include_router(health.router(prefix=""), include_in_schema=False)  # probes at the root as well
    for module in (health, catalog, uploads, tus, tiles, stac):
        app.include_router(module.router())
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=EXPOSED,
        max_age=600,
    )
    app.add_middleware(RequestContext, metrics=metrics, access_log=settings.access_log)
    return app
