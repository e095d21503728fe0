"""Append-only audit log with a hash chain, in the catalog (SQLite or PostgreSQL).

Each row's ``hash`` is the sha256 of its own fields and the previous row's hash (``prev_hash``), so editing,
deleting or reordering any row breaks the chain from that row on; :func:`verify` walks it. Appends are
serialised (SQLite's ``BEGIN IMMEDIATE`` write lock, a PostgreSQL transaction-level advisory lock) so two
processes never fork the chain. Truncating the newest rows leaves a valid shorter chain: keep the ``head``
that :func:`verify` reports somewhere else (a log line, a ticket) to detect that too.

:class:`AuditWriter` batches events on a background thread so a tile request never waits on the database.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from imagelib.catalog import Catalog, now
from imagelib.catalog.schema import audit_events
from imagelib.hashing import canonical_json, jsonable

GENESIS = "0" * 64
PG_AUDIT_LOCK = 0x1A6E11C  # pg_advisory_xact_lock key serialising audit appends across processes
FIELDS = ("ts", "actor", "action", "namespace", "target", "outcome", "request_id", "details")
log = logging.getLogger("imagelib.audit")


def _ts_text(ts: datetime) -> str:
    """Timestamps hash as naive UTC text: SQLite gives them back without a zone, PostgreSQL with one."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(timespec="microseconds")


def row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """The chain hash of one row: its fields (canonical JSON) and the previous row's hash."""
    fields = {key: row.get(key) for key in FIELDS}
    fields["ts"] = _ts_text(row["ts"])
    return hashlib.sha256(f"{prev_hash}\n{canonical_json(jsonable(fields))}".encode()).hexdigest()


def _event(event: dict[str, Any]) -> dict[str, Any]:
    """An event with every hashed field present, strings bounded to their columns."""
    row = {key: event.get(key) for key in FIELDS}
    row["ts"] = event.get("ts") or now()
    row["actor"] = str(row["actor"] or "anonymous")[:256]
    row["action"] = str(row["action"])[:64]
    row["target"] = None if row["target"] is None else str(row["target"])[:256]
    row["details"] = jsonable(row["details"]) if row["details"] is not None else None
    return row


def append(catalog: Catalog, events: list[dict[str, Any]]) -> list[str]:
    """Append events (``actor``, ``action``, ``namespace``, ``target``, ``outcome``, ``request_id``,
    ``details``) in one transaction; return their hashes."""
    rows = [_event(e) for e in events]
    if not rows:
        return []
    with catalog.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_AUDIT_LOCK})
        prev = (
            conn.execute(sa.select(audit_events.c.hash).order_by(audit_events.c.id.desc()).limit(1)).scalar()
            or GENESIS
        )
        for row in rows:
            row["prev_hash"], row["hash"] = prev, row_hash(prev, row)
            prev = row["hash"]
        # one executemany in chain order (ids ascend with it): a batch of tile reads costs one statement
        # compile, not one per row
        conn.execute(audit_events.insert(), rows)
    return [row["hash"] for row in rows]


def verify(catalog: Catalog) -> dict[str, Any]:
    """Walk the chain: ``{"ok", "rows", "head", "first_bad", "problem"}`` (``first_bad`` = row id)."""
    prev, count = GENESIS, 0
    with catalog.begin(write=False) as conn:
        for row in conn.execute(sa.select(audit_events).order_by(audit_events.c.id)).mappings():
            count += 1
            problem = None
            if row["prev_hash"] != prev:
                problem = "prev_hash does not match the previous row (a row was deleted, inserted or moved)"
            elif row["hash"] != row_hash(prev, dict(row)):
                problem = "hash does not match the row's fields (the row was edited)"
            if problem:
                return {"ok": False, "rows": count, "head": prev, "first_bad": row["id"], "problem": problem}
            prev = row["hash"]
    return {"ok": True, "rows": count, "head": prev, "first_bad": None, "problem": None}


def events(
    catalog: Catalog, *, namespaces: set[str] | None = None, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """Audit rows after id ``after``, oldest first; ``namespaces`` limits them (None = all)."""
    query = sa.select(audit_events).where(audit_events.c.id > after).order_by(audit_events.c.id).limit(limit)
    if namespaces is not None:
        query = query.where(audit_events.c.namespace.in_(sorted(namespaces)))
    with catalog.begin(write=False) as conn:
        return [jsonable(dict(r)) for r in conn.execute(query).mappings()]


class AuditWriter:
    """Collects events and appends them in batches from one background thread.

    ``record`` is on every request's path, so it only appends to a deque (atomic, no lock) and wakes
    the writer when it sleeps; a ``queue.Queue`` there cost a lock hand-off per request."""

    def __init__(self, catalog: Catalog, *, batch: int = 500, interval: float = 0.2) -> None:
        self.catalog, self.batch, self.interval = catalog, batch, interval
        self._pending: deque[dict[str, Any]] = deque()
        self._flushes: deque[threading.Event] = deque()
        self._wake, self._hurry = threading.Event(), threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="imagelib-audit", daemon=True)
        self._thread.start()

    def record(self, **event: Any) -> None:
        """Queue one event (timestamped now)."""
        self._pending.append({**event, "ts": now()})
        if len(self._pending) >= self.batch:
            self._hurry.set()
        if not self._wake.is_set():  # set by an earlier event not yet taken: the writer will see this one
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every event queued before this call is in the catalog."""
        done = threading.Event()
        self._flushes.append(done)
        self._hurry.set()
        self._wake.set()
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        self._closed = True
        self._hurry.set()
        self._wake.set()
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._hurry.wait(self.interval)  # linger so bursts (tile requests) share one transaction
            self._hurry.clear()
            flushes = _drain(self._flushes)  # before the events: those recorded before a flush are taken
            pending = _drain(self._pending)
            try:
                append(self.catalog, pending)
            except Exception:  # the request already answered; losing the log must at least be loud
                log.exception("audit append of %d events failed", len(pending))
            for done in flushes:
                done.set()
            if self._closed and not self._pending:
                return


def _drain(items: deque[Any]) -> list[Any]:
    """Everything in ``items`` now, oldest first (other threads may go on appending)."""
    out = []
    while True:
        try:
            out.append(items.popleft())
        except IndexError:
            return out
