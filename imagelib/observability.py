"""Observability: request ids, JSON log lines, Prometheus metrics and GPU facts.

The request id lives in a context variable so anything called while serving a request (the queue's
``submit``, job records, worker logs that receive it in message headers) can read it with
:func:`current_request_id`. Log lines are one JSON object each; tokens and headers are never logged.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("imagelib_request_id", default=None)
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def current_request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    return request_id.get()


def new_request_id(proposed: str | None = None) -> str:
    """The caller's ``X-Request-ID`` when it is short and safe, else a fresh one."""
    if proposed and REQUEST_ID_PATTERN.match(proposed):
        return proposed
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != "request_id"})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: int | str = logging.INFO, stream: Any = None) -> None:
    """Send the ``imagelib`` loggers to ``stream`` (stderr) as JSON lines; calling again is harmless."""
    logger = logging.getLogger("imagelib")
    logger.setLevel(level)
    for handler in logger.handlers:
        if getattr(handler, "_imagelib_json", False):
            return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._imagelib_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


_gpu_cache: dict[str, Any] = {}


def gpu_info(max_age: float = 10.0) -> dict[str, Any]:
    """:func:`imagelib.backend.gpu_info` (the device the filters run on), cached briefly: probes and
    scrapers ask often, the answer changes slowly."""
    cached = _gpu_cache.get("value")
    if cached is not None and time.monotonic() - _gpu_cache["at"] < max_age:
        return cached
    from imagelib.backend import gpu_info as device_info

    info = device_info()
    _gpu_cache.update(value=info, at=time.monotonic())
    return info


class Metrics:
    """The Prometheus registry of one app: request latency per route plus scrape-time gauges."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "imagelib_http_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            ["route", "method", "status"],
            buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self._sources: list[Callable[[], Iterable[Any]]] = []
        self.registry.register(_Scrape(self._sources))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        self.latency.labels(route, method, str(status)).observe(seconds)

    def add_source(self, source: Callable[[], Iterable[Any]]) -> None:
        """A function yielding ready metric families at scrape time (queue depth, jobs, caches)."""
        self._sources.append(source)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Scrape:
    """A custom collector that asks each source for its families when Prometheus scrapes."""

    def __init__(self, sources: list[Callable[[], Iterable[Any]]]) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Any]:
        for source in self.sources:
            try:
                yield from source()
            except Exception:  # one broken source (a down broker) must not hide the others
                logging.getLogger("imagelib.metrics").warning("metrics source failed", exc_info=True)

    def describe(self) -> list[Any]:
        return []  # families are only known at scrape time


def gpu_families() -> Iterable[Any]:
    """GPU memory gauges (``kind`` total/used/pool, bytes) when a GPU is present; none otherwise."""
    from prometheus_client.core import GaugeMetricFamily

    info = gpu_info()
    if info["available"]:
        family = GaugeMetricFamily(
            "imagelib_gpu_memory_bytes", "GPU memory of the filters' device", labels=["gpu", "kind"]
        )
        for kind, value in info["memory"].items():
            family.add_metric([info["name"], kind], value)
        yield family
