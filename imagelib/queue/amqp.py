"""RabbitMQ transport: topology, connection settings and the publisher (durable, persistent, confirmed)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from imagelib.errors import Unavailable
from imagelib.queue.base import JobQueue
from imagelib.queue.messages import REQUEST_ID, RETRIES, dead_letter_name, encode

if TYPE_CHECKING:
    from imagelib.context import Library

T = TypeVar("T")
#: what a lost or refused broker raises through pika
BROKER_ERRORS = (pika.exceptions.AMQPError, OSError)


def parameters(url: str) -> pika.URLParameters:
    """Connection parameters: the URL's, with short timeouts unless it sets them (fail fast → 503)."""
    params = pika.URLParameters(url)
    query = url.partition("?")[2]
    if "connection_attempts" not in query:
        params.connection_attempts = 1
    if "socket_timeout" not in query:
        params.socket_timeout = 3
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = 10  # a broker blocking publishers (disk/memory alarm) → 503
    if "heartbeat" not in query:
        params.heartbeat = 30
    return params


def declare(channel: BlockingChannel, name: str) -> None:
    """The durable job queue and its dead-letter queue (rejected messages go there, kept for inspection)."""
    channel.queue_declare(dead_letter_name(name), durable=True)
    channel.queue_declare(
        name,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_letter_name(name)},
    )


def properties(job_id: str, request_id: str | None, retries: int = 0) -> pika.BasicProperties:
    """Persistent JSON message properties carrying the request ID and the retry count."""
    headers: dict[str, Any] = {RETRIES: retries}
    if request_id:
        headers[REQUEST_ID] = request_id
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=job_id,
        headers=headers,
    )


class AmqpQueue(JobQueue):
    """Publisher side: one lazily opened connection, shared by threads under a lock, reopened when lost."""

    def __init__(self, url: str, name: str = "imagelib.jobs"):
        self.url, self.name = url, name
        self._params = parameters(url)
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def __repr__(self) -> str:
        return f"AmqpQueue({self._params.host}:{self._params.port}, name={self.name!r})"

    def publish(
        self, job_id: str, kind: str, payload: dict[str, Any], *, lib: Library, request_id: str | None
    ) -> None:
        """Publish persistently with ``mandatory`` and wait for the broker's confirm."""
        body = encode(job_id, kind, payload)
        self._call(
            lambda ch: ch.basic_publish("", self.name, body, properties(job_id, request_id), mandatory=True)
        )

    def ping(self) -> bool:
        """True when the broker answers and the queue exists."""
        try:
            self._call(lambda ch: ch.queue_declare(self.name, passive=True))
        except Unavailable:
            return False
        return True

    def depth(self) -> int | None:
        """Messages ready in the queue (not counting those being worked on); None when the broker is down."""
        try:
            return self._call(lambda ch: ch.queue_declare(self.name, passive=True).method.message_count)
        except Unavailable:
            return None

    def dead_letters(self) -> int | None:
        """Messages in the dead-letter queue; None when the broker is down."""
        dead = dead_letter_name(self.name)
        try:
            return self._call(lambda ch: ch.queue_declare(dead, passive=True).method.message_count)
        except Unavailable:
            return None

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        with self._lock:
            self._drop()

    def _call(self, operation: Callable[[BlockingChannel], T]) -> T:
        with self._lock:
            try:
                return operation(self._open())
            except BROKER_ERRORS:
                # The broker may have dropped this connection (restart, missed heartbeats): one more try on
                # a fresh one. A duplicate publish from it is harmless, handlers are idempotent.
                self._drop()
            try:
                return operation(self._open())
            except BROKER_ERRORS as exc:
                self._drop()
                raise Unavailable(
                    f"RabbitMQ at {self._params.host}:{self._params.port} is unavailable: "
                    f"{type(exc).__name__}: {exc}",
                    code="QUEUE_UNAVAILABLE",
                ) from exc

    def _open(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self._drop()
            self._connection = pika.BlockingConnection(self._params)
            channel = self._connection.channel()
            channel.confirm_delivery()
            declare(channel, self.name)
            self._channel = channel
        return self._channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            close_quietly(connection)


def close_quietly(connection: pika.BlockingConnection) -> None:
    """Close a connection that may already be broken (nothing to report: it is being abandoned)."""
    if connection.is_open:
        with contextlib.suppress(*BROKER_ERRORS):
            connection.close()
