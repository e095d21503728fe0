"""Shared fixtures: isolated IMAGELIB_HOME, catalogs on SQLite and PostgreSQL, a moto S3 server.

Real services are used when reachable. When ``IMAGELIB_REQUIRE_SERVICES`` lists a service
(``postgres``, ``rabbitmq``, ``browser``; CI sets all), a missing one fails the tests that need it
instead of skipping them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not DATA.exists():  # CI lays shared/ beside the clone; a checkout may also carry it inside
    DATA = Path(__file__).resolve().parents[1] / "shared" / "data"
MANIFEST: list[dict[str, Any]] = json.loads((DATA / "MANIFEST.json").read_text()) if DATA.exists() else []
PG_ADMIN_URL = os.environ.get("IMAGELIB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def required(service: str) -> bool:
    """True when the environment says this service must be present (CI)."""
    wanted = os.environ.get("IMAGELIB_REQUIRE_SERVICES", "")
    return service in wanted.split(",") or wanted in ("1", "all")


def missing_service(service: str, reason: str) -> None:
    """Skip, or fail when the service is required."""
    if required(service):
        pytest.fail(f"{service} is required (IMAGELIB_REQUIRE_SERVICES) but unavailable: {reason}")
    pytest.skip(f"{service} unavailable: {reason}")


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """A TCP connect check."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


#: one lock file per machine: every checkout and every parallel pytest run share the one test broker
BROKER_LOCK = Path(tempfile.gettempdir()) / "imagelib-test-rabbitmq.lock"


@contextmanager
def broker_lock(exclusive: bool, timeout: float = 900) -> Iterator[None]:
    """Hold the broker lock: shared by RabbitMQ tests, exclusive for a test that restarts the broker, so
    no test (of this run, a parallel run or another checkout) sees a restart it did not cause."""
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    with BROKER_LOCK.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, mode)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the RabbitMQ test lock {BROKER_LOCK} stayed taken for {timeout}s")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _broker_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """RabbitMQ-marked tests share the broker lock; ``broker_restart``-marked ones take it alone."""
    if request.node.get_closest_marker("rabbitmq") is None:
        yield
        return
    with broker_lock(exclusive=request.node.get_closest_marker("broker_restart") is not None):
        yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared sample data folder."""
    if not DATA.exists():
        pytest.fail(f"sample data not found at {DATA}")
    return DATA


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh IMAGELIB_HOME (SQLite catalog, file:// store) for one test."""
    root = tmp_path / "home"
    monkeypatch.setenv("IMAGELIB_HOME", str(root))
    monkeypatch.delenv("IMAGELIB_STORE", raising=False)
    monkeypatch.delenv("IMAGELIB_CATALOG", raising=False)
    return root


def _pg_database() -> Iterator[str]:
    import sqlalchemy as sa

    if not port_open("127.0.0.1", 5432):
        missing_service("postgres", "nothing listens on 127.0.0.1:5432")
    name = f"imagelib_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        missing_service("postgres", str(exc).splitlines()[0])
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_env(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test once on SQLite and once on a fresh PostgreSQL database; yields the catalog URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{home}/catalog.db"
        return
    for url in _pg_database():
        monkeypatch.setenv("IMAGELIB_CATALOG", url)
        yield url


@pytest.fixture
def pg_url(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Only PostgreSQL (a fresh database)."""
    for url in _pg_database():
        monkeypatch.setenv("IMAGELIB_CATALOG", url)
        yield url


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A real HTTP S3 API (moto server) on loopback; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port, 0.2):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("moto server did not start")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_store(moto_server: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """IMAGELIB_STORE on a fresh bucket of the moto server; yields the store URL."""
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_server,
    }.items():
        monkeypatch.setenv(key, value)
    bucket = f"imagelib-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/store"
    monkeypatch.setenv("IMAGELIB_STORE", url)
    return url


def manifest_source(entry: dict[str, Any]) -> str:
    """Path (with #address where the manifest gives one) of a manifest entry."""
    return str(DATA / (entry.get("address") or entry["file"]).rstrip("/"))


def copy_sample(name: str, dest: Path) -> Path:
    """Copy a sample file into ``dest`` (tests may rename or damage the copy)."""
    target = dest / Path(name).name
    source = DATA / name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
    return target
