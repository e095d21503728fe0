"""Run one delivery of a job against its catalog record, idempotently.

The record decides: a finished job (``succeeded``/``failed``) is never run or transitioned again; a
``queued`` or half-run ``running`` one is (re-)run, and only the first finisher moves it on. What
the transport should do with the message afterwards is the returned :class:`Outcome`.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagelib.errors import ImagelibError, NotFound, ValidationFailed
from imagelib.jobs import get_job, transition, update_job
from imagelib.queue.kinds import handlers
from imagelib.queue.logs import log

if TYPE_CHECKING:
    from imagelib.context import Library

FINISHED = ("succeeded", "failed")
PROGRESS_EVERY_S = 0.5  # progress writes are throttled: they are catalog UPDATEs


class Outcome(enum.Enum):
    """What to do with the message: ``DONE`` ack, ``RETRY`` redeliver later, ``DEAD`` dead-letter."""

    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"


def run_job(lib: Library, message: dict[str, Any], *, final: bool, request_id: str | None = None) -> Outcome:
    """Run the job of a decoded message once; ``final`` says no retry is left after this attempt."""
    job_id, kind, payload = message["job"], message["kind"], message.get("payload") or {}
    ids = {"job": job_id, "kind": kind, "request_id": request_id}
    try:
        state = get_job(lib.catalog, job_id)["state"]
    except NotFound:
        log("job.unknown", logging.ERROR, **ids)
        return Outcome.DEAD
    if state in FINISHED:
        log("job.skipped", state=state, **ids)  # a redelivery of a finished job: ack, nothing else
        cleanup(payload)
        return Outcome.DONE
    handler = handlers.get(kind)
    if handler is None:
        fail(lib, job_id, ImagelibError(f"unknown job kind {kind!r}", code="USAGE", field="kind"), ids)
        cleanup(payload)
        return Outcome.DONE
    if not transition(lib.catalog, job_id, "running", allowed_from=("queued", "running")):
        return Outcome.DONE  # finished meanwhile by another delivery
    log("job.running", rerun=state == "running" or None, **ids)
    try:
        result = handler(lib, payload, Throttled(lib, job_id))
    except ImagelibError as exc:
        if exc.spec.http == 503 and not final:  # a component is down: worth another attempt
            log("job.retry", logging.WARNING, code=exc.code, message=exc.message, **ids)
            return Outcome.RETRY
        fail(lib, job_id, exc, ids)
        cleanup(payload)
        return Outcome.DONE
    except Exception as exc:
        coded = ImagelibError(f"{type(exc).__name__}: {exc}", code="INTERNAL")
        if not final:
            log("job.retry", logging.WARNING, code="INTERNAL", message=coded.message, **ids)
            return Outcome.RETRY
        fail(lib, job_id, coded, ids)
        cleanup(payload)
        return Outcome.DEAD
    version = result.get("version")
    done = {"progress": 1.0, "version_id": version}
    if transition(lib.catalog, job_id, "succeeded", allowed_from=("running",), **done):
        log("job.succeeded", version=version, **ids)
    cleanup(payload)
    return Outcome.DONE


def fail(lib: Library, job_id: str, exc: ImagelibError, ids: dict[str, Any]) -> None:
    """Record a coded failure (with the validation report when there is one), once."""
    report = exc.report if isinstance(exc, ValidationFailed) else None
    moved = transition(
        lib.catalog, job_id, "failed", allowed_from=("queued", "running"), error=exc.to_dict(), report=report
    )
    if moved:
        log("job.failed", logging.WARNING, code=exc.code, message=exc.message, **ids)


def fail_unrun(lib: Library, message: dict[str, Any], reason: str, request_id: str | None = None) -> None:
    """Give up on a job whose deliveries kept dying before they finished (worker crashes)."""
    ids = {"job": message["job"], "kind": message["kind"], "request_id": request_id}
    with contextlib.suppress(NotFound):
        fail(lib, message["job"], ImagelibError(reason, code="INTERNAL"), ids)


def cleanup(payload: dict[str, Any]) -> None:
    """Remove the staged upload named by ``payload["cleanup"]`` once the job has reached a final state."""
    path = payload.get("cleanup")
    if path:
        Path(path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the upload's own folder, when nothing else is left in it
            Path(path).parent.rmdir()


class Throttled:
    """The ``progress(fraction)`` callback given to handlers: writes at most every half second."""

    def __init__(self, lib: Library, job_id: str):
        self.lib, self.job_id, self.last = lib, job_id, 0.0

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            update_job(self.lib.catalog, self.job_id, progress=max(0.0, min(1.0, float(fraction))))
