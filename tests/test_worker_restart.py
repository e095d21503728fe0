"""RabbitMQ restarted (``rabbitmqctl stop_app``/``start_app``) under a running worker: submits answer
QUEUE_UNAVAILABLE meanwhile (the job record is failed, not left queued); afterwards the worker has
reconnected and the work queued before the restart completes — nothing lost.

The broker is down for a few seconds: the test is ``broker_restart``-marked, so it holds the broker test
lock alone (no other RabbitMQ test runs meanwhile, see ``tests/conftest.py``), and the broker is always
started again (``tests.queue_support.broker_stopped``). ``IMAGELIB_TEST_RABBITMQCTL`` overrides the command
(e.g. ``docker exec rabbitmq rabbitmqctl`` in CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.queue_kinds  # noqa: F401  (registers the test kinds in this process)
from imagelib.context import Library
from imagelib.errors import Unavailable
from imagelib.jobs import get_job
from tests.queue_support import WorkerProcess, broker_stopped, trace, unique_queue, wait_finished, wait_for
from tests.test_versions import write_geotiff

pytestmark = [pytest.mark.rabbitmq, pytest.mark.broker_restart]


@pytest.fixture
def lib(pg_url: str) -> Iterator[Library]:
    library = Library()
    yield library
    library.close()


def test_broker_restart_refuses_submits_then_resumes_queued_work(lib: Library, tmp_path: Path) -> None:
    hold, log = tmp_path / "hold", tmp_path / "trace"
    hold.touch()
    with unique_queue() as queue:
        worker = WorkerProcess(queue.name, tmp_path / "worker.log")
        try:
            held = queue.submit(
                "hold",
                {
                    "source": str(write_geotiff(tmp_path / "a.tif", 64)),
                    "namespace": "r",
                    "dataset": "d",
                    "hold": str(hold),
                    "trace": str(log),
                },
                lib=lib,
            )
            waiting = queue.submit(
                "ingest",
                {
                    "source": str(write_geotiff(tmp_path / "b.tif", 64, seed=1)),
                    "namespace": "r",
                    "dataset": "d",
                },
                lib=lib,
            )
            wait_for(lambda: trace(log) == ["start"], 60, "job in hand")
            with broker_stopped():
                wait_for(lambda: worker.events("worker.disconnected"), 30, "worker to notice")
                with pytest.raises(Unavailable) as info:
                    queue.submit("ingest", {"source": "/x.tif", "namespace": "r", "dataset": "d"}, lib=lib)
                assert info.value.code == "QUEUE_UNAVAILABLE" and not queue.ping() and queue.depth() is None
            (refused,) = _jobs(lib, "failed")  # the refused submit's record, not left queued
            assert get_job(lib.catalog, refused)["error"]["code"] == "QUEUE_UNAVAILABLE"
            wait_for(queue.ping, 30, "publisher reconnect")
            after = queue.submit(
                "ingest",
                {
                    "source": str(write_geotiff(tmp_path / "c.tif", 64, seed=2)),
                    "namespace": "r",
                    "dataset": "d",
                },
                lib=lib,
            )
            hold.unlink()
            for job in (held, waiting, after):
                assert wait_finished(lib, job, 90)["state"] == "succeeded"
            assert len(worker.events("worker.ready")) >= 2  # it reconnected by itself
            assert len(lib.catalog.versions("r", "d")) == 3
            assert wait_for(lambda: queue.depth() == 0, 10, "empty queue") and queue.dead_letters() == 0
        finally:
            worker.stop()


def _jobs(lib: Library, state: str) -> list[str]:
    import sqlalchemy as sa

    from imagelib.catalog.schema import jobs

    with lib.catalog.begin(write=False) as conn:
        return [row.id for row in conn.execute(sa.select(jobs.c.id).where(jobs.c.state == state))]
