"""``imagelib serve --workers N``: N server processes on one port, each with the app built from the
environment; requests reach every process, tiles are the same bytes whichever answers, and the audit
hash chain stays intact while several processes append to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

import imagelib
from imagelib.cli import app as cli
from tests.conftest import DATA, free_port, port_open
from tests.queue_support import wait_for


def access_pids(log: Path) -> set[int]:
    """Process ids named in the server's JSON access-log lines."""
    lines = [json.loads(t) for t in log.read_text().splitlines() if t.startswith("{")]
    return {line["pid"] for line in lines if line.get("message") == "request"}


def test_two_worker_processes_share_the_port_and_the_audit_chain(home: Path, tmp_path: Path) -> None:
    lib = imagelib.connect()
    version = imagelib.ingest(DATA / "world.rgb.tif", "earth", "rgb", lib=lib)["version"]
    lib.close()
    port, log = free_port(), tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "IMAGELIB_OIDC_ISSUER"}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagelib", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: port_open("127.0.0.1", port, 0.2) or proc.poll() is not None, 90, "imagelib serve")
        assert proc.poll() is None, log.read_text()[-2000:]
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: len(psutil.Process(proc.pid).children()) >= 2, 60, "two worker processes")
        tile = f"{base}/v1/tiles/{version}_files/9/0_0.png"

        def fetch(_: int) -> bytes:
            with httpx.Client(timeout=60) as client:  # a new connection each time: any process may take it
                answer = client.get(tile)
            assert answer.status_code == 200, answer.text
            return answer.content

        with ThreadPoolExecutor(6) as pool:
            tiles = wait_for(
                lambda: (got := list(pool.map(fetch, range(24)))) and len(access_pids(log)) >= 2 and got,
                60,
                "requests answered by both processes",
            )
        assert len(set(tiles)) == 1  # the same bytes whichever process rendered them
        assert access_pids(log) <= {c.pid for c in psutil.Process(proc.pid).children()}
    finally:
        proc.terminate()  # SIGTERM: each worker's lifespan flushes its audit writer
        proc.wait(60)
    result = CliRunner().invoke(cli, ["audit", "verify", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"], report
    assert report["rows"] >= 24  # every tile read of both processes is in the chain


def test_workers_below_one_is_a_usage_error(home: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--workers", "0"])
    assert result.exit_code == 2, result.output


@pytest.fixture(autouse=True)
def _no_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGELIB_OIDC_ISSUER", raising=False)
