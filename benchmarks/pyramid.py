"""Tile pyramids vs their peers, in one run (issue 4); a script, not a test.

    python benchmarks/pyramid.py [--size 16384] [--xyz-size 8192] [--quality 75] [--workdir DIR]

1. DZI of a ``size²`` RGB uint8 image: ``imagelib`` (from the ingested version's stored multiscale) vs
   ``vips dzsave`` (pyvips, from the same GeoTIFF): tile 254, overlap 1, JPEG Q=quality.
2. XYZ WebMercatorQuad of a ``xyz-size²`` 3-band UTM GeoTIFF: ``imagelib`` vs ``gdal2tiles.py --xyz``
   (one process, same zoom range, PNG); skipped with a message when gdal2tiles is missing.
3. On-the-fly 256×256 PNG tiles (``render_tile``, tile cache off): p50/p95 latency with the source
   chunks already decoded (chunk cache warm) and cold.

Each peer runs in its own subprocess after a warm-up read of its input; wall time and peak RSS come
from ``wait4``. Inputs are synthetic (gradients + noise) and never committed. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

IMAGELIB_DZI = """
import sys
from imagelib.tiling.export import tile_version
tile_version(sys.argv[1], "dzi", sys.argv[2], fmt="jpg", name="img")
"""
IMAGELIB_XYZ = """
import sys, json
from imagelib.tiling.export import tile_version
print(json.dumps(tile_version(sys.argv[1], "xyz", sys.argv[2])))
"""
VIPS_DZI = """
import sys, pyvips
image = pyvips.Image.new_from_file(sys.argv[1], access="sequential")
image.dzsave(sys.argv[2] + "/img", tile_size=254, overlap=1, suffix=".jpg[Q=%s]" % sys.argv[3])
"""


def make_input(path: Path, size: int, seed: int = 0) -> None:
    """A tiled 3-band uint8 GeoTIFF (UTM 18N, 30 m): gradients plus noise, written block by block."""
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "crs": "EPSG:32618",
        "transform": from_origin(300000, 2800000, 30, 30),
        "BIGTIFF": "IF_SAFER",
    }
    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 1024):
            h = min(1024, size - row)
            y, x = np.mgrid[row : row + h, 0:size]
            base = np.stack([x * 200 // size, y * 200 // size, ((x + y) // 16) % 200]).astype(np.uint8)
            dst.write(base + rng.integers(0, 48, base.shape, dtype=np.uint8), window=Window(0, row, size, h))


def run(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall seconds and peak RSS (MiB, process tree sampled every 20 ms) of a subprocess.

    (``wait4``'s ru_maxrss would include this parent's RSS inherited across fork/exec.)"""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = [0]
    sampler = threading.Thread(target=_sample_rss, args=(proc.pid, peak), daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {err.decode()[-2000:]}")
    return {"wall_s": round(wall, 3), "peak_rss_mib": round(peak[0] / 2**20, 1), "stdout": out.decode()}


def _sample_rss(pid: int, peak: list[int]) -> None:
    try:
        root = psutil.Process(pid)
        while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
            procs = [root, *root.children(recursive=True)]
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            peak[0] = max(peak[0], total)
            time.sleep(0.02)
    except psutil.Error:
        pass


def warm(path: Path) -> None:
    """Read a file once so every peer starts from the page cache."""
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


def ingest(path: Path, name: str, env: dict[str, str]) -> tuple[str, float]:
    """Ingest in a subprocess; return the version and the seconds it took."""
    code = f"import imagelib, sys; print(imagelib.ingest(sys.argv[1], 'bench', {name!r})['version'])"
    result = run([sys.executable, "-c", code, str(path)], env)
    return result["stdout"].strip().splitlines()[-1], result["wall_s"]


def count_files(folder: Path, suffix: str) -> int:
    """Number of tiles written."""
    return sum(1 for _ in folder.rglob(f"*{suffix}"))


def bench_dzi(work: Path, size: int, quality: int, env: dict[str, str]) -> dict[str, object]:
    """imagelib DZI vs vips dzsave."""
    source = work / f"rgb{size}.tif"
    make_input(source, size)
    version, ingest_s = ingest(source, f"dzi{size}", env)
    warm(source)
    ours = run([sys.executable, "-c", IMAGELIB_DZI, version, str(work / "ours_dzi")], env)
    vips = run([sys.executable, "-c", VIPS_DZI, str(source), str(work / "vips_dzi"), str(quality)], env)
    for r in (ours, vips):
        r.pop("stdout")
    return {
        "size": size,
        "ingest_s": ingest_s,
        "imagelib": ours,
        "vips_dzsave": vips,
        "tiles": {
            "imagelib": count_files(work / "ours_dzi", ".jpg"),
            "vips": count_files(work / "vips_dzi", ".jpg"),
        },
        "wall_ratio": round(ours["wall_s"] / vips["wall_s"], 2),
        "wall_ratio_with_ingest": round((ours["wall_s"] + ingest_s) / vips["wall_s"], 2),
        "version": version,
    }


def bench_xyz(work: Path, size: int, env: dict[str, str]) -> dict[str, object]:
    """imagelib XYZ vs gdal2tiles.py --xyz (one process)."""
    source = work / f"geo{size}.tif"
    make_input(source, size, seed=1)
    version, ingest_s = ingest(source, f"xyz{size}", env)
    ours = run([sys.executable, "-c", IMAGELIB_XYZ, version, str(work / "ours_xyz")], env)
    summary = json.loads(ours.pop("stdout").strip().splitlines()[-1])
    result: dict[str, object] = {
        "size": size,
        "ingest_s": ingest_s,
        "imagelib": ours,
        "zooms": [summary["minzoom"], summary["maxzoom"]],
        "tiles_imagelib": summary["tiles"],
    }
    gdal2tiles = shutil.which("gdal2tiles.py") or shutil.which("gdal2tiles")
    if not gdal2tiles:
        result["gdal2tiles"] = "skipped: gdal2tiles not installed (apt-get install -y gdal-bin python3-gdal)"
        return result
    warm(source)
    zooms = f"{summary['minzoom']}-{summary['maxzoom']}"
    clean = {k: v for k, v in env.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    clean["PATH"] = "/usr/bin:/bin"
    peer = run(
        [
            "/usr/bin/python3",
            gdal2tiles,
            "--xyz",
            "-z",
            zooms,
            "--processes=1",
            "-w",
            "none",
            "-q",
            str(source),
            str(work / "gdal_xyz"),
        ],
        clean,
    )
    peer.pop("stdout")
    result.update(
        gdal2tiles=peer,
        tiles_gdal2tiles=count_files(work / "gdal_xyz", ".png"),
        speedup_vs_gdal2tiles=round(peer["wall_s"] / ours["wall_s"], 2),
    )
    return result


def bench_on_the_fly(version: str, count: int = 200) -> dict[str, float]:
    """p50/p95 ms of full-resolution 256×256 PNG tiles (tile cache off), chunk cache cold and warm."""
    from imagelib.context import current
    from imagelib.tiling.render import render_tile, renderer_for

    renderer = renderer_for(version, style=None)
    grid = renderer.dzi_grid(256, 0)
    level = grid.levels - 1
    cols, rows = grid.tile_counts(level)
    rng = np.random.default_rng(0)
    tiles = [(int(rng.integers(cols)), int(rng.integers(rows))) for _ in range(count)]
    out = {}
    for label in ("cold", "warm"):
        if label == "cold":
            current().clear_caches()  # decoded chunks and opened versions live on the context
        times = []
        for col, row in tiles:
            start = time.perf_counter()
            render_tile(version, level, col, row, "png", tile_size=256, overlap=0, cache=None)
            times.append((time.perf_counter() - start) * 1000)
        out[f"{label}_p50_ms"] = round(float(np.percentile(times, 50)), 2)
        out[f"{label}_p95_ms"] = round(float(np.percentile(times, 95)), 2)
    return out


def main() -> None:
    """Run the three benchmarks and print one JSON document."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=16384, help="DZI input side (px)")
    parser.add_argument("--xyz-size", type=int, default=8192, help="XYZ input side (px)")
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality (both peers)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="imagelib-pyramid-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "IMAGELIB_HOME": str(work / "home")}
    env.pop("IMAGELIB_STORE", None), env.pop("IMAGELIB_CATALOG", None)
    os.environ.update(IMAGELIB_HOME=env["IMAGELIB_HOME"])
    try:
        dzi = bench_dzi(work, args.size, args.quality, env)
        report = {
            "cores": os.cpu_count(),
            "dzi": dzi,
            "xyz": bench_xyz(work, args.xyz_size, env),
            "on_the_fly_png_256": bench_on_the_fly(dzi["version"]),
        }
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
