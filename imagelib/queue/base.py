"""The queue interface the HTTP app and the CLI use, whatever carries the jobs."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from imagelib.errors import ImagelibError, UsageError
from imagelib.jobs import create_job, transition
from imagelib.queue.kinds import handlers
from imagelib.queue.logs import log

if TYPE_CHECKING:
    from imagelib.context import Library


class JobQueue(abc.ABC):
    """Submit jobs (a catalog record + a message) and report on the transport's health."""

    name: str

    def submit(
        self, kind: str, payload: dict[str, Any], *, lib: Library, request_id: str | None = None
    ) -> str:
        """Record a ``queued`` job in ``lib``'s catalog and hand it to the workers; return the job ID.

        When the transport refuses it (``QUEUE_UNAVAILABLE``), the record is marked ``failed`` with that
        error before the exception propagates, so no job stays ``queued`` forever.
        """
        if kind not in handlers:
            raise UsageError(
                f"unknown job kind {kind!r}", field="kind", expected=sorted(handlers), found=kind
            )
        job_id = create_job(lib.catalog, kind, payload)
        try:
            self.publish(job_id, kind, payload, lib=lib, request_id=request_id)
        except ImagelibError as exc:
            transition(lib.catalog, job_id, "failed", allowed_from=("queued",), error=exc.to_dict())
            raise
        log("job.queued", job=job_id, kind=kind, request_id=request_id, queue=self.name)
        return job_id

    @abc.abstractmethod
    def publish(
        self, job_id: str, kind: str, payload: dict[str, Any], *, lib: Library, request_id: str | None
    ) -> None:
        """Hand a recorded job to the transport; raise ``Unavailable(QUEUE_UNAVAILABLE)`` when it can't."""

    @abc.abstractmethod
    def ping(self) -> bool:
        """True when jobs can be submitted right now (readiness)."""

    @abc.abstractmethod
    def depth(self) -> int | None:
        """Jobs waiting to start (None when unknown, e.g. the broker is down)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections/threads (the local queue finishes its running jobs first)."""

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
