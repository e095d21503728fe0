"""``imagelib serve --workers N``: N server processes on one port, each with the app built from the
environment; requests reach every process, tiles are the same bytes whichever answers, the audit
hash chain stays intact while several processes append to it, kept-alive connections spread evenly
over the processes, a process that dies is replaced, and one that cannot start stops the server."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

import imagelib
from imagelib.cli import app as cli
from tests.conftest import DATA, free_port, port_open
from tests.queue_support import wait_for


def log_lines(log: Path) -> list[dict]:
    """The server's JSON log lines written whole so far (a process may be half-way through the last)."""
    text = log.read_text()
    return [json.loads(t) for t in text[: text.rfind("\n") + 1].splitlines() if t.startswith("{")]


def access_pids(log: Path, route: str = "") -> set[int]:
    """Process ids named in the server's JSON access-log lines (of routes containing ``route``)."""
    lines = log_lines(log)
    return {line["pid"] for line in lines if line.get("message") == "request" and route in line["route"]}


def test_two_worker_processes_share_the_port_and_the_audit_chain(home: Path, tmp_path: Path) -> None:
    lib = imagelib.connect()
    version = imagelib.ingest(DATA / "world.rgb.tif", "earth", "rgb", lib=lib)["version"]
    lib.close()
    log = tmp_path / "serve.log"
    with serving(log) as (proc, port):
        base = f"http://127.0.0.1:{port}"
        tile = f"{base}/v1/tiles/{version}_files/9/0_0.png"

        def fetch(_: int) -> bytes:
            with httpx.Client(timeout=60) as client:  # a new connection each time: any process may take it
                answer = client.get(tile)
            assert answer.status_code == 200, answer.text
            return answer.content

        with ThreadPoolExecutor(6) as pool:
            tiles = wait_for(
                lambda: (
                    (got := list(pool.map(fetch, range(24)))) and len(access_pids(log, "_files")) >= 2 and got
                ),
                60,
                "requests answered by both processes",
            )
        assert len(set(tiles)) == 1  # the same bytes whichever process rendered them
        assert access_pids(log, "_files") == worker_pids(proc)
    # left: SIGTERM, and each worker's lifespan flushed its audit writer
    result = CliRunner().invoke(cli, ["audit", "verify", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"], report
    assert report["rows"] >= 24  # every tile read of both processes is in the chain


def serve_command(port: int, workers: int) -> list[str]:
    """``imagelib serve`` on loopback ``port`` with ``workers`` processes."""
    return [sys.executable, "-m", "imagelib", "serve", "--port", str(port), "--workers", str(workers)]


@contextmanager
def serving(log: Path, workers: int = 2) -> Iterator[tuple[subprocess.Popen, int]]:
    """``imagelib serve --workers N`` on a free port, once every process is up; SIGTERM afterwards."""
    port = free_port()
    with log.open("wb") as err:
        proc = subprocess.Popen(
            serve_command(port, workers),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: port_open("127.0.0.1", port, 0.2) or proc.poll() is not None, 90, "imagelib serve")
        wait_for(lambda: every_process_serves(proc, port, log, workers), 90, "every process serving")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def every_process_serves(proc: subprocess.Popen, port: int, log: Path, workers: int) -> bool:
    """``workers`` connections held open at once reach ``workers`` distinct processes."""
    assert proc.poll() is None, log.read_text()[-2000:]
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(workers)]
    try:
        return len({health_pid(conn, log) for conn in conns}) == workers
    finally:
        for conn in conns:
            conn.close()


def worker_pids(proc: subprocess.Popen) -> set[int]:
    """The server processes under ``imagelib serve`` (the multiprocessing helper left out)."""
    try:
        children = psutil.Process(proc.pid).children()
    except psutil.NoSuchProcess:
        return set()
    return {c.pid for c in children if _serves(c)}


def _serves(child: psutil.Process) -> bool:
    """A live server process (not the dead one before it is reaped, nor multiprocessing's tracker)."""
    try:
        return child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline())
    except psutil.Error:
        return False


def health_pid(conn: http.client.HTTPConnection, log: Path) -> int:
    """Send ``/health`` on a kept-alive connection; the pid that logged the request's id."""
    conn.request("GET", "/health")
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 200
    rid = answer.getheader("x-request-id")

    def logged() -> int | None:  # the access line is written once the answer has gone out
        return next((line["pid"] for line in log_lines(log) if line.get("request_id") == rid), None)

    return wait_for(logged, 10, "the request's access line")


def test_kept_alive_connections_spread_evenly(home: Path, tmp_path: Path) -> None:
    """Four connections opened one after another land two on each process, every time: a process
    takes a connection only while it holds no more than the other (a plain shared socket leaves it
    to whichever process wakes first, 3/1 or 4/0 as often as not)."""
    log = tmp_path / "serve.log"
    with serving(log) as (proc, port):
        for _ in range(4):
            conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(4)]
            try:
                pids = [health_pid(c, log) for c in conns]
                # the same connection stays with its process
                assert [health_pid(c, log) for c in conns] == pids
            finally:
                for conn in conns:
                    conn.close()
            assert sorted(Counter(pids).values()) == [2, 2], pids
            assert set(pids) == worker_pids(proc)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_process_is_replaced(home: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """Killed outright or stopped gracefully after serving: either way the server replaces the process
    and goes on (only a process that never served stops the server)."""
    log = tmp_path / "serve.log"
    with serving(log) as (proc, port):
        victim = min(worker_pids(proc))
        os.kill(victim, sig)
        wait_for(lambda: victim not in worker_pids(proc) and len(worker_pids(proc)) == 2, 30, "a replacement")
        # the replacement serves: held connections spread over both processes again
        wait_for(lambda: every_process_serves(proc, port, log, 2), 60, "the replacement serving")
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(2)]
        pids = {health_pid(conn, log) for conn in conns}
        assert pids == worker_pids(proc) and victim not in pids
        assert proc.poll() is None
    assert proc.returncode == 0  # SIGTERM: a clean stop


def test_a_process_that_cannot_start_stops_the_server(home: Path, tmp_path: Path) -> None:
    """A broken app would fail in every replacement: the server exits with uvicorn's start-up failure
    status instead of restarting processes forever."""
    (tmp_path / "a-file").write_text("not a folder")
    # only each process's app opens the catalog, and it cannot create it under a regular file
    env = {**os.environ, "IMAGELIB_HOME": str(tmp_path / "a-file" / "home")}
    log = tmp_path / "serve.log"
    port = free_port()
    with log.open("wb") as err:
        proc = subprocess.run(
            serve_command(port, 2),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            timeout=120,
        )
    assert proc.returncode == 3, log.read_text()[-2000:]
    assert "before it could serve" in log.read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_malformed_limit_is_a_usage_error_before_serving(
    home: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """A limit the app would fail to read stops ``serve`` at once with a coded USAGE error naming the
    variable (exit 2), before any process starts, rather than in every process with status 3."""
    monkeypatch.setenv("IMAGELIB_MAX_UPLOAD_BYTES", "lots")
    result = CliRunner().invoke(cli, ["serve", "--workers", str(workers), "--port", str(free_port())])
    assert result.exit_code == 2, result.output
    assert "IMAGELIB_MAX_UPLOAD_BYTES" in result.output and "lots" in result.output


def test_workers_below_one_is_a_usage_error(home: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--workers", "0"])
    assert result.exit_code == 2, result.output


@pytest.fixture(autouse=True)
def _no_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGELIB_OIDC_ISSUER", raising=False)
