"""``imagelib worker``: consume the job queue, run handlers on a thread pool, ack after the catalog commit.

The connection's I/O loop stays on the main thread (heartbeats keep flowing during long jobs); handlers
run on ``concurrency`` threads with ``prefetch = concurrency``; every ack, retry and dead-letter is
handed back to the I/O thread. A job's outcome is committed to the catalog before its message is
settled, so a crash at any point leads to a redelivery that the idempotent runner absorbs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from imagelib.context import current
from imagelib.errors import NotFound, UsageError
from imagelib.jobs import get_job
from imagelib.queue.amqp import BROKER_ERRORS, close_quietly, declare, parameters, properties
from imagelib.queue.kinds import import_modules
from imagelib.queue.logs import log, log_to_stderr
from imagelib.queue.messages import MAX_ATTEMPTS, REQUEST_ID, RETRIES, decode
from imagelib.queue.runner import FINISHED, Outcome, fail_unrun, run_job

if TYPE_CHECKING:
    from imagelib.context import Library

RETRY_DELAY_S = 0.5  # × attempt: a short pause before a failed job goes back to the queue
RECONNECT_MAX_S = 5.0


class Worker:
    """A queue consumer bound to one library context."""

    def __init__(
        self,
        lib: Library,
        url: str,
        *,
        name: str = "imagelib.jobs",
        concurrency: int = 1,
        max_attempts: int = MAX_ATTEMPTS,
    ):
        self.lib, self.url, self.name = lib, url, name
        self.concurrency, self.max_attempts = concurrency, max_attempts
        self._params = parameters(url)
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="imagelib-worker")

    def stop(self) -> None:
        """Ask the worker to stop: no new messages; those in hand finish and are settled first."""
        self._stopping.set()

    def run(self) -> None:
        """Consume until :meth:`stop`; reconnect (with backoff) whenever the broker goes away."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._consume()
                delay = 0.5
            except BROKER_ERRORS as exc:
                error = repr(exc)
                log("worker.disconnected", logging.WARNING, error=error, retry_s=delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
        self._pool.shutdown(wait=True)  # handlers of a lost connection still commit their outcome
        log("worker.stopped", queue=self.name)

    def _consume(self) -> None:
        session = Session(pika.BlockingConnection(self._params))
        try:
            channel = session.connection.channel()
            channel.confirm_delivery()
            declare(channel, self.name)
            channel.basic_qos(prefetch_count=self.concurrency)
            tag = channel.basic_consume(self.name, partial(self._deliver, session))
            log("worker.ready", queue=self.name, concurrency=self.concurrency, host=self._params.host)
            while not self._stopping.is_set():
                session.connection.process_data_events(time_limit=0.5)
            channel.basic_cancel(tag)  # no more deliveries; finish and settle the ones in hand
            while session.inflight:
                session.connection.process_data_events(time_limit=0.2)
        finally:
            close_quietly(session.connection)

    def _deliver(
        self,
        session: Session,
        channel: BlockingChannel,
        method: Any,
        props: pika.BasicProperties,
        body: bytes,
    ) -> None:
        session.count(+1)
        self._pool.submit(self._work, session, channel, method, props, body)

    def _work(
        self,
        session: Session,
        channel: BlockingChannel,
        method: Any,
        props: pika.BasicProperties,
        body: bytes,
    ) -> None:
        headers = props.headers or {}
        retries = int(headers.get(RETRIES) or 0)
        try:
            outcome = self._decide(body, retries, bool(method.redelivered), headers.get(REQUEST_ID))
        except Exception as exc:  # the catalog failed under the runner: count it as a failed attempt
            log("job.error", logging.ERROR, error=f"{type(exc).__name__}: {exc}", job=props.message_id)
            outcome = Outcome.DEAD if retries + 1 >= self.max_attempts else Outcome.RETRY
        if outcome is Outcome.RETRY and not method.redelivered:
            time.sleep(RETRY_DELAY_S * (retries + 1))
        settle = partial(self._settle, session, channel, method.delivery_tag, props, body, outcome, retries)
        try:
            session.connection.add_callback_threadsafe(settle)
        except BROKER_ERRORS:  # connection gone: the broker redelivers the message, the runner absorbs it
            log("job.unsettled", logging.WARNING, job=props.message_id)

    def _decide(self, body: bytes, retries: int, redelivered: bool, request_id: str | None) -> Outcome:
        """What to do with one delivery (runs the job unless it is poison or a crashed delivery)."""
        try:
            message = decode(body)
        except ValueError as exc:
            log("message.poison", logging.ERROR, error=str(exc), request_id=request_id)
            return Outcome.DEAD  # undecodable: retrying cannot help
        attempt = retries + 1
        ids = {"job": message["job"], "kind": message["kind"], "request_id": request_id, "attempt": attempt}
        if redelivered:
            # An earlier delivery died unsettled (worker killed, connection lost). Count it as an attempt by
            # sending a copy with the count raised, so a job that kills its workers ends in the DLQ too.
            try:
                state = get_job(self.lib.catalog, message["job"])["state"]
            except NotFound:
                return Outcome.DEAD
            if state in FINISHED:
                log("job.skipped", state=state, **ids)
                return Outcome.DONE
            if attempt >= self.max_attempts:
                fail_unrun(self.lib, message, f"gave up after {attempt} interrupted attempts", request_id)
                return Outcome.DEAD
            log("job.redelivered", logging.WARNING, **ids)
            return Outcome.RETRY
        log("job.received", **ids)
        return run_job(self.lib, message, final=attempt >= self.max_attempts, request_id=request_id)

    def _settle(
        self,
        session: Session,
        channel: BlockingChannel,
        tag: int,
        props: pika.BasicProperties,
        body: bytes,
        outcome: Outcome,
        retries: int,
    ) -> None:
        # Runs on the I/O thread. The catalog already holds the job's outcome.
        try:
            if outcome is Outcome.RETRY:
                retry = properties(props.message_id, (props.headers or {}).get(REQUEST_ID), retries + 1)
                try:
                    channel.basic_publish("", self.name, body, retry, mandatory=True)
                except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                    channel.basic_nack(tag, requeue=True)
                    return
                channel.basic_ack(tag)
            elif outcome is Outcome.DEAD:
                channel.basic_reject(tag, requeue=False)  # dead-lettered to <name>.dead by the queue
                log("message.dead_lettered", job=props.message_id, retries=retries)
            else:
                channel.basic_ack(tag)
        finally:
            session.count(-1)


class Session:
    """One broker connection and the deliveries of it still in hand (those of a lost one no longer count:
    the broker has already put them back)."""

    def __init__(self, connection: pika.BlockingConnection):
        self.connection = connection
        self.inflight = 0
        self._lock = threading.Lock()

    def count(self, change: int) -> None:
        """A delivery was taken (+1) or settled (-1)."""
        with self._lock:
            self.inflight += change


def serve_forever(*, concurrency: int = 1, name: str = "imagelib.jobs", imports: Sequence[str] = ()) -> None:
    """The ``imagelib worker`` process: the environment's context, JSON logs, stop on SIGTERM/SIGINT."""
    log_to_stderr()
    import_modules(list(imports))
    lib = current()
    url = lib.settings.queue
    if not url.startswith(("amqp://", "amqps://")):
        raise UsageError(f"imagelib worker needs IMAGELIB_QUEUE=amqp://…, not {url!r}", field="queue")
    worker = Worker(lib, url, name=name, concurrency=concurrency)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    try:
        worker.run()
    finally:
        lib.close()
