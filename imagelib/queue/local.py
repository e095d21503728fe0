"""``IMAGELIB_QUEUE=local``: jobs run on a thread pool inside the submitting process (embedded default)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from imagelib.queue.base import JobQueue
from imagelib.queue.logs import log
from imagelib.queue.messages import MAX_ATTEMPTS
from imagelib.queue.runner import Outcome, run_job

if TYPE_CHECKING:
    from imagelib.context import Library


class LocalQueue(JobQueue):
    """The same handlers and retry rule as the workers, without a broker; jobs die with the process."""

    def __init__(self, name: str = "local", *, concurrency: int = 2, max_attempts: int = MAX_ATTEMPTS):
        self.name = name
        self.max_attempts = max_attempts
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="imagelib-job")
        self._waiting = 0
        self._lock = threading.Lock()

    def publish(
        self, job_id: str, kind: str, payload: dict[str, Any], *, lib: Library, request_id: str | None
    ) -> None:
        """Schedule the job on the pool."""
        with self._lock:
            self._waiting += 1
        self._pool.submit(self._run, lib, {"job": job_id, "kind": kind, "payload": payload}, request_id)

    def _run(self, lib: Library, message: dict[str, Any], request_id: str | None) -> None:
        with self._lock:
            self._waiting -= 1
        for attempt in range(1, self.max_attempts + 1):
            try:
                outcome = run_job(lib, message, final=attempt == self.max_attempts, request_id=request_id)
            except Exception as exc:  # the catalog itself failed; nobody else will pick the job up
                log("job.error", logging.ERROR, job=message["job"], error=repr(exc), attempt=attempt)
                outcome = Outcome.RETRY
            if outcome is not Outcome.RETRY:
                return

    def ping(self) -> bool:
        """Always ready: the pool lives in this process."""
        return True

    def depth(self) -> int:
        """Jobs submitted but not started yet."""
        return self._waiting

    def close(self) -> None:
        """Wait for submitted jobs to finish, then stop the threads."""
        self._pool.shutdown(wait=True)
