"""Job records: an ingest leaves a succeeded job with its version, a failed one the coded error."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import imagelib
from imagelib.catalog import Catalog
from imagelib.catalog.schema import jobs
from imagelib.errors import NotFound, ValidationFailed
from imagelib.jobs import create_job, get_job, update_job
from tests.conftest import DATA


def all_jobs(catalog: Catalog) -> list[dict]:
    with catalog.begin() as conn:
        return [
            get_job(catalog, row.id) for row in conn.execute(sa.select(jobs.c.id).order_by(jobs.c.created_at))
        ]


def test_ingest_records_succeeded_and_failed_jobs(catalog_env: str) -> None:
    version = imagelib.ingest(DATA / "byte.tif", "jobs", "ok")["version"]
    with pytest.raises(ValidationFailed):
        imagelib.ingest(DATA / "shade.tif", "jobs", "bad", sha256="0" * 64)
    done, failed = all_jobs(Catalog())
    assert (done["kind"], done["state"], done["progress"], done["version"]) == (
        "ingest",
        "succeeded",
        1.0,
        version,
    )
    assert failed["state"] == "failed" and failed["version"] is None
    assert failed["error"]["code"] == "CHECKSUM_MISMATCH"
    assert failed["report"]["valid"] is False and failed["report"]["errors"][0]["expected"] == "0" * 64


def test_job_lifecycle_and_errors(catalog_env: str) -> None:
    catalog = Catalog()
    job = create_job(catalog, "tile", {"version": "x"})
    assert get_job(catalog, job)["state"] == "queued"
    update_job(catalog, job, state="running", progress=0.5)
    assert (get_job(catalog, job)["state"], get_job(catalog, job)["progress"]) == ("running", 0.5)
    with pytest.raises(ValueError):
        update_job(catalog, job, state="exploded")
    with pytest.raises(NotFound) as info:
        get_job(catalog, "0" * 32)
    assert info.value.code == "JOB_NOT_FOUND"
