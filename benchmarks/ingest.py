"""Ingest throughput and peak memory vs ``sha256sum`` on the same file, in one run.

    python benchmarks/ingest.py [--size 20000] [--bands 3] [--workdir DIR]

Generates a striped uint8 GeoTIFF of ``size × size × bands`` (never committed), then times
``sha256sum FILE`` and ``imagelib ingest FILE`` (fresh IMAGELIB_HOME, subprocess, peak RSS from
``wait4``), each after a warm-up read so both start from the page cache. Prints a JSON summary with the
throughput ratio (imagelib MB/s ÷ sha256sum MB/s; the target is ≥ 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window


def make_input(path: Path, size: int, bands: int, noise_bits: int = 5) -> None:
    """Write a synthetic GeoTIFF strip by strip (memory stays flat).

    A ramp plus 5 bits of noise, which LZ4 cannot compress (ratio 1.0) — like natural-colour imagery
    (shared/data world.rgb.tif 1.01×, cogeo.tif 1.09×; hillshades reach 16×): the store's worst case.
    """
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 5000000, 1, 1),
        "BIGTIFF": "IF_SAFER",
    }
    ramp = (np.arange(size, dtype=np.uint32) % 251).astype(np.uint8)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 1024):
            h = min(1024, size - row)
            block = np.broadcast_to(ramp, (bands, h, size)).copy()
            block += (np.arange(row, row + h, dtype=np.uint32) % 7).astype(np.uint8)[None, :, None]
            block += rng.integers(0, 1 << noise_bits, block.shape, dtype=np.uint8)
            dst.write(block, window=Window(0, row, size, h))


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a command; return (wall seconds, peak RSS MiB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed: {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--bands", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--noise-bits", type=int, default=5, help="0-8; 5 is LZ4-incompressible, 1 compresses"
    )
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="imagelib-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"input-{args.size}-noise{args.noise_bits}.tif"
    if not src.exists():
        make_input(src, args.size, args.bands, args.noise_bits)
    size_mb = src.stat().st_size / 1e6
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    sha_wall, sha_rss, _ = timed(["sha256sum", str(src)])
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "IMAGELIB_HOME": str(home)}
    env.pop("IMAGELIB_STORE", None)
    env.pop("IMAGELIB_CATALOG", None)
    cmd = [
        sys.executable,
        "-m",
        "imagelib",
        "ingest",
        str(src),
        "--namespace",
        "bench",
        "--dataset",
        "ingest",
        "--json",
    ]
    ing_wall, ing_rss, out = timed(cmd, env)
    result = {
        "input": {"shape": [args.bands, args.size, args.size], "dtype": "uint8", "MB": round(size_mb, 1)},
        "cores": os.cpu_count(),
        "sha256sum": {
            "seconds": round(sha_wall, 2),
            "MB_per_s": round(size_mb / sha_wall, 1),
            "peak_rss_MiB": round(sha_rss),
        },
        "imagelib_ingest": {
            "seconds": round(ing_wall, 2),
            "MB_per_s": round(size_mb / ing_wall, 1),
            "peak_rss_MiB": round(ing_rss),
            "version": json.loads(out)["version"],
        },
        "throughput_ratio_vs_sha256sum": round(sha_wall / ing_wall, 3),
    }
    print(json.dumps(result, indent=2))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
