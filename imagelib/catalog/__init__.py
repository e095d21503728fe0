"""Metadata catalog: namespaces, datasets, versions, lineage, jobs, audit — SQLite or PostgreSQL.

All writes of one ingest happen in one transaction, so a killed process leaves no dangling row.
Concurrent writers are safe: inserts of content-addressed rows are idempotent (conflicts ignored).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from filelock import FileLock

from imagelib.catalog import schema as t
from imagelib.catalog_read import HEAD_REVISION
from imagelib.config import redact_url, settings
from imagelib.errors import CatalogError, NotFound, UsageError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MIGRATIONS = Path(__file__).with_name("migrations")
PG_MIGRATION_LOCK = 0x1A6E11B  # pg_advisory_lock key shared by every imagelib process
CONNECT_TIMEOUT_S = 5
#: pauses between connection attempts: connecting is always safe to retry (nothing was executed)
CONNECT_RETRY_DELAYS_S = (0.2, 0.5)


def now() -> datetime:
    """Timezone-aware UTC now (stored as such in both databases)."""
    return datetime.now(UTC)


def check_name(kind: str, name: str) -> str:
    """Namespace and dataset names end up in URLs and keys: keep them to a safe alphabet."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UsageError(
            f"{kind} name {name!r} must match {NAME_PATTERN.pattern}", code="DATASET_NAME_INVALID", field=kind
        )
    return name


def make_engine(url: str) -> sa.Engine:
    """Engine with settings for concurrent multi-process use (SQLite WAL + busy timeout)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")
            dbapi_conn.execute("PRAGMA busy_timeout=60000")

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # Writers take the lock at BEGIN so two never deadlock on lock upgrade; readers don't block.
            write = conn.get_execution_options().get("imagelib_write", True)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    # a bounded connect timeout: an unreachable host must give CATALOG_UNAVAILABLE, not a hang
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})


def at_head(engine: sa.Engine) -> bool:
    """True when the database already has the newest schema (skips importing Alembic at all).

    A database that cannot be reached raises (it is not "behind"); a missing version table is False."""
    with engine.connect() as conn:
        try:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
        except sa.exc.DBAPIError:
            return False


def create_fresh(engine: sa.Engine) -> bool:
    """Give an empty SQLite database the newest schema straight from :mod:`imagelib.catalog.schema`,
    stamped at :data:`HEAD_REVISION`, in one transaction; False (nothing done) for another database or
    one holding any table. A first ingest then imports no Alembic and replays no migration (~0.15 s);
    ``tests/test_catalog.py`` checks that this schema is the one the migrations build."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.begin() as conn:  # BEGIN IMMEDIATE: a second creator waits here, then finds the tables
        if sa.inspect(conn).get_table_names():
            return False
        t.metadata.create_all(conn)
        conn.execute(
            sa.text(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
        )
        conn.execute(sa.text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD_REVISION})
    return True


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision, one process at a time."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK})
                conn.commit()


class Catalog:
    """The catalog API used by ingest, filters, tiling and the faces."""

    def __init__(self, url: str | None = None):
        self.url = url or settings().catalog
        try:
            self.engine = make_engine(self.url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise UsageError(
                f"catalog URL {redact_url(self.url)!r} is not usable: {exc}", field="catalog"
            ) from exc
        if not self._retrying(lambda: at_head(self.engine)):
            with self._migration_lock():
                if not self._retrying(lambda: create_fresh(self.engine)):
                    self._retrying(lambda: migrate(self.engine))

    def _retrying(self, step: Any) -> Any:
        """Run ``step``; an unreachable database is retried briefly, then CATALOG_UNAVAILABLE."""
        for delay in (*CONNECT_RETRY_DELAYS_S, None):
            try:
                return step()
            except sa.exc.OperationalError as exc:
                if delay is None:
                    raise self._unavailable(exc) from exc
                time.sleep(delay)
        return None

    def _unavailable(self, exc: BaseException) -> CatalogError:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return CatalogError(
            f"catalog {redact_url(self.url)} cannot be reached: {reason}",
            code="CATALOG_UNAVAILABLE",
            field="catalog",
        )

    def _migration_lock(self) -> Any:
        if self.engine.dialect.name == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            return FileLock(f"{self.engine.url.database}.migrate.lock")
        from contextlib import nullcontext

        return nullcontext()

    @contextmanager
    def begin(self, write: bool = True) -> Iterator[sa.Connection]:
        """One transaction (``write=False`` for reads); database errors become coded CatalogError."""
        conn = self._retrying(self.engine.connect)
        try:
            with conn, conn.execution_options(imagelib_write=write).begin():
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise CatalogError(f"catalog operation failed: {exc.__class__.__name__}: {exc}") from exc

    # -- writes -----------------------------------------------------------------------------
    def insert_ignore(self, conn: sa.Connection, table: sa.Table, row: dict[str, Any]) -> None:
        """INSERT that silently keeps an existing row with the same key (idempotent writers)."""
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        conn.execute(insert(table).values(**row).on_conflict_do_nothing())

    def ensure_dataset(self, conn: sa.Connection, namespace: str, dataset: str) -> int:
        """Create the namespace and dataset rows if needed; return the dataset id."""
        check_name("namespace", namespace)
        check_name("dataset", dataset)
        self.insert_ignore(conn, t.namespaces, {"name": namespace, "created_at": now()})
        ns_id = conn.execute(
            sa.select(t.namespaces.c.id).where(t.namespaces.c.name == namespace)
        ).scalar_one()
        self.insert_ignore(conn, t.datasets, {"namespace_id": ns_id, "name": dataset, "created_at": now()})
        return conn.execute(
            sa.select(t.datasets.c.id).where(t.datasets.c.namespace_id == ns_id, t.datasets.c.name == dataset)
        ).scalar_one()

    def add_version(
        self, row: dict[str, Any], namespace: str, dataset: str, parents: dict[str, Any] | None = None
    ) -> None:
        """Record a version, its dataset membership and lineage edges in one transaction."""
        with self.begin() as conn:
            ds_id = self.ensure_dataset(conn, namespace, dataset)
            self.insert_ignore(conn, t.versions, {**row, "created_at": now()})
            self.insert_ignore(
                conn, t.dataset_versions, {"dataset_id": ds_id, "version_id": row["id"], "created_at": now()}
            )
            for parent, operation in (parents or {}).items():
                self.insert_ignore(
                    conn, t.lineage, {"parent_id": parent, "child_id": row["id"], "operation": operation}
                )

    def link_version(self, version: str, namespace: str, dataset: str) -> None:
        """Add an existing version to a dataset (dedupe of a re-ingest)."""
        with self.begin() as conn:
            ds_id = self.ensure_dataset(conn, namespace, dataset)
            self.insert_ignore(
                conn, t.dataset_versions, {"dataset_id": ds_id, "version_id": version, "created_at": now()}
            )

    # -- reads ------------------------------------------------------------------------------
    def get_version(self, version: str) -> dict[str, Any]:
        """One version row with its namespace/dataset memberships; NotFound when absent."""
        with self.begin(write=False) as conn:
            row = conn.execute(sa.select(t.versions).where(t.versions.c.id == version)).mappings().first()
            if row is None:
                raise NotFound(f"version {version} does not exist", field="version", found=version)
            out = dict(row)
            out["datasets"] = [f"{r.namespace}/{r.dataset}" for r in conn.execute(_membership(version))]
        return out

    def has_version(self, version: str) -> bool:
        """True when the catalog holds the version."""
        with self.begin(write=False) as conn:
            return (
                conn.execute(sa.select(t.versions.c.id).where(t.versions.c.id == version)).first() is not None
            )

    def memberships(self, version_ids: list[str]) -> dict[str, list[str]]:
        """``{version: ["namespace/dataset", ...]}`` for many versions in one query (search results)."""
        out: dict[str, list[str]] = {v: [] for v in version_ids}
        if not version_ids:
            return out
        query = (
            sa.select(t.dataset_versions.c.version_id, t.namespaces.c.name, t.datasets.c.name)
            .join(t.datasets, t.datasets.c.id == t.dataset_versions.c.dataset_id)
            .join(t.namespaces, t.namespaces.c.id == t.datasets.c.namespace_id)
            .where(t.dataset_versions.c.version_id.in_(version_ids))
            .order_by(t.namespaces.c.name, t.datasets.c.name)
        )
        with self.begin(write=False) as conn:
            for version, namespace, dataset in conn.execute(query):
                out[version].append(f"{namespace}/{dataset}")
        return out

    def versions(self, namespace: str, dataset: str) -> list[dict[str, Any]]:
        """Versions of a dataset, oldest first."""
        query = (
            sa.select(t.versions, t.dataset_versions.c.created_at.label("added_at"))
            .join(t.dataset_versions, t.dataset_versions.c.version_id == t.versions.c.id)
            .join(t.datasets, t.datasets.c.id == t.dataset_versions.c.dataset_id)
            .join(t.namespaces, t.namespaces.c.id == t.datasets.c.namespace_id)
            .where(t.namespaces.c.name == namespace, t.datasets.c.name == dataset)
            .order_by(t.dataset_versions.c.created_at, t.versions.c.id)
        )
        with self.begin(write=False) as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def datasets(self) -> list[dict[str, Any]]:
        """Every dataset with its namespace and version count."""
        query = (
            sa.select(
                t.namespaces.c.name.label("namespace"),
                t.datasets.c.name.label("dataset"),
                sa.func.count(t.dataset_versions.c.version_id).label("versions"),
            )
            .join(t.datasets, t.datasets.c.namespace_id == t.namespaces.c.id)
            .outerjoin(t.dataset_versions, t.dataset_versions.c.dataset_id == t.datasets.c.id)
            .group_by(t.namespaces.c.name, t.datasets.c.name)
            .order_by(t.namespaces.c.name, t.datasets.c.name)
        )
        with self.begin(write=False) as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def same_size_versions(
        self, namespace: str, dataset: str, size: int, address: str | None
    ) -> list[dict[str, Any]]:
        """Versions of a dataset whose source had this size and address (re-ingest shortcut)."""
        query = (
            sa.select(t.versions.c.id)
            .join(t.dataset_versions, t.dataset_versions.c.version_id == t.versions.c.id)
            .join(t.datasets, t.datasets.c.id == t.dataset_versions.c.dataset_id)
            .join(t.namespaces, t.namespaces.c.id == t.datasets.c.namespace_id)
            .where(
                t.namespaces.c.name == namespace,
                t.datasets.c.name == dataset,
                t.versions.c.size_bytes == size,
                t.versions.c.address.is_(None) if address is None else t.versions.c.address == address,
            )
        )
        with self.begin(write=False) as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def lineage(self, version: str) -> dict[str, Any]:
        """Ancestors and descendants (whole DAG walk) with the operation on each edge."""
        self.get_version(version)
        with self.begin(write=False) as conn:
            up = _subgraph(conn, version, "child_id", "parent_id")
            down = _subgraph(conn, version, "parent_id", "child_id")
        return {
            "version": version,
            "ancestors": _walk(up, version, "child_id", "parent_id"),
            "descendants": _walk(down, version, "parent_id", "child_id"),
        }

    def search(
        self,
        bbox: tuple[float, float, float, float] | None = None,
        time: tuple[datetime | None, datetime | None] | None = None,
        namespace: str | None = None,
        dtype: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Versions intersecting a EPSG:4326 bbox and/or a time range, optionally by namespace/dtype."""
        v = t.versions
        query = sa.select(v).order_by(v.c.created_at, v.c.id).limit(limit)
        if bbox:
            west, south, east, north = bbox
            query = query.where(v.c.west <= east, v.c.east >= west, v.c.south <= north, v.c.north >= south)
        if time:
            start, end = time
            if end is not None:
                query = query.where(v.c.time_start <= end)
            if start is not None:
                query = query.where(sa.func.coalesce(v.c.time_end, v.c.time_start) >= start)
        if dtype:
            query = query.where(v.c.dtype == dtype)
        if namespace:
            members = (
                sa.select(t.dataset_versions.c.version_id)
                .join(t.datasets, t.datasets.c.id == t.dataset_versions.c.dataset_id)
                .join(t.namespaces, t.namespaces.c.id == t.datasets.c.namespace_id)
                .where(t.namespaces.c.name == namespace)
            )
            query = query.where(v.c.id.in_(members))  # IN, not JOIN: a version in two datasets stays one row
        with self.begin(write=False) as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def counts(self) -> dict[str, int]:
        """Row counts per table (health checks, tests of "nothing half-written")."""
        with self.begin(write=False) as conn:
            return {
                name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in t.metadata.tables.items()
            }


def _membership(version: str) -> sa.Select:
    return (
        sa.select(t.namespaces.c.name.label("namespace"), t.datasets.c.name.label("dataset"))
        .join(t.datasets, t.datasets.c.namespace_id == t.namespaces.c.id)
        .join(t.dataset_versions, t.dataset_versions.c.dataset_id == t.datasets.c.id)
        .where(t.dataset_versions.c.version_id == version)
        .order_by(t.namespaces.c.name, t.datasets.c.name)
    )


def _subgraph(conn: sa.Connection, start: str, here: str, there: str) -> list[dict[str, Any]]:
    """The lineage edges reachable from ``start`` (one recursive query), not the whole table."""
    edge = t.lineage
    reach = sa.select(edge.c[there].label("node")).where(edge.c[here] == start).cte("reach", recursive=True)
    step = edge.alias("step")
    reach = reach.union(sa.select(step.c[there]).join(reach, step.c[here] == reach.c.node))
    nodes = sa.select(reach.c.node)
    query = (
        sa.select(edge)
        .where(sa.or_(edge.c[here] == start, edge.c[here].in_(nodes)))
        .order_by(edge.c[there], edge.c[here])
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def _walk(edges: list[dict[str, Any]], start: str, here: str, there: str) -> list[dict[str, Any]]:
    """Breadth-first over lineage edges; each entry names the version, the edge and the operation."""
    out, frontier, seen = [], [start], {start}
    while frontier:
        nxt = []
        for node in frontier:
            for edge in edges:
                if edge[here] == node and edge[there] not in seen:
                    seen.add(edge[there])
                    nxt.append(edge[there])
                    out.append(
                        {
                            "version": edge[there],
                            "parent": edge["parent_id"],
                            "child": edge["child_id"],
                            "operation": edge["operation"],
                        }
                    )
        frontier = nxt
    return out
