"""Shared benchmark helpers: run a command while sampling its whole process tree's memory, repeat
interleaved runs and summarise them (median, min–max), and print README table rows.

Every side of a comparison is a fresh subprocess measured the same way:
- wall time from ``Popen`` to exit (so it includes interpreter start-up and imports);
- CPU time (user + system) from ``wait4``, which counts the process and its reaped children;
- peak memory by sampling the process and all its descendants with psutil: the sum of RSS every 20 ms,
  and the sum of PSS (shared pages split between the processes mapping them, so forked workers are not
  counted twice) every 200 ms, as PSS is costly to read;
- dirty pages flushed (``sync``) before each measurement, untimed, so no side pays for writing back
  the previous side's output, and (where the benchmark may: root) the page cache emptied before the
  side's program (one untimed run, see :func:`warm_program`) and inputs are warmed, so every side starts
  from the same cache, holding its program and inputs only: with the cache full of earlier outputs,
  every writer pays for evicting them (an ingest took 5.0–5.3 s instead of 3.9–4.3 s on the same code).
- ``wait4``'s ``ru_maxrss`` is not used: it carries the parent's footprint across fork/exec (a parent
  holding 400 MiB made ``sha256sum`` "use" 426 MiB).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

SAMPLE_S = 0.02
TREE_EVERY = 10  # the tree and its PSS every 0.2 s
MiB = 2**20


def _pss(proc: psutil.Process) -> int:
    """Proportional set size of one process (RSS where smaps_rollup is unavailable)."""
    try:
        with open(f"/proc/{proc.pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return proc.memory_info().rss


def _sample(pid: int, peak: dict[str, int], stop: threading.Event) -> None:
    """Track the peak summed RSS and PSS of ``pid`` and its descendants until it exits.

    RSS (``/proc/<pid>/statm``, cheap) every ``SAMPLE_S``; the process tree and PSS every
    ``TREE_EVERY`` samples: listing every process and walking ``smaps_rollup`` 50 times a second took a
    sizeable share of 2 cores and held the measured process's ``mmap_lock`` against its own page
    faults, which added ~1 s (20 %) to a 5 s multi-threaded ingest and nothing to single-threaded
    ``sha256sum``."""
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    procs: list[psutil.Process] = [root]
    for tick in itertools.count():
        if stop.is_set():
            break
        if tick % TREE_EVERY == 0:
            with contextlib.suppress(psutil.Error):
                procs = [root, *root.children(recursive=True)]
            pss = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    pss += _pss(proc)
            peak["pss"] = max(peak["pss"], pss)
        rss = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                rss += proc.memory_info().rss
        peak["rss"] = max(peak["rss"], rss)
        stop.wait(SAMPLE_S)


def measure(cmd: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` once: ``wall_s``, ``cpu_s``, ``peak_rss_mib``, ``peak_pss_mib`` and its ``stdout``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env)
        peak = {"rss": 0, "pss": 0}
        stop = threading.Event()
        sampler = threading.Thread(target=_sample, args=(proc.pid, peak, stop), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        detail = (stdout[-2000:] + "\n" + stderr[-2000:]).strip()
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed ({proc.returncode}): {detail}")
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mib": round(peak["rss"] / MiB, 1),
        "peak_pss_mib": round(peak["pss"] / MiB, 1),
        "stdout": stdout,
    }


def combine(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Steps run one after the other (e.g. ingest, then export) as one run: times add, memory peaks max."""
    return {
        "wall_s": round(sum(p["wall_s"] for p in parts), 3),
        "cpu_s": round(sum(p["cpu_s"] for p in parts), 3),
        "peak_rss_mib": max(p["peak_rss_mib"] for p in parts),
        "peak_pss_mib": max(p["peak_pss_mib"] for p in parts),
    }


def stats(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per metric median/min/max over runs, plus the raw runs."""
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]  # also e.g. ingest_s, export_s
    clean = [{k: r[k] for k in keys} for r in runs]
    return {**{k: stats([r[k] for r in clean]) for k in keys}, "runs": clean}


def interleaved(
    sides: dict[str, Callable[[], dict[str, Any]]],
    runs: int,
    before: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run each side ``runs`` times, alternating A, B, A, B… so drift in machine load hits every side
    alike; ``before(side)`` (e.g. warming the page cache, clearing outputs) runs before each measurement.

    Dirty pages are flushed (``sync``, untimed) before each measurement: otherwise the kernel writes the
    previous side's output back (gigabytes for an ingest or a COG) while the next side runs, and the
    next side pays for it. No side waits for its own writes to reach the disk (none calls fsync)."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for _ in range(runs):
        for name, side in sides.items():
            drop_page_cache()
            warm_program(name)
            if before:
                before(name)
            os.sync()
            results[name].append(side())
    return {name: summarise(r) for name, r in results.items()}


DROP_CACHES = Path("/proc/sys/vm/drop_caches")

#: imagelib's program: the modules its CLI commands load (readers, writers, tiles, codecs)
IMAGELIB_MODULES = (
    "import cv2, imagecodecs, imagelib.cli, imagelib.ingestion, imagelib.tiling.export, imagelib.tiling.xyz; "
    "from imagelib.formats.registry import readers; readers()"
)


def gdal2tiles_script() -> str | None:
    """Debian's ``gdal2tiles.py`` (run with Debian's ``/usr/bin/python3`` and its GDAL bindings, not this
    virtualenv's), or None when it is not installed."""
    system = "/usr/bin:/bin"
    return shutil.which("gdal2tiles.py", path=system) or shutil.which("gdal2tiles", path=system)


def program_of(side: str) -> list[str] | None:
    """A cheap run of a side's program (by the side's name), loading the same libraries as the real run."""
    if side.startswith("imagelib"):
        return [sys.executable, "-c", IMAGELIB_MODULES]
    if side.startswith("gdal2tiles"):
        script = gdal2tiles_script()
        return ["/usr/bin/python3", script, "--version"] if script else None
    programs = {
        "sha256sum": ["sha256sum", "/dev/null"],
        "vips": ["vips", "--version"],
        "gdal_translate": ["gdal_translate", "--version"],
    }
    return next((cmd for prefix, cmd in programs.items() if side.startswith(prefix)), None)


def warm_program(side: str) -> None:
    """Run the side's program once, untimed, after the page cache was emptied: its libraries are read
    back from disk here, not inside the measurement, as on a machine where the tool is in use (its
    inputs are warmed by the benchmark, its outputs start cold). From a cold cache, ``imagelib tile``
    of an 8192² version took 1.89 and 2.40 s against 1.68 and 1.66 s warm, ``vips dzsave`` 1.76 and
    1.80 s against 1.68 and 1.44 s: the cold start of imagelib's Python stack (NumPy, Dask, xarray,
    zarr, rasterio, SQLAlchemy) costs more than vips' and measures the disk, not the tool."""
    cmd = program_of(side)
    if cmd and shutil.which(cmd[0]):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=300)


def drop_page_cache() -> bool:
    """Write back and empty the page cache (needs root; False, doing nothing, otherwise)."""
    os.sync()
    try:
        DROP_CACHES.write_text("3\n")
    except OSError:
        return False
    return True


def warm(*paths: Path) -> None:
    """Read files (or every file under folders) once so each side starts from the page cache."""
    for path in paths:
        for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
            with file.open("rb") as fh:
                while fh.read(1 << 24):
                    pass


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including the load when the run started."""
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "page_cache_dropped": os.access(DROP_CACHES, os.W_OK),
    }


def cell(summary: dict[str, Any] | None, memory: str = "peak_pss_mib") -> str:
    """``"11.2 s (10.9–11.5), 459 MiB"``: median wall (min–max over runs), median peak memory."""
    if not summary:
        return "not run"
    wall, mib = summary["wall_s"], summary[memory]["median"]
    digits = 0 if mib >= 10 else 1
    return f"{wall['median']:.2f} s ({wall['min']:.2f}–{wall['max']:.2f}), {mib:.{digits}f} MiB"


def ratio(ours: dict[str, Any] | None, peer: dict[str, Any] | None) -> float | None:
    """Median wall time of ours ÷ the peer's (< 1: imagelib is faster)."""
    if not ours or not peer:
        return None
    return round(ours["wall_s"]["median"] / peer["wall_s"]["median"], 3)


def row(*cells: object) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


TABLE_HEAD = [
    row("benchmark (what each side includes)", "imagelib", "peer", "ratio", "target"),
    row("---", "---", "---", "---", "---"),
]
MEMORY_NOTE = (
    "Times: median of {runs} interleaved runs (min–max). Memory: median over runs of the peak summed PSS "
    "of the whole process tree, sampled every 200 ms (RSS every 20 ms); dirty pages flushed (sync) before "
    "each measurement{cache}. Every side is a fresh process (start-up included). "
    "Machine: {cores} cores, {memory_gib} GiB, load average {loadavg_at_start} at the start."
)


def memory_note(report: dict[str, Any]) -> str:
    """The footer under a results table: how times and memory were taken, and on what."""
    machine = report["machine"]
    cache = (
        ", and the page cache emptied before each side's program (one untimed run) and inputs were warmed"
        if machine.get("page_cache_dropped")
        else ""
    )
    return MEMORY_NOTE.format(runs=report["runs"], cache=cache, **machine)
