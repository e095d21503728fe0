"""RabbitMQ itself restarted (``rabbitmqctl stop_app``/``start_app``) under a running ``imagelib serve``
(PostgreSQL catalog, AMQP queue): while it is down ``/health/ready`` is false with ``queue`` down and an
upload answers 503 ``QUEUE_UNAVAILABLE`` (coded, not 500) leaving nothing behind — no spooled file, no
dataset, no version, no job left ``queued``; once it is back the work queued before the outage and a new
upload both complete, nothing lost and nothing dead-lettered.

``broker_restart``-marked: the test holds the broker test lock alone (``tests/conftest.py``), and the
broker is always started again, even when an assertion fails (``tests.queue_support.broker_stopped``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from imagelib.catalog.schema import jobs
from imagelib.context import Library
from imagelib.queue.messages import dead_letter_name
from tests.conftest import DATA
from tests.queue_support import (
    AMQP_URL,
    WorkerProcess,
    broker_channel,
    broker_stopped,
    require_rabbitmq,
    wait_for,
)
from tests.test_api_e2e import api_process, wait_job

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.broker_restart]
NS = "outage"


@pytest.fixture
def lib(pg_url: str) -> Iterator[Library]:
    """The test's own view of the API's catalog (the same fresh PostgreSQL database)."""
    library = Library()
    yield library
    library.close()


def upload(base: str, dataset: str, source: Path) -> httpx.Response:
    """``POST /v1/uploads`` of one file."""
    with source.open("rb") as f:
        return httpx.post(
            f"{base}/v1/uploads",
            data={"namespace": NS, "dataset": dataset},
            files={"file": (source.name, f, "image/tiff")},
            timeout=60,
        )


def job_state(base: str, job: str) -> dict[str, Any]:
    """``GET /v1/jobs/{job}``."""
    return httpx.get(f"{base}/v1/jobs/{job}").json()


def jobs_of(lib: Library, dataset: str) -> list[dict[str, Any]]:
    """Every job record whose payload names ``dataset``."""
    with lib.catalog.begin(write=False) as conn:
        rows = conn.execute(sa.select(jobs.c.id, jobs.c.state, jobs.c.payload, jobs.c.error)).mappings()
        return [dict(r) for r in rows if (r.payload or {}).get("dataset") == dataset]


def queued_messages(queue: str) -> int:
    """Messages ready in ``queue``, as an outside client sees them."""
    with broker_channel() as channel:
        return channel.queue_declare(queue, passive=True).method.message_count


def test_broker_restart_under_the_api(lib: Library, home: Path, tmp_path: Path) -> None:
    require_rabbitmq()
    queue = f"imagelib.test.restart.{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "IMAGELIB_OIDC_ISSUER"}  # the local user
    env |= {"IMAGELIB_QUEUE": AMQP_URL, "IMAGELIB_QUEUE_NAME": queue}
    spool = home / "uploads"
    worker = WorkerProcess(queue, tmp_path / "worker1.log")
    try:
        with api_process(env, tmp_path / "api.log") as base:
            first = upload(base, "first", DATA / "byte.tif")  # the path works before anything breaks
            assert first.status_code == 202, first.text
            assert wait_job(base, first.json()["job"], {})["state"] == "succeeded"
            worker.stop()  # from here work waits in the broker's durable queue
            waiting = upload(base, "before", DATA / "shade.tif")
            assert waiting.status_code == 202, waiting.text
            assert wait_for(lambda: queued_messages(queue) == 1, 10, "the job in the queue")

            with broker_stopped():
                ready = wait_for(
                    lambda: (r := httpx.get(f"{base}/health/ready")).status_code == 503 and r, 30, "not ready"
                )
                body = ready.json()
                assert body["ready"] is False and body["queue"]["ok"] is False and body["db"]["ok"] is True
                spooled = set(spool.iterdir())
                refused = upload(base, "during", DATA / "byte.tif")
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "QUEUE_UNAVAILABLE"
                assert set(spool.iterdir()) == spooled  # the refused upload's spool folder is gone
                # the app still answers everything that does not need the broker
                metrics = httpx.get(f"{base}/metrics")
                assert metrics.status_code == 200 and "imagelib_queue_depth" not in metrics.text
                assert job_state(base, waiting.json()["job"])["state"] == "queued"

            # nothing of the refused upload was published or left half-done
            (record,) = jobs_of(lib, "during")
            assert record["state"] == "failed" and record["error"]["code"] == "QUEUE_UNAVAILABLE"
            assert not lib.catalog.versions(NS, "during")
            assert "during" not in {d["dataset"] for d in lib.catalog.datasets()}

            ready = wait_for(lambda: httpx.get(f"{base}/health/ready").status_code == 200, 60, "ready again")
            assert ready
            assert queued_messages(queue) == 1  # the durable, persistent message outlived the restart
            later = upload(base, "after", DATA / "byte.tif")
            assert later.status_code == 202, later.text
            worker = WorkerProcess(queue, tmp_path / "worker2.log")
            for job in (waiting.json()["job"], later.json()["job"]):
                assert wait_job(base, job, {})["state"] == "succeeded"
                assert worker.events("job.succeeded", job=job)
            assert {d["dataset"]: d["versions"] for d in lib.catalog.datasets()} == {
                "first": 1,
                "before": 1,
                "after": 1,
            }
            assert wait_for(lambda: queued_messages(queue) == 0, 10, "an empty queue")
            assert queued_messages(dead_letter_name(queue)) == 0
    finally:
        worker.stop()
        with broker_channel() as channel:
            channel.queue_delete(queue)
            channel.queue_delete(dead_letter_name(queue))
