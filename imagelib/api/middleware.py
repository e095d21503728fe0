"""Pure-ASGI middleware: request id (``X-Request-ID`` in and out), one JSON access-log line per request,
latency histograms per route template, and a last-resort coded 500 for anything unhandled."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagelib.api.errors import error_response
from imagelib.observability import Metrics, new_request_id, request_id

access = logging.getLogger("imagelib.access")
log = logging.getLogger("imagelib.api")
HEADER = "x-request-id"


class RequestContext:
    """Sets the request id for the request's duration, measures it and logs it (never its headers)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = True) -> None:
        self.app, self.metrics, self.access_log = app, metrics, access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = new_request_id(headers.get(HEADER.encode(), b"").decode("latin-1"))
        token = request_id.set(rid)
        started, status = time.perf_counter(), 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started, status = True, message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER.encode(), rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if response_started:
                raise
            await error_response(exc)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope)
            self.metrics.observe(route, scope["method"], status, elapsed)
            if self.access_log:
                access.info(
                    "request",
                    extra=_fields(scope, rid, route, status, elapsed),
                )
            request_id.reset(token)


def _route(scope: Scope) -> str:
    """The matched route's template (bounded label values), ``unmatched`` otherwise."""
    route: Any = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _fields(scope: Scope, rid: str, route: str, status: int, elapsed: float) -> dict[str, Any]:
    state = scope.get("state") or {}
    return {
        "request_id": rid,
        "user": state.get("user"),
        "method": scope["method"],
        "route": route,
        "status": status,
        "latency_ms": round(elapsed * 1000, 2),
        "pid": os.getpid(),  # which server process answered (``imagelib serve --workers N``)
    }
