"""Catalog routes: datasets, versions, lineage, search, jobs, derive and the audit log."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from imagelib.api.deps import Audited, Service, audited, service
from imagelib.api.errors import responses
from imagelib.api.params import NAME, Dataset, JobId, Namespace, VersionId, parse_bbox, parse_datetime
from imagelib.auth import ALL
from imagelib.catalog.schema import jobs
from imagelib.errors import AuthError, NotFound
from imagelib.library import public_row
from imagelib.versioning import check_version_id


class DatasetOut(BaseModel):
    """A dataset and how many versions it holds."""

    namespace: str
    dataset: str
    versions: int


class VersionOut(BaseModel):
    """A version as users see it (more catalog fields may follow)."""

    model_config = ConfigDict(extra="allow")
    version: str
    kind: str
    dims: list[str]
    shape: list[int]
    dtype: str
    crs: str | None = None
    bounds_4326: list[float] | None = None
    checksum: str | None = None
    datasets: list[str] = []


class LineageEdge(BaseModel):
    """One edge reached from the version."""

    version: str
    parent: str
    child: str
    operation: Any


class LineageOut(BaseModel):
    """Ancestors and descendants with the operation on each edge."""

    version: str
    ancestors: list[LineageEdge]
    descendants: list[LineageEdge]
    stitch: dict[str, Any] | None = Field(
        None, description="stitched mosaics only: solved tile positions and a summary of the report"
    )


class JobOut(BaseModel):
    """A job's state; ``report`` holds the coded validation report of a failed ingest."""

    job: str
    kind: str
    state: str
    progress: float
    version: str | None = None
    report: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class Accepted(BaseModel):
    """A queued job."""

    job: str


class DeriveIn(BaseModel):
    """A filter chain to apply (JSON list of ops)."""

    chain: list[dict[str, Any]]


def readable(audit: Audited, rows: list[dict[str, Any]], members: dict[str, list[str]]) -> list[dict]:
    """The rows whose version sits in at least one namespace the caller may read, with ``datasets``."""
    allowed = audit.who.readable_namespaces()
    out = []
    for row in rows:
        datasets = members.get(row["id"], [])
        if allowed is None or any(d.split("/", 1)[0] in allowed for d in datasets):
            out.append({**row, "datasets": datasets})
    return out


def router(prefix: str = "/v1") -> APIRouter:
    """The catalog routes."""
    r = APIRouter(prefix=prefix, tags=["catalog"], responses=responses(400, 401, 403, 404, 422, 503))

    @r.get("/datasets", response_model=list[DatasetOut])
    def datasets(svc: Service = Depends(service), audit: Audited = Depends(audited)) -> list[dict]:
        """Datasets of the namespaces the caller may read."""
        allowed = audit.who.readable_namespaces()
        rows = [d for d in svc.lib.catalog.datasets() if allowed is None or d["namespace"] in allowed]
        audit.record("datasets.list", None, None, count=len(rows))
        return rows

    @r.get("/datasets/{namespace}/{dataset}/versions", response_model=list[VersionOut])
    def dataset_versions(
        namespace: Namespace,
        dataset: Dataset,
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> list[dict]:
        """Versions of one dataset, oldest first."""
        from imagelib.catalog import check_name

        check_name("namespace", namespace)
        check_name("dataset", dataset)
        audit.allow(namespace, "read", "versions.list", f"{namespace}/{dataset}")
        rows = svc.lib.catalog.versions(namespace, dataset)
        members = svc.lib.catalog.memberships([row["id"] for row in rows])
        audit.record("versions.list", namespace, f"{namespace}/{dataset}")
        return [public_row({**row, "datasets": members[row["id"]]}) for row in rows]

    @r.get("/versions/{version}", response_model=VersionOut)
    def version(
        version: VersionId, svc: Service = Depends(service), audit: Audited = Depends(audited)
    ) -> dict:
        """One version with its datasets."""
        row = svc.lib.catalog.get_version(check_version_id(version))
        namespaces = sorted({d.split("/", 1)[0] for d in row["datasets"]})
        ns = audit.allow_any(namespaces, "read", "version.read", version)
        audit.record("version.read", ns, version)
        return public_row(row)

    @r.get("/versions/{version}/lineage", response_model=LineageOut)
    def lineage(
        version: VersionId, svc: Service = Depends(service), audit: Audited = Depends(audited)
    ) -> dict:
        """Ancestors and descendants with the operation of each edge."""
        ns = audit.allow_any(svc.version_namespaces(version), "read", "lineage.read", version)
        audit.record("lineage.read", ns, version)
        from imagelib.library import lineage as walk

        return walk(version, lib=svc.lib)

    @r.get("/search", response_model=list[VersionOut])
    def search(
        bbox: str | None = Query(None, description="west,south,east,north (EPSG:4326)"),
        datetime: str | None = Query(None, description="RFC 3339 instant or start/end (.. = open)"),
        namespace: str | None = Query(None, pattern=NAME),
        dtype: str | None = Query(None, max_length=16),
        limit: int = Query(100, ge=1, le=1000),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> list[dict]:
        """Versions intersecting a bbox/time range, limited to namespaces the caller may read."""
        rows = svc.lib.catalog.search(
            bbox=parse_bbox(bbox),
            time=parse_datetime(datetime),
            namespace=namespace,
            dtype=dtype,
            limit=limit,
        )
        found = readable(audit, rows, svc.lib.catalog.memberships([row["id"] for row in rows]))
        audit.record("search", namespace, None, count=len(found))
        return [public_row(row) for row in found]

    @r.get("/jobs/{job}", response_model=JobOut)
    def job(job: JobId, svc: Service = Depends(service), audit: Audited = Depends(audited)) -> dict:
        """State, progress, version and (on failure) the coded report of a job."""
        from imagelib.jobs import get_job

        found = get_job(svc.lib.catalog, job)
        ns = audit.allow_any(_job_namespaces(svc, job), "read", "job.read", job)
        audit.record("job.read", ns, job)
        return found

    @r.post(
        "/versions/{version}/derive",
        status_code=202,
        response_model=Accepted,
        responses=responses(400, 401, 403, 404, 422, 503),
    )
    def derive(
        version: VersionId,
        body: DeriveIn = Body(...),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> JSONResponse:
        """Queue a derived version: ``chain`` applied to ``version`` (deduplicated by content address)."""
        from imagelib.filters import canonical_chain

        ns = audit.allow_any(svc.version_namespaces(version), "write", "version.derive", version)
        chain = canonical_chain(body.chain)
        job_id = svc.submit("derive", {"version": version, "chain": chain, "namespace": ns})
        audit.record("version.derive", ns, version, job=job_id, chain=chain)
        return JSONResponse({"job": job_id}, status_code=202)

    @r.get("/audit", tags=["audit"])
    def audit_events(
        after: int = Query(0, ge=0, le=2**62, description="return events with an id above this"),
        limit: int = Query(100, ge=1, le=1000),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> list[dict[str, Any]]:
        """Audit events of the namespaces the caller administers (``admin`` role)."""
        from imagelib import audit as log

        namespaces = _administered(audit)
        audit.record("audit.read", None, None)
        return log.events(svc.lib.catalog, namespaces=namespaces, after=after, limit=limit)

    @r.get("/audit/verify", tags=["audit"])
    def audit_verify(svc: Service = Depends(service), audit: Audited = Depends(audited)) -> dict[str, Any]:
        """Walk the audit hash chain (``imagelib:*:admin`` only)."""
        from imagelib import audit as log

        audit.allow(ALL, "admin", "audit.verify")
        svc.audit.flush()
        return log.verify(svc.lib.catalog)

    return r


def _administered(audit: Audited) -> set[str] | None:
    """Namespaces the caller administers (None = all); FORBIDDEN when none."""
    if audit.who.can(ALL, "admin"):
        return None
    namespaces = {ns for ns, op in audit.who.grants if op == "admin"}
    if not namespaces:
        audit.record("audit.read", None, None, outcome="forbidden")
        raise AuthError(f"{audit.who.username!r} administers no namespace", code="FORBIDDEN")
    return namespaces


def _job_namespaces(svc: Service, job: str) -> list[str]:
    """The namespaces a job touches (its payload's, or its source version's)."""
    with svc.lib.catalog.begin(write=False) as conn:
        payload = conn.execute(sa.select(jobs.c.payload).where(jobs.c.id == job)).scalar()
    if payload is None:
        raise NotFound(f"job {job} does not exist", code="JOB_NOT_FOUND", field="job")
    if payload.get("namespace"):
        return [payload["namespace"]]
    if payload.get("version"):
        return svc.version_namespaces(payload["version"])
    return []
