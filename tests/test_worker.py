"""``imagelib worker`` against the real RabbitMQ and PostgreSQL: jobs run and log their request ID, a
worker SIGKILLed mid-job leaves one version and one transition, poison messages are dead-lettered after
the retry limit while good jobs go on, and SIGTERM finishes the job in hand, loses nothing, exits 0."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.queue_kinds  # noqa: F401  (registers the test kinds in this process)
from imagelib.context import Library
from imagelib.queue import MAX_ATTEMPTS
from imagelib.queue.amqp import AmqpQueue
from imagelib.queue.messages import RETRIES, dead_letter_name, encode
from tests.conftest import DATA
from tests.queue_support import WorkerProcess, broker_channel, trace, unique_queue, wait_finished, wait_for
from tests.test_versions import write_geotiff

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def lib(pg_url: str) -> Iterator[Library]:
    """A library context on a fresh PostgreSQL catalog (the workers get the same through the environment)."""
    library = Library()
    yield library
    library.close()


@pytest.fixture
def queue(pg_url: str) -> Iterator[AmqpQueue]:
    """A queue of this test's own on the real broker."""
    with unique_queue() as q:
        yield q


@pytest.fixture
def workers(tmp_path: Path, queue: AmqpQueue) -> Iterator[list[WorkerProcess]]:
    """Start workers with ``workers.append(...)``-like calls via :func:`start`; all are killed at the end."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def start(workers: list[WorkerProcess], queue: AmqpQueue, tmp_path: Path, **kw: int) -> WorkerProcess:
    worker = WorkerProcess(queue.name, tmp_path / f"worker{len(workers)}.log", **kw)
    workers.append(worker)
    return worker


def test_worker_runs_jobs_with_request_ids_and_coded_failures(
    lib: Library, queue: AmqpQueue, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    worker = start(workers, queue, tmp_path, concurrency=2)
    source = write_geotiff(tmp_path / "a.tif", 64)
    good = queue.submit(
        "ingest", {"source": str(source), "namespace": "w", "dataset": "d"}, lib=lib, request_id="req-good"
    )
    bad = queue.submit(
        "ingest",
        {"source": str(DATA / "byte.tif"), "namespace": "w", "dataset": "d", "sha256": "0" * 64},
        lib=lib,
        request_id="req-bad",
    )
    done, failed = wait_finished(lib, good), wait_finished(lib, bad)
    assert done["state"] == "succeeded" and done["version"] == lib.catalog.versions("w", "d")[0]["id"]
    assert failed["state"] == "failed" and failed["error"]["code"] == "CHECKSUM_MISMATCH"
    assert failed["report"]["errors"][0]["code"] == "CHECKSUM_MISMATCH"  # coded, not retried
    assert worker.events("job.succeeded", job=good, request_id="req-good", version=done["version"])
    assert worker.events("job.failed", job=bad, request_id="req-bad", code="CHECKSUM_MISMATCH")
    assert not worker.events("job.retry")
    # A copy of a finished job's message (a crash between catalog commit and ack) is acked, not re-run.
    with broker_channel() as channel:
        channel.basic_publish("", queue.name, encode(good, "ingest", {"source": str(source)}))
    wait_for(lambda: worker.events("job.skipped", job=good, state="succeeded"), 30, "skipped redelivery")
    assert len(worker.events("job.succeeded", job=good)) == 1 and len(lib.catalog.versions("w", "d")) == 1
    assert wait_for(lambda: queue.depth() == 0, 10, "empty queue")


@pytest.mark.parametrize("when", ["before", "after"])
def test_sigkilled_worker_job_is_redelivered_and_versioned_once(
    when: str, lib: Library, queue: AmqpQueue, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    # "after": the version row is already committed when the worker dies, only the job and ack are not.
    hold, log = tmp_path / "hold", tmp_path / "trace"
    hold.touch()
    source = write_geotiff(tmp_path / "a.tif", 64)
    payload = {
        "source": str(source),
        "namespace": "k",
        "dataset": "d",
        "hold": str(hold),
        "trace": str(log),
        "when": when,
    }
    first = start(workers, queue, tmp_path)
    job = queue.submit("hold", payload, lib=lib, request_id="req-kill")
    wait_for(
        lambda: trace(log) == (["start", "ingested"] if when == "after" else ["start"]), 60, "job in hand"
    )
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    hold.unlink()
    second = start(workers, queue, tmp_path)
    finished = wait_finished(lib, job)
    assert finished["state"] == "succeeded"
    assert [v["id"] for v in lib.catalog.versions("k", "d")] == [finished["version"]]  # exactly one version
    assert not first.events("job.succeeded") and len(second.events("job.succeeded", job=job)) == 1
    assert second.events("job.redelivered", job=job, request_id="req-kill")
    assert trace(log).count("start") == 2  # run again after the kill, safely
    assert wait_for(lambda: queue.depth() == 0, 10, "empty queue") and queue.dead_letters() == 0


def test_poison_messages_are_dead_lettered_while_good_jobs_go_on(
    lib: Library, queue: AmqpQueue, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    worker = start(workers, queue, tmp_path)
    with broker_channel() as channel:
        channel.basic_publish("", queue.name, b"\xff not json")
    poison = queue.submit("explode", {"trace": str(tmp_path / "boom")}, lib=lib, request_id="req-poison")
    source = write_geotiff(tmp_path / "a.tif", 64)
    good = queue.submit("ingest", {"source": str(source), "namespace": "p", "dataset": "d"}, lib=lib)
    assert wait_finished(lib, good)["state"] == "succeeded"
    failed = wait_finished(lib, poison)
    assert failed["state"] == "failed" and failed["error"]["code"] == "INTERNAL"
    assert trace(tmp_path / "boom") == ["start"] * MAX_ATTEMPTS
    assert wait_for(lambda: queue.dead_letters() == 2, 10, "two dead letters")
    with broker_channel() as channel:
        dead = [channel.basic_get(dead_letter_name(queue.name), auto_ack=True) for _ in range(2)]
    bodies = {body: props.headers or {} for _, props, body in dead}
    assert b"\xff not json" in bodies
    (explode_headers,) = [h for b, h in bodies.items() if b != b"\xff not json"]
    assert (
        explode_headers[RETRIES] == MAX_ATTEMPTS - 1 and explode_headers["x-death"][0]["reason"] == "rejected"
    )
    assert worker.events("message.poison") and len(worker.events("job.retry", job=poison)) == MAX_ATTEMPTS - 1
    assert queue.depth() == 0 and worker.proc.poll() is None  # still consuming


def test_sigterm_finishes_the_job_in_hand_and_loses_nothing(
    lib: Library, queue: AmqpQueue, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    hold, log = tmp_path / "hold", tmp_path / "trace"
    hold.touch()
    first = start(workers, queue, tmp_path)
    held = queue.submit(
        "hold",
        {
            "source": str(write_geotiff(tmp_path / "a.tif", 64)),
            "namespace": "t",
            "dataset": "d",
            "hold": str(hold),
            "trace": str(log),
        },
        lib=lib,
    )
    waiting = queue.submit(
        "ingest",
        {"source": str(write_geotiff(tmp_path / "b.tif", 64, seed=1)), "namespace": "t", "dataset": "d"},
        lib=lib,
    )
    wait_for(lambda: trace(log) == ["start"], 60, "job in hand")
    first.proc.send_signal(signal.SIGTERM)
    hold.unlink()
    assert first.proc.wait(60) == 0
    assert wait_finished(lib, held)["state"] == "succeeded"
    assert queue.depth() == 1  # prefetch 1: the second job stayed in the queue, not lost
    start(workers, queue, tmp_path)
    assert wait_finished(lib, waiting)["state"] == "succeeded"
    assert first.events("worker.stopped")
