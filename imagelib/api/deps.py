"""What routes receive through ``Depends``: the app's one :class:`Service` (library context, queue, auth,
audit, metrics), the calling :class:`~imagelib.auth.Principal`, and RBAC checks. No per-request globals."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from imagelib.api.settings import ApiSettings
from imagelib.audit import AuditWriter
from imagelib.auth import LOCAL_USER, Principal, TokenVerifier, bearer_token, require
from imagelib.context import Library
from imagelib.errors import AuthError
from imagelib.observability import Metrics, current_request_id
from imagelib.versioning import check_version_id

if TYPE_CHECKING:
    from imagelib.queue import JobQueue


@dataclass
class Service:
    """Everything one app holds, built once by :func:`imagelib.api.create_app`."""

    lib: Library
    settings: ApiSettings
    verifier: TokenVerifier | None
    audit: AuditWriter
    metrics: Metrics
    _queue: JobQueue | None = field(default=None, repr=False)
    #: tiles asked of the renderer since start (the cache hit ratio's denominator)
    tile_requests: int = 0
    _namespaces: dict[str, tuple[float, list[str]]] = field(default_factory=dict, repr=False)

    @property
    def queue(self) -> JobQueue:
        """The job queue (``IMAGELIB_QUEUE``), opened on first use."""
        if self._queue is None:
            from imagelib.queue import open_queue

            self._queue = open_queue(self.lib.settings.queue, name=self.settings.queue_name)
        return self._queue

    def submit(self, kind: str, payload: dict[str, Any]) -> str:
        """Queue a job carrying the current request id; QUEUE_UNAVAILABLE (503) when the broker is down."""
        return self.queue.submit(kind, payload, lib=self.lib, request_id=current_request_id())

    def cached_namespaces(self, version: str, max_age: float = 30.0) -> list[str] | None:
        """The namespaces :meth:`version_namespaces` found recently, without touching the catalog."""
        hit = self._namespaces.get(version)
        return hit[1] if hit is not None and time.monotonic() - hit[0] < max_age else None

    def version_namespaces(self, version: str) -> list[str]:
        """Namespaces a version belongs to (VERSION_NOT_FOUND if none), cached briefly for tile traffic."""
        hit = self.cached_namespaces(version)
        if hit is not None:
            return hit
        row = self.lib.catalog.get_version(check_version_id(version))
        namespaces = sorted({member.split("/", 1)[0] for member in row["datasets"]})
        if len(self._namespaces) > 10000:  # bounded: versions are many, the cache only smooths bursts
            self._namespaces.clear()
        self._namespaces[version] = (time.monotonic(), namespaces)
        return namespaces

    def close(self) -> None:
        """Flush the audit log and release the queue."""
        self.audit.close()
        if self._queue is not None:
            self._queue.close()


# Dependencies are ``async def`` so FastAPI does not hop to a worker thread for each of them; only token
# verification (it may fetch the issuer's JWKS) runs in the threadpool.
async def service(request: Request) -> Service:
    """The app's service container."""
    return request.app.state.service


async def library(svc: Service = Depends(service)) -> Library:
    """The app's library context."""
    return svc.lib


async def principal(request: Request, svc: Service = Depends(service)) -> Principal:
    """The caller: the verified bearer token's principal, or the local user when no issuer is set."""
    if svc.verifier is None:
        who = LOCAL_USER
    else:
        token = bearer_token(request.headers.get("authorization"))
        who = await run_in_threadpool(svc.verifier.verify, token)
    request.state.user = who.username
    return who


class Audited:
    """Per-request audit: records one event per call with the caller, request id and outcome."""

    def __init__(self, request: Request, svc: Service, who: Principal) -> None:
        self.request, self.svc, self.who = request, svc, who

    def record(
        self, action: str, namespace: str | None, target: str | None, outcome: str = "ok", **details: Any
    ) -> None:
        """Append an audit event (batched; never delays the answer)."""
        self.svc.audit.record(
            actor=self.who.username,
            action=action,
            namespace=namespace,
            target=target,
            outcome=outcome,
            request_id=current_request_id(),
            details=details or None,
        )

    def allow(self, namespace: str, operation: str, action: str, target: str | None = None) -> None:
        """RBAC check that also audits a refusal (403)."""
        try:
            require(self.who, namespace, operation)
        except AuthError:
            self.record(action, namespace, target, outcome="forbidden")
            raise

    def allow_any(self, namespaces: list[str], operation: str, action: str, target: str | None = None) -> str:
        """RBAC over a version's datasets: the first namespace that allows ``operation`` (403 if none)."""
        for ns in namespaces:
            if self.who.can(ns, operation):
                return ns
        namespace = namespaces[0] if namespaces else "*"
        self.allow(namespace, operation, action, target)
        return namespace


async def audited(
    request: Request, svc: Service = Depends(service), who: Principal = Depends(principal)
) -> Audited:
    """The request's audit + RBAC helper."""
    return Audited(request, svc, who)
