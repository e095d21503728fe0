"""The audit hash chain on SQLite and PostgreSQL: requests are logged, concurrent writers never fork the
chain, and ``imagelib audit verify`` detects an edited, deleted or reordered row."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import imagelib
from imagelib import audit
from imagelib.api import ApiSettings, create_app
from imagelib.catalog.schema import audit_events
from imagelib.cli import app as cli
from tests.test_api import GEO


def verify_cli() -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["audit", "verify", "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_requests_are_chained_and_tampering_is_detected(catalog_env: str) -> None:
    lib = imagelib.connect()
    version = imagelib.ingest(GEO, "earth", "rgb", lib=lib)["version"]
    with TestClient(create_app(lib, settings=ApiSettings())) as client:
        client.get(f"/v1/versions/{version}", headers={"X-Request-ID": "req-1"})
        client.get(f"/v1/tiles/{version}/1/1/0.png")
        client.get("/v1/search")
        client.app.state.service.audit.flush()
        events = client.get("/v1/audit").json()
    assert [e["action"] for e in events] == ["version.read", "tile.read", "search"]
    assert events[0]["request_id"] == "req-1" and events[0]["actor"] == "local"
    assert events[0]["prev_hash"] == audit.GENESIS and events[1]["prev_hash"] == events[0]["hash"]

    # concurrent writers (two apps, two processes' worth of connections) keep one chain
    writers = [audit.AuditWriter(lib.catalog, interval=0.01) for _ in range(2)]
    threads = [
        threading.Thread(
            target=lambda w=w: [w.record(actor="t", action="x", target=str(i)) for i in range(50)]
        )
        for w in writers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.close()
    code, result = verify_cli()
    assert code == 0 and result["ok"] and result["rows"] == 104  # 3 requests + the audit read + 100

    with lib.catalog.begin() as conn:  # edit one field of one row
        conn.execute(audit_events.update().where(audit_events.c.id == 2).values(actor="mallory"))
    code, result = verify_cli()
    assert code == 1 and not result["ok"] and result["first_bad"] == 2 and "edited" in result["problem"]
    with lib.catalog.begin() as conn:
        conn.execute(audit_events.update().where(audit_events.c.id == 2).values(actor="local"))
    assert verify_cli()[0] == 0

    with lib.catalog.begin() as conn:  # reorder: swap the contents of two rows
        rows = {
            r["id"]: dict(r)
            for r in conn.execute(sa.select(audit_events).where(audit_events.c.id.in_([5, 6]))).mappings()
        }
        for a, b in ((5, 6), (6, 5)):
            values = {k: v for k, v in rows[b].items() if k != "id"}
            conn.execute(audit_events.update().where(audit_events.c.id == a).values(**values))
    code, result = verify_cli()
    assert code == 1 and result["first_bad"] == 5
    with lib.catalog.begin() as conn:
        for a in (5, 6):
            values = {k: v for k, v in rows[a].items() if k != "id"}
            conn.execute(audit_events.update().where(audit_events.c.id == a).values(**values))
    assert verify_cli()[0] == 0

    with lib.catalog.begin() as conn:  # delete a row in the middle
        conn.execute(audit_events.delete().where(audit_events.c.id == 40))
    code, result = verify_cli()
    assert code == 1 and result["first_bad"] == 41 and "deleted" in result["problem"]
    lib.close()


def test_writer_appends_without_being_flushed(home: Path) -> None:
    """Events reach the catalog on their own within the writer's linger (no flush, no close), a burst
    in few transactions; ``close`` writes what is left."""
    import time

    lib = imagelib.connect()
    writer = audit.AuditWriter(lib.catalog, interval=0.05)
    try:
        for i in range(30):
            writer.record(actor="t", action="x", target=str(i))
        deadline = time.monotonic() + 10
        while len(audit.events(lib.catalog)) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e["target"] for e in audit.events(lib.catalog)] == [str(i) for i in range(30)]
        writer.record(actor="t", action="x", target="last")
    finally:
        writer.close()
    assert audit.events(lib.catalog, after=30)[0]["target"] == "last"
    assert audit.verify(lib.catalog)["ok"]
    lib.close()
