"""Helpers of the queue and worker tests: broker check, a unique queue, worker subprocesses, waiting."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika

from imagelib.context import Library
from imagelib.jobs import get_job
from imagelib.queue.amqp import AmqpQueue
from imagelib.queue.messages import dead_letter_name
from tests.conftest import missing_service, port_open

AMQP_URL = os.environ.get("IMAGELIB_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
ROOT = Path(__file__).resolve().parents[1]
#: how the tests stop and start the broker (``docker exec rabbitmq rabbitmqctl`` in CI, say)
RABBITMQCTL = shlex.split(os.environ.get("IMAGELIB_TEST_RABBITMQCTL", "rabbitmqctl"))


def require_rabbitmq() -> None:
    """Skip (or fail in CI) when RabbitMQ does not answer."""
    if not port_open("127.0.0.1", 5672):
        missing_service("rabbitmq", "nothing listens on 127.0.0.1:5672")


@contextmanager
def unique_queue() -> Iterator[AmqpQueue]:
    """An AmqpQueue on a queue name of its own; the queue and its dead-letter queue are deleted after."""
    require_rabbitmq()
    queue = AmqpQueue(AMQP_URL, f"imagelib.test.{uuid.uuid4().hex[:10]}")
    try:
        yield queue
    finally:
        queue.close()
        with broker_channel() as channel:
            channel.queue_delete(queue.name)
            channel.queue_delete(dead_letter_name(queue.name))


def rabbitmqctl(*args: str) -> None:
    """Run ``rabbitmqctl ARGS`` (``IMAGELIB_TEST_RABBITMQCTL``); raises when it fails."""
    subprocess.run([*RABBITMQCTL, *args], check=True, capture_output=True, timeout=120)


@contextmanager
def broker_stopped() -> Iterator[None]:
    """RabbitMQ stopped (``rabbitmqctl stop_app``) for the block and always started again after it, even
    when the block fails. Only for ``broker_restart``-marked tests (they hold the broker lock alone)."""
    if not shutil.which(RABBITMQCTL[0]):
        missing_service("rabbitmq", f"{RABBITMQCTL[0]} not found (set IMAGELIB_TEST_RABBITMQCTL)")
    try:
        rabbitmqctl("stop_app")
        wait_for(lambda: not port_open("127.0.0.1", 5672, 0.2), 30, "RabbitMQ to stop listening")
        yield
    finally:
        rabbitmqctl("start_app")
        wait_for(lambda: port_open("127.0.0.1", 5672), 60, "RabbitMQ back")


@contextmanager
def broker_channel() -> Iterator[Any]:
    """A plain pika channel (to inspect or poke queues the way an outsider would)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        yield connection.channel()
    finally:
        connection.close()


class WorkerProcess:
    """``imagelib worker`` as a subprocess with the test kinds loaded; its JSON log lines are kept."""

    def __init__(self, queue: str, log: Path, concurrency: int = 1):
        env = {
            **os.environ,
            "IMAGELIB_QUEUE": AMQP_URL,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        self.log = log
        cmd = [sys.executable, "-m", "imagelib", "worker", "--queue", queue, "--import", "tests.queue_kinds"]
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [*cmd, "--concurrency", str(concurrency)], env=env, stdout=subprocess.DEVNULL, stderr=err
            )
        wait_for(lambda: self.events("worker.ready"), 60, f"worker ready ({log})")

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON line the worker logged so far."""
        out = []
        for text in self.log.read_text().splitlines():
            if text.startswith("{"):
                out.append(json.loads(text))
        return out

    def events(self, event: str, **match: Any) -> list[dict[str, Any]]:
        """The logged lines of one event whose fields match."""
        return [
            line
            for line in self.lines()
            if line["event"] == event and all(line.get(k) == v for k, v in match.items())
        ]

    def stop(self) -> None:
        """Kill it if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_for(check: Any, timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_finished(lib: Library, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job once it is ``succeeded`` or ``failed``."""
    return wait_for(
        lambda: (job := get_job(lib.catalog, job_id))["state"] in ("succeeded", "failed") and job,
        timeout,
        f"job {job_id} to finish",
    )


def trace(path: Path) -> list[str]:
    """Lines a test kind wrote to its trace file."""
    return path.read_text().split() if path.exists() else []
