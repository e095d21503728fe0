"""Job queue: ``IMAGELIB_QUEUE=local`` (in-process threads) or an AMQP URL (RabbitMQ + ``imagelib worker``).

``open_queue(url).submit(kind, payload, lib=lib)`` records a ``queued`` job in the catalog and hands it
to the workers; :data:`handlers` maps job kinds (``ingest``, ``derive``, ``tile``) to their handlers.
Delivery is at least once; handlers and job transitions are idempotent, so a redelivery never creates a
second version nor moves a finished job again.
"""

from __future__ import annotations

from imagelib.errors import UsageError
from imagelib.queue.base import JobQueue
from imagelib.queue.kinds import handlers, register
from imagelib.queue.messages import MAX_ATTEMPTS, dead_letter_name

__all__ = ["MAX_ATTEMPTS", "JobQueue", "dead_letter_name", "handlers", "open_queue", "register"]


def open_queue(url: str, *, name: str = "imagelib.jobs") -> JobQueue:
    """The queue ``url`` names: ``local`` or ``amqp://``/``amqps://`` (the value of ``IMAGELIB_QUEUE``)."""
    if url == "local":
        from imagelib.queue.local import LocalQueue

        return LocalQueue(name)
    if url.startswith(("amqp://", "amqps://")):
        from imagelib.queue.amqp import AmqpQueue

        return AmqpQueue(url, name)
    raise UsageError(f"IMAGELIB_QUEUE must be 'local' or an amqp:// URL, not {url!r}", field="queue")
