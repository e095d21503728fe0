"""Test-only job kinds, loaded into workers with ``--import tests.queue_kinds``.

``hold``: a real ingest that waits while the file ``payload["hold"]`` exists (before or after the
ingest, ``payload["when"]``), so a test can kill or stop a worker with a job in hand. ``explode``: raises
a plain (uncoded) exception every time — a poison job. Both append a line to ``payload["trace"]`` per run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from imagelib.queue import register
from imagelib.queue.kinds import ingest_job

HOLD_LIMIT_S = 120


def _trace(payload: dict[str, Any], line: str) -> None:
    with Path(payload["trace"]).open("a") as out:
        out.write(line + "\n")


def _wait(hold: Path) -> None:
    deadline = time.monotonic() + HOLD_LIMIT_S
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@register("hold")
def hold_job(lib: Any, payload: dict[str, Any], progress: Any) -> dict[str, Any]:
    """Ingest, pausing while the hold file exists."""
    _trace(payload, "start")
    if payload.get("when", "before") == "before":
        _wait(Path(payload["hold"]))
    result = ingest_job(lib, payload, progress)
    _trace(payload, "ingested")
    if payload.get("when") == "after":
        _wait(Path(payload["hold"]))
    return result


@register("explode")
def explode_job(lib: Any, payload: dict[str, Any], progress: Any) -> dict[str, Any]:
    """Fail with an uncoded exception, every time."""
    _trace(payload, "start")
    raise RuntimeError("boom")
