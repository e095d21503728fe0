"""Liveness (``/health``), readiness (``/health/ready``: db, queue, store, gpu), Prometheus ``/metrics``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from imagelib.api.deps import Service, service
from imagelib.catalog.schema import jobs
from imagelib.observability import gpu_families, gpu_info


class Check(BaseModel):
    """One dependency's state."""

    ok: bool
    detail: str | None = None
    latency_ms: float | None = None


class Ready(BaseModel):
    """Readiness: false when the database or the queue is down."""

    ready: bool
    db: Check
    queue: Check
    store: Check
    gpu: dict[str, Any]


def _check(probe: Any) -> Check:
    started = time.perf_counter()
    try:
        ok = bool(probe())
        detail = None if ok else "not reachable"
    except Exception as exc:  # a readiness probe reports failures, it never raises them
        ok, detail = False, f"{type(exc).__name__}: {exc}"[:300]
    return Check(ok=ok, detail=detail, latency_ms=round((time.perf_counter() - started) * 1000, 2))


def router(prefix: str = "/v1") -> APIRouter:
    """Health and metrics routes (public: probes and scrapers carry no tokens)."""
    r = APIRouter(prefix=prefix, tags=["health"])

    @r.get("/health", summary="liveness")
    def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @r.get("/health/ready", summary="readiness", response_model=Ready, responses={503: {"model": Ready}})
    def ready(svc: Service = Depends(service)) -> JSONResponse:
        """Database, queue and store reachable; GPU facts. 503 when the database or queue is down."""
        db = _check(lambda: _db_ping(svc))
        queue = _check(svc.queue.ping)
        # reachable is what counts: on object stores an empty prefix does not "exist" yet
        store = _check(lambda: svc.lib.store.fs.exists(svc.lib.store.root) or True)
        body = Ready(ready=db.ok and queue.ok, db=db, queue=queue, store=store, gpu=gpu_info())
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @r.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics(svc: Service = Depends(service)) -> Response:
        """Prometheus exposition text."""
        data, content_type = svc.metrics.render()
        return Response(data, media_type=content_type)

    return r


def _db_ping(svc: Service) -> bool:
    with svc.lib.catalog.begin(write=False) as conn:
        return conn.execute(sa.text("SELECT 1")).scalar() == 1


def add_metric_sources(svc: Service) -> None:
    """Scrape-time gauges: queue depth, jobs by kind/state and failures by code, tile cache, GPU."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def queue_depth() -> Iterable[Any]:
        depth = svc.queue.depth()
        if depth is not None:
            yield GaugeMetricFamily("imagelib_queue_depth", "jobs waiting to start", value=depth)

    def job_counts() -> Iterable[Any]:
        code = jobs.c.error["code"].as_string()
        with svc.lib.catalog.begin(write=False) as conn:
            by_state = conn.execute(
                sa.select(jobs.c.kind, jobs.c.state, sa.func.count()).group_by(jobs.c.kind, jobs.c.state)
            ).all()
            failed = conn.execute(
                sa.select(jobs.c.kind, code, sa.func.count())
                .where(jobs.c.state == "failed")
                .group_by(jobs.c.kind, code)
            ).all()
        states = GaugeMetricFamily("imagelib_jobs", "jobs by kind and state", labels=["kind", "state"])
        for kind, state, n in by_state:
            states.add_metric([kind, state], n)
        failures = CounterMetricFamily(
            "imagelib_job_failures", "failed jobs by kind and error code", labels=["kind", "code"]
        )
        for kind, err, n in failed:
            failures.add_metric([kind, err or "UNKNOWN"], n)
        yield states
        yield failures

    def tile_cache() -> Iterable[Any]:
        from imagelib.tiling.cache import TileCache

        memory = svc.lib.cache("tiles", TileCache).memory
        hits = CounterMetricFamily("imagelib_tile_cache_hits", "tiles served from the cache")
        hits.add_metric([], memory.hits)
        rendered = CounterMetricFamily("imagelib_tile_requests", "tiles asked of the renderer")
        rendered.add_metric([], svc.tile_requests)
        ratio = GaugeMetricFamily("imagelib_tile_cache_hit_ratio", "hits / tiles asked (since start)")
        ratio.add_metric([], memory.hits / svc.tile_requests if svc.tile_requests else 0.0)
        yield from (hits, rendered, ratio)

    for source in (queue_depth, job_counts, tile_cache, gpu_families):
        svc.metrics.add_source(source)
