"""Pre-built pyramids rendered by forked worker processes (``imagelib.tiling.forked``): the same files as
the render threads, forked only from a single-threaded process, a child's failure raised in the parent
as the same coded error, and no child left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

import imagelib
from imagelib.errors import ImagelibError, NotFound
from imagelib.tiling.export import tile_version
from imagelib.tiling.forked import can_fork, run_forked

#: the start of a script run in a fresh (single-threaded) interpreter: it counts the processes forked
COUNT_FORKS = """
import json, os, sys
forks, real = [], os.fork
def counting():
    forks.append(1)
    return real()
os.fork = counting
"""
FORK_COUNTING_EXPORT = (
    COUNT_FORKS
    + """
from imagelib.tiling.export import tile_version
archive = sys.argv[5:] == ["archive"]
result = tile_version(sys.argv[1], sys.argv[2], sys.argv[3], workers=int(sys.argv[4]), archive=archive)
print(json.dumps({"forks": len(forks), "tiles": result["tiles"]}))
"""
)


@pytest.fixture
def version(home: Path, tmp_path: Path) -> str:
    """A georeferenced 3-band uint8 image of 700×900 random pixels (several DZI levels, XYZ z0–max)."""
    data = np.random.default_rng(8).integers(0, 256, (3, 700, 900), dtype=np.uint8)
    source = tmp_path / "src.tif"
    profile = {"driver": "GTiff", "width": 900, "height": 700, "count": 3, "dtype": "uint8"}
    with rasterio.open(
        source, "w", **profile, crs="EPSG:32633", transform=from_origin(5e5, 5e6, 30, 30)
    ) as dst:
        dst.write(data)
    return imagelib.ingest(source, "t", "forked")["version"]


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def forked_export(home: Path, version: str, scheme: str, out: Path, workers: int, *extra: str) -> dict:
    env = {**os.environ, "IMAGELIB_HOME": str(home)}
    cmd = [sys.executable, "-c", FORK_COUNTING_EXPORT, version, scheme, str(out), str(workers), *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scheme", ["dzi", "xyz"])
def test_forked_export_writes_the_threads_files(
    home: Path, tmp_path: Path, version: str, scheme: str
) -> None:
    report = forked_export(home, version, scheme, tmp_path / "forked", workers=3)
    assert report["forks"] == 3  # one process per worker: the fork path is the one under test
    tile_version(version, scheme, tmp_path / "threads", workers=1)
    forked, threads = files(tmp_path / "forked"), files(tmp_path / "threads")
    suffix = ".jpg" if scheme == "dzi" else ".png"
    assert report["tiles"] == sum(name.endswith(suffix) for name in forked) > 20
    assert forked.keys() == threads.keys()
    assert [name for name in forked if forked[name] != threads[name]] == []


def test_forked_archive_is_the_threads_archive(home: Path, tmp_path: Path, version: str) -> None:
    """A packed archive takes its tiles in job order: the children spill them, this process replays them;
    the zip is byte for byte the one the render threads write."""
    report = forked_export(home, version, "dzi", tmp_path / "forked", 2, "archive")
    assert report["forks"] == 2
    tile_version(version, "dzi", tmp_path / "threads", workers=1, archive=True)
    forked, threads = files(tmp_path / "forked"), files(tmp_path / "threads")
    assert list(forked) == list(threads) == [f"{version}.zip"]
    assert forked == threads and report["tiles"] > 20


FORK_COUNTING_INGEST = (
    COUNT_FORKS
    + """
from imagelib.ingestion import TileRequest, ingest
result = ingest(sys.argv[1], "t", "forked2", tiles=TileRequest(sys.argv[2], scheme="dzi"), progress=True)
print(len(forks), result["version"])
"""
)


def test_ingest_tiles_forks_after_the_ingest(home: Path, tmp_path: Path, version: str) -> None:
    """``ingest --tiles``: the ingest leaves no thread behind (its progress bars' monitor is stopped, a
    local pyramid is written without zarr-python's I/O threads), so the tiles are cut by processes."""
    env = {**os.environ, "IMAGELIB_HOME": str(tmp_path / "home2")}
    source = str(tmp_path / "src.tif")
    cmd = [sys.executable, "-c", FORK_COUNTING_INGEST, source, str(tmp_path / "cut")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
    forks, cut_version = done.stdout.split()
    cores = os.cpu_count() or 1
    assert int(forks) == (cores if cores > 1 else 0)  # one render process per core (the default)
    assert cut_version == version  # content-addressed: the same source, the same version
    tile_version(version, "dzi", tmp_path / "threads", workers=1)
    assert files(tmp_path / "cut") == files(tmp_path / "threads")


def test_one_worker_never_forks(home: Path, tmp_path: Path, version: str) -> None:
    assert forked_export(home, version, "dzi", tmp_path / "one", workers=1)["forks"] == 0
    assert not can_fork(1)


def test_threads_when_another_thread_runs(
    home: Path, tmp_path: Path, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process with another thread (a notebook kernel, a server) must not fork: the render threads
    write the same files."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert not can_fork(2)

        def no_fork() -> int:
            raise AssertionError("forked beside another thread")

        with monkeypatch.context() as patched:
            patched.setattr(os, "fork", no_fork)
            tile_version(version, "dzi", tmp_path / "threads2", workers=2)
    finally:
        stop.set()
        other.join()
    tile_version(version, "dzi", tmp_path / "threads1", workers=1)
    assert files(tmp_path / "threads2") == files(tmp_path / "threads1")


@pytest.fixture
def forked_pids(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the children run_forked forks (recorded in the parent)."""
    pids: list[int] = []
    real = os.fork

    def recording() -> int:
        pid = real()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recording)
    return pids


def all_reaped(pids: list[int]) -> bool:
    """True when every pid was waited for already (no zombie, nothing running)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        return False
    return bool(pids)


def test_a_childs_coded_error_is_raised_in_the_parent(tmp_path: Path, forked_pids: list[int]) -> None:
    written: list[str] = []

    def render(k: int) -> bytes:
        if k == 37:
            raise NotFound("tile 37 is not there", code="TILE_NOT_FOUND", field="tile", found=[1, 2, 3])
        return b"x"

    def write(rel: str, data: bytes) -> None:
        (tmp_path / rel).write_bytes(data)  # the children write: the parent's list stays empty
        written.append(rel)

    jobs = [(f"{k}.bin", lambda k=k: render(k)) for k in range(100)]
    with pytest.raises(ImagelibError) as caught:
        run_forked(jobs, write, workers=2)
    assert caught.value.code == "TILE_NOT_FOUND" and isinstance(caught.value, NotFound)
    assert (caught.value.message, caught.value.field, caught.value.found) == (
        "tile 37 is not there",
        "tile",
        [1, 2, 3],
    )
    assert written == [] and (tmp_path / "0.bin").exists() and not (tmp_path / "37.bin").exists()
    assert all_reaped(forked_pids)


def test_a_killed_child_is_an_error_not_a_hang(tmp_path: Path, forked_pids: list[int]) -> None:
    def render(k: int) -> bytes:
        if k == 70:
            os.kill(os.getpid(), signal.SIGKILL)
        return b"x"

    jobs = [(f"{k}.bin", lambda k=k: render(k)) for k in range(100)]
    with pytest.raises(ImagelibError, match="status -9") as caught:
        run_forked(jobs, lambda rel, data: (tmp_path / rel).write_bytes(data), workers=2)
    assert caught.value.code == "INTERNAL"
    assert all_reaped(forked_pids)


def test_every_job_is_written_once_and_counted(tmp_path: Path, forked_pids: list[int]) -> None:
    jobs = [(f"{k}.bin", lambda k=k: str(k).encode()) for k in range(203)]  # not a multiple of 16 or 3
    assert run_forked(jobs, lambda rel, data: (tmp_path / rel).write_bytes(data), workers=3) == 203
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        f"{k}.bin": str(k).encode() for k in range(203)
    }
    assert all_reaped(forked_pids)
