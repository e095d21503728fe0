"""The job queue: the local executor runs the handlers; the AMQP publisher sends durable, confirmed
messages and refuses with QUEUE_UNAVAILABLE (leaving no job queued) when the broker is unreachable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.queue_kinds  # noqa: F401  (registers the test kinds in this process)
from imagelib.context import Library
from imagelib.errors import Unavailable, UsageError
from imagelib.jobs import get_job
from imagelib.queue import MAX_ATTEMPTS, open_queue
from imagelib.queue.local import LocalQueue
from imagelib.queue.messages import REQUEST_ID, RETRIES, decode
from tests.conftest import DATA, free_port
from tests.queue_support import broker_channel, trace, unique_queue, wait_finished
from tests.test_versions import write_geotiff


@pytest.fixture
def lib(home: Path) -> Iterator[Library]:
    """A library context on the test's catalog (SQLite or PostgreSQL through the environment)."""
    library = Library()
    yield library
    library.close()


def test_local_queue_runs_ingest_derive_and_tile(catalog_env: str, lib: Library, tmp_path: Path) -> None:
    source = write_geotiff(tmp_path / "a.tif", 96)
    with open_queue("local") as queue:
        assert isinstance(queue, LocalQueue) and queue.ping()
        ingested = wait_finished(
            lib, queue.submit("ingest", {"source": str(source), "namespace": "q", "dataset": "d"}, lib=lib)
        )
        assert ingested["state"] == "succeeded" and ingested["progress"] == 1.0, ingested["error"]
        assert len(_all_jobs(lib)) == 1  # the queue's record is the ingest's only job row
        version = ingested["version"]
        chain = [{"op": "gaussian", "sigma": 1}]
        derived = wait_finished(lib, queue.submit("derive", {"version": version, "chain": chain}, lib=lib))
        assert derived["state"] == "succeeded" and derived["version"] not in (None, version)
        out = tmp_path / "tiles"
        tiled = wait_finished(lib, queue.submit("tile", {"version": version, "out": str(out)}, lib=lib))
        assert tiled["state"] == "succeeded" and (out / f"{version}.dzi").exists()
        bad = queue.submit(
            "ingest",
            {"source": str(DATA / "byte.tif"), "namespace": "q", "dataset": "d", "sha256": "0" * 64},
            lib=lib,
        )
        failed = wait_finished(lib, bad)
    assert failed["state"] == "failed" and failed["error"]["code"] == "CHECKSUM_MISMATCH"
    assert failed["report"]["valid"] is False
    assert len(lib.catalog.versions("q", "d")) == 2  # the root and the derived one, nothing from the failure


def test_local_queue_retries_uncoded_failures_then_fails_the_job(
    home: Path, lib: Library, tmp_path: Path
) -> None:
    with open_queue("local") as queue:
        job = wait_finished(lib, queue.submit("explode", {"trace": str(tmp_path / "t")}, lib=lib))
    assert trace(tmp_path / "t") == ["start"] * MAX_ATTEMPTS
    assert (
        job["state"] == "failed" and job["error"]["code"] == "INTERNAL" and "boom" in job["error"]["message"]
    )


def test_submit_refuses_unknown_kinds_and_queue_urls(home: Path, lib: Library) -> None:
    with pytest.raises(UsageError), open_queue("local") as queue:
        queue.submit("nope", {}, lib=lib)
    with pytest.raises(UsageError):
        open_queue("redis://localhost")


@pytest.mark.rabbitmq
def test_amqp_submit_publishes_a_durable_confirmed_message(pg_url: str, lib: Library) -> None:
    with unique_queue() as queue:
        assert queue.ping() and queue.depth() == 0
        job = queue.submit(
            "ingest", {"source": "/x.tif", "namespace": "n", "dataset": "d"}, lib=lib, request_id="req-1"
        )
        assert get_job(lib.catalog, job)["state"] == "queued" and queue.depth() == 1
        with broker_channel() as channel:
            _, props, body = channel.basic_get(queue.name, auto_ack=True)
            durable = channel.queue_declare(queue.name, passive=True)
        assert decode(body) == {
            "job": job,
            "kind": "ingest",
            "payload": {"source": "/x.tif", "namespace": "n", "dataset": "d"},
        }
        assert (
            props.delivery_mode == 2 and props.message_id == job and props.content_type == "application/json"
        )
        assert props.headers == {REQUEST_ID: "req-1", RETRIES: 0}
        assert durable.method.message_count == 0 and json.loads(body)["job"] == job


@pytest.mark.rabbitmq
def test_amqp_submit_to_an_unreachable_broker_is_queue_unavailable(home: Path, lib: Library) -> None:
    queue = open_queue(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", name="imagelib.nowhere")
    with pytest.raises(Unavailable) as info:
        queue.submit("ingest", {"source": "/x.tif", "namespace": "n", "dataset": "d"}, lib=lib)
    assert info.value.code == "QUEUE_UNAVAILABLE" and info.value.spec.http == 503
    assert not queue.ping() and queue.depth() is None
    (job,) = _all_jobs(lib)
    assert job["state"] == "failed" and job["error"]["code"] == "QUEUE_UNAVAILABLE"  # never left queued
    queue.close()


def _all_jobs(lib: Library) -> list[dict]:
    import sqlalchemy as sa

    from imagelib.catalog.schema import jobs

    with lib.catalog.begin(write=False) as conn:
        return [get_job(lib.catalog, row.id) for row in conn.execute(sa.select(jobs.c.id))]
