"""The HTTP service under load: tile latency/throughput with ``wrk`` and a 1 GB upload vs ``sha256sum``.

    python benchmarks/service.py [--size 8192] [--duration 5] [--connections 4] [--workers 1]
                                 [--upload-mb 1024]

Needs ``wrk`` (``apt-get install wrk``) and ``curl``. Ingests a synthetic ``size²`` RGB GeoTIFF into a
fresh IMAGELIB_HOME, starts ``imagelib serve`` (local queue, no issuer, JSON access log on), then:

* warms the chunk cache by fetching every tile of the top DZI levels once as PNG, then each chain once
  (its first tile pays a one-off per chain and server process: the p2/p98 stretch of the chain's output,
  reported as ``chain_first_s``); with ``--workers`` > 1, a wrk pass over the PNG keys warms every process;
* ``plain`` / ``chain3``: wrk walks those tiles as JPEG and WebP (keys the tile cache has not seen, so each
  request renders: chunks cached, tile not), without and with a 3-op chain (band_scale, gaussian, gamma);
* ``cached``: one tile again and again (tile cache hits); ``revalidate``: one tile with ``If-None-Match``
  (304s);
* ``upload``: ``curl -F file=@…`` of ``upload-mb`` random bytes to ``POST /v1/uploads`` (202 once streamed;
  the ingest then fails fast on the non-raster bytes) vs ``sha256sum`` of the same file, with the server's
  peak RSS sampled during the upload.

Each scenario also reports ``cpu_ms``: server CPU time (all its processes) per request, the figure that
stays comparable on a machine shared with other work, and the load average is recorded before and after.

Prints one JSON document. Targets (issue 9): chain3 p50 ≤ 15 ms, p99 ≤ 60 ms, ≥ 300 tiles/s on 2 cores;
upload throughput ≥ 0.5× sha256sum, server peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import make_input  # the shared synthetic-input writer of the ingest benchmark

CHAINS = [
    [
        {"op": "band_scale", "in_range": [0, 255], "out_range": [0, 1]},
        {"op": "gaussian", "sigma": sigma},
        {"op": "gamma", "gamma": 0.8},
    ]
    for sigma in (1.0, 1.5)
]
WRK_SCRIPT = """
local paths, i = {}, 0
for line in io.lines("%s") do paths[#paths + 1] = line end
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i], %s)
end
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], log: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """``imagelib serve`` on a free port; returns the process and its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagelib", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"imagelib serve did not start; see {log}")


def dzi_tiles(base: str, version: str, levels: int) -> list[tuple[int, int, int]]:
    """(level, col, row) of every tile of the top ``levels`` DZI levels."""
    text = httpx.get(f"{base}/v1/tiles/{version}.dzi").text
    width = int(re.search(r'Width="(\d+)"', text).group(1))
    height = int(re.search(r'Height="(\d+)"', text).group(1))
    top = (max(width, height) - 1).bit_length()
    out = []
    for level in range(top, top - levels, -1):
        shrink = 2 ** (top - level)
        level_w, level_h = -(-width // shrink), -(-height // shrink)
        cols, rows = -(-level_w // 254), -(-level_h // 254)
        out += [(level, c, r) for r in range(rows) for c in range(cols)]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (the ``--workers`` processes)."""
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def wrk(
    base: str,
    paths: list[str],
    seconds: int,
    connections: int,
    workdir: Path,
    headers: str = "nil",
    pid: int | None = None,
) -> dict:
    """Run wrk over ``paths`` (cycled); return p50/p90/p99 ms, requests/s, requests, distinct paths and
    (given the server's ``pid``) its CPU ms per request."""
    listing = workdir / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = workdir / "walk.lua"
    script.write_text(WRK_SCRIPT % (listing, headers))
    cpu = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu if pid else 0.0
    percent = dict(re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    extra = {"cpu_ms": round(cpu * 1000 / requests, 2) if pid and requests else None}
    return {
        **extra,
        "p50_ms": _ms(percent["50"]),
        "p90_ms": _ms(percent["90"]),
        "p99_ms": _ms(percent["99"]),
        "per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": requests,
        "distinct": len(paths),
        "errors": int(errors.group(1)) if errors else 0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit], 2)


def upload(base: str, path: Path, pid: int) -> dict[str, Any]:
    """curl the file to /v1/uploads while sampling the server's RSS; compare with sha256sum."""
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # both start from page cache
    start = time.perf_counter()
    subprocess.run(["sha256sum", str(path)], stdout=subprocess.DEVNULL, check=True)
    sha_s = time.perf_counter() - start
    server = psutil.Process(pid)
    peak, done = [server.memory_info().rss], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(server.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    status = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-F",
            "namespace=bench",
            "-F",
            "dataset=upload",
            "-F",
            f"file=@{path}",
            f"{base}/v1/uploads",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    upload_s = time.perf_counter() - start
    done.set()
    sampler.join()
    size = path.stat().st_size
    return {
        "status": int(status),
        "bytes": size,
        "upload_s": round(upload_s, 2),
        "sha256sum_s": round(sha_s, 2),
        "upload_MBps": round(size / upload_s / 1e6, 1),
        "sha256sum_MBps": round(size / sha_s / 1e6, 1),
        "ratio": round(sha_s / upload_s, 2),
        "server_rss_start_MiB": round(peak[0] / 2**20),
        "server_rss_peak_MiB": round(max(peak) / 2**20),
    }


def upload_case(env: dict[str, str], workdir: Path, megabytes: int) -> dict[str, Any]:
    """A fresh server (RSS without tile caches) and a ``megabytes`` upload of random bytes."""
    big = workdir / "upload.bin"
    with big.open("wb") as f:
        for _ in range(megabytes):
            f.write(os.urandom(2**20))
    proc, base = start_server(env, workdir / "serve-upload.log")  # a fresh server: RSS without tile caches
    try:
        return upload(base, big, proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        big.unlink()


def main() -> None:
    """Run every scenario and print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="imagelib serve --workers")
    parser.add_argument("--upload-mb", type=int, default=1024, help="0 skips the upload case")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    for tool in ("wrk", "curl", "sha256sum"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (apt-get install {tool})")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="imagelib-service-"))
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELIB_")}
    env.update(IMAGELIB_HOME=str(home), IMAGELIB_QUEUE="local")
    source = workdir / "scene.tif"
    make_input(source, args.size, 3)
    ingest = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagelib",
            "ingest",
            str(source),
            "--namespace",
            "bench",
            "--dataset",
            "tiles",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    version = json.loads(ingest.stdout)["version"]
    load_before = os.getloadavg()
    proc, base = start_server(env, workdir / "serve.log", args.workers)
    try:
        tiles = dzi_tiles(base, version, 3)
        queries = [urllib.parse.quote(json.dumps(chain, separators=(",", ":"))) for chain in CHAINS]
        first: list[float] = []
        with httpx.Client(base_url=base, timeout=300) as client:
            for level, col, row in tiles:  # chunk cache warm-up (PNG keys are not used below)
                client.get(f"/v1/tiles/{version}_files/{level}/{col}_{row}.png")
            for query in queries:  # each chain's one-off (its output's p2/p98 stretch)
                start = time.perf_counter()
                client.get(f"/v1/tiles/{version}_files/{tiles[0][0]}/0_0.png?chain={query}")
                first.append(round(time.perf_counter() - start, 2))
        paths = {
            fmt: [f"/v1/tiles/{version}_files/{lv}/{c}_{r}.{fmt}" for lv, c, r in tiles]
            for fmt in ("jpg", "png", "webp")
        }
        if args.workers > 1:  # the sequential pass warmed whichever process took each request
            warm = paths["png"] + [f"{p}?chain={q}" for q in queries for p in paths["png"]]
            # a new connection per request: each is accepted by whichever process is free, so every
            # process sees the keys (kept-alive connections would stay with the process they first met)
            close = "{['Connection'] = 'close'}"
            wrk(base, warm, max(10, 2 * args.duration), args.connections, workdir, headers=close)
        plain = paths["jpg"] + paths["webp"]
        chained = [f"{p}?chain={q}" for q in queries for p in paths["jpg"]]
        one = paths["jpg"][0]
        tag = httpx.get(base + one).headers["etag"]
        run = {"seconds": args.duration, "connections": args.connections, "workdir": workdir, "pid": proc.pid}
        results = {
            "chain_first_s": first,
            "plain": wrk(base, plain, **run),
            "chain3": wrk(base, chained, **run),
            "cached": wrk(base, [one], **run),
            "revalidate": wrk(base, [one], headers=f"{{['If-None-Match'] = '{tag}'}}", **run),
        }
    finally:
        proc.terminate()
        proc.wait(30)
    if args.upload_mb > 0:
        results["upload"] = upload_case(env, workdir, args.upload_mb)
    print(
        json.dumps(
            {
                "size": args.size,
                "cpus": os.cpu_count(),
                "connections": args.connections,
                "workers": args.workers,
                "loadavg_before": [round(v, 2) for v in load_before],
                "loadavg_after": [round(v, 2) for v in os.getloadavg()],
                **results,
            },
            indent=2,
        )
    )
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
