"""Job records (``queued → running → succeeded|failed``, progress, error payload) in the catalog.

The embedded executor runs jobs in-process; an AMQP queue (``IMAGELIB_QUEUE=amqp://…``) with
``imagelib worker`` processes is the scale-out path of the service issue and reuses these records.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from imagelib.catalog import Catalog, now
from imagelib.catalog.schema import jobs
from imagelib.errors import NotFound
from imagelib.hashing import jsonable

STATES = ("queued", "running", "succeeded", "failed")


def create_job(catalog: Catalog, kind: str, payload: dict[str, Any], state: str = "queued") -> str:
    """Record a new job; return its ID."""
    job_id = uuid.uuid4().hex
    with catalog.begin() as conn:
        conn.execute(
            jobs.insert().values(
                id=job_id,
                kind=kind,
                state=state,
                progress=0.0,
                payload=jsonable(payload),
                created_at=now(),
                updated_at=now(),
            )
        )
    return job_id


def update_job(catalog: Catalog, job_id: str, **fields: Any) -> None:
    """Change state/progress/version/report/error of a job."""
    if "state" in fields and fields["state"] not in STATES:
        raise ValueError(f"unknown job state {fields['state']}")
    with catalog.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(**jsonable(fields), updated_at=now()))


def get_job(catalog: Catalog, job_id: str) -> dict[str, Any]:
    """The job as the HTTP contract shows it: ``{"job","state","progress","version","report","error"}``."""
    with catalog.begin(write=False) as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise NotFound(f"job {job_id} does not exist", code="JOB_NOT_FOUND", field="job")
    return {
        "job": row["id"],
        "kind": row["kind"],
        "state": row["state"],
        "progress": row["progress"],
        "version": row["version_id"],
        "report": row["report"],
        "error": row["error"],
    }


def transition(
    catalog: Catalog, job_id: str, to: str, *, allowed_from: tuple[str, ...], **fields: Any
) -> bool:
    """Move a job to state ``to`` only from one of ``allowed_from``; True when this call moved it.

    One conditional UPDATE, so a redelivered queue message (or two workers racing) can never
    transition a finished job again: exactly one caller wins each step.
    """
    if to not in STATES:
        raise ValueError(f"unknown job state {to}")
    with catalog.begin() as conn:
        moved = conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.state.in_(allowed_from))
            .values(**jsonable(fields), state=to, updated_at=now())
        )
    return moved.rowcount == 1
