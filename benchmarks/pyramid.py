"""Tile pyramids vs their peers (issues 4 and 12); a script, not a test.

    python benchmarks/pyramid.py [--sizes 8192,16384] [--xyz-size 8192] [--archive-size 8192] [--runs 3]
                                 [--dzi-only | --xyz-only] [--workdir DIR] [--results FILE] [--markdown]
                                 [--load FILE]

Every side is a fresh process run through the CLI a user would type (start-up and imports included),
measured ``runs`` times, interleaved, from the page cache (``common.py``: wall, CPU, process-tree
memory). Inputs are synthetic tiled 3-band uint8 GeoTIFFs (gradients + noise), never committed.

1. DZI at each of ``--sizes`` (tile 254, overlap 1, JPEG Q75 on both sides):
   - export only: ``imagelib tile`` from the stored version (ingested once beforehand, not counted)
     vs ``vips dzsave`` from the raw GeoTIFF (decode included: vips has no separate ingest);
   - end to end, raw file → tiles on disk: ``imagelib ingest`` + ``imagelib tile`` (fresh library every
     run, times added) vs the same ``vips dzsave`` runs;
   - at ``--archive-size``: ``imagelib tile --archive`` (one packed zip) vs one file per tile.
   vips runs as the ``vips`` CLI when installed, else ``dzsave`` through pyvips in a subprocess.
2. XYZ WebMercatorQuad of an ``--xyz-size``² UTM GeoTIFF, nearest-neighbour on both sides, the same
   zoom range, PNG: ``imagelib tile --workers 1`` vs ``gdal2tiles.py -r near --processes=1``, and
   ``--workers <cores>`` vs ``--processes=<cores>``; export only (imagelib from the store; gdal2tiles
   reads the raw file) and end to end (imagelib ingest + tile). Skipped when gdal2tiles is missing.
3. On-the-fly 256² PNG tiles (``render_tile`` in this process, tile cache off): p50/p95 latency with the
   source chunks cold and warm.

Prints JSON (``--results`` also saves it), or README table rows with ``--markdown``; ``--load``
re-prints saved results without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from common import (
    TABLE_HEAD,
    cell,
    combine,
    gdal2tiles_script,
    interleaved,
    machine,
    measure,
    memory_note,
    ratio,
    row,
    warm,
)
from rasterio.transform import from_origin
from rasterio.windows import Window

CLI = [sys.executable, "-m", "imagelib"]
QUALITY = 75  # imagelib's JPEG quality (Encoding default) and vips dzsave's default
VIPS_DZI = """
import sys, pyvips
image = pyvips.Image.new_from_file(sys.argv[1], access="sequential")
image.dzsave(sys.argv[2] + "/img", tile_size=254, overlap=1, suffix=".jpg[Q=%s]" % sys.argv[3])
"""
TARGETS = {
    "dzi_export": "≤ 0.8× vips time; memory ≤ 2× vips",
    "dzi_end_to_end": "≤ 1.2× vips time",
    "dzi_archive": "faster than a file per tile",
    "xyz": "≥ 5× faster at equal processes",
    "on_the_fly": "≤ 15 ms",
}


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
        for top in range(0, size, 1024):
            h = min(1024, size - top)
            y, x = np.mgrid[top : top + h, 0:size]
            base = np.stack([x * 200 // size, y * 200 // size, ((x + y) // 16) % 200]).astype(np.uint8)
            dst.write(base + rng.integers(0, 48, base.shape, dtype=np.uint8), window=Window(0, top, size, h))


class Library:
    """An isolated IMAGELIB_HOME and the CLI commands run against it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "IMAGELIB_HOME": str(home)}
        self.env.pop("IMAGELIB_STORE", None), self.env.pop("IMAGELIB_CATALOG", None)

    def ingest(self, source: Path) -> dict[str, Any]:
        """Measured ``imagelib ingest``; the version is in ``["version"]``."""
        cmd = [*CLI, "ingest", str(source), "--namespace", "bench", "--dataset", source.stem, "--json"]
        result = measure(cmd, self.env)
        result["version"] = json.loads(result["stdout"])["version"]
        return result

    def tile(
        self, version: str, scheme: str, out: Path, workers: int | None = None, archive: bool = False
    ) -> dict[str, Any]:
        """Measured ``imagelib tile``; its JSON result is in ``["result"]``."""
        cmd = [*CLI, "tile", version, "--scheme", scheme, "--out", str(out), "--json"]
        cmd += ["--workers", str(workers)] if workers else []
        cmd += ["--archive"] if archive else []
        result = measure(cmd, self.env)
        result["result"] = json.loads(result["stdout"])
        return result

    def end_to_end(self, source: Path, scheme: str, out: Path, workers: int | None = None) -> dict[str, Any]:
        """Raw file → tiles on disk in a fresh library: ingest, then tile (times added, peaks maxed)."""
        shutil.rmtree(self.home, ignore_errors=True)
        ingest = self.ingest(source)
        export = self.tile(ingest["version"], scheme, out, workers)
        return {**combine([ingest, export]), "ingest_s": ingest["wall_s"], "export_s": export["wall_s"]}

    def ingest_tiles(self, source: Path, out: Path, scheme: str = "dzi") -> dict[str, Any]:
        """Raw file → tiles on disk in a fresh library with one command: ``imagelib ingest --tiles``."""
        shutil.rmtree(self.home, ignore_errors=True)
        cmd = [*CLI, "ingest", str(source), "--namespace", "bench", "--dataset", source.stem]
        return measure([*cmd, "--tiles", scheme, "--out", str(out), "--json"], self.env)


def vips_command(source: Path, out: Path) -> list[str]:
    """``vips dzsave`` with the DZI defaults imagelib uses (CLI if installed, else pyvips)."""
    vips = shutil.which("vips")
    if vips:
        suffix = f".jpg[Q={QUALITY}]"
        return [
            vips,
            "dzsave",
            str(source),
            str(out / "img"),
            "--tile-size=254",
            "--overlap=1",
            f"--suffix={suffix}",
        ]
    return [sys.executable, "-c", VIPS_DZI, str(source), str(out), str(QUALITY)]


def count_files(folder: Path, suffix: str) -> int:
    """Number of tiles written."""
    return sum(1 for _ in folder.rglob(f"*{suffix}"))


def before_each(outputs: dict[str, Path], inputs: list[Path]) -> Callable[[str], None]:
    """Clear the side's output folder and warm the inputs (page cache) before each measurement."""

    def before(side: str) -> None:
        shutil.rmtree(outputs[side], ignore_errors=True)
        outputs[side].mkdir(parents=True)
        warm(*[p for p in inputs if p.exists()])

    return before


def bench_dzi(work: Path, size: int, runs: int, archive: bool) -> dict[str, Any]:
    """imagelib DZI (export only, end to end, packed) vs vips dzsave."""
    source = work / f"rgb{size}.tif"
    make_input(source, size)
    lib, fresh = Library(work / f"home{size}"), Library(work / f"e2e_home{size}")
    version = lib.ingest(source)["version"]
    out = {
        name: work / f"dzi{size}_{name}"
        for name in (
            "imagelib_export",
            "imagelib_end_to_end",
            "imagelib_ingest_tiles",
            "vips_dzsave",
            "imagelib_export_archive",
        )
    }
    sides = {
        "imagelib_export": lambda: lib.tile(version, "dzi", out["imagelib_export"]),
        "imagelib_end_to_end": lambda: fresh.end_to_end(source, "dzi", out["imagelib_end_to_end"]),
        "imagelib_ingest_tiles": lambda: fresh.ingest_tiles(source, out["imagelib_ingest_tiles"]),
        "vips_dzsave": lambda: measure(vips_command(source, out["vips_dzsave"])),
    }
    if archive:
        sides["imagelib_export_archive"] = lambda: lib.tile(
            version, "dzi", out["imagelib_export_archive"], archive=True
        )
    results = interleaved(sides, runs, before_each(out, [source, lib.home / "store"]))
    report: dict[str, Any] = {
        "size": size,
        **results,
        "tiles": {
            "imagelib": count_files(out["imagelib_export"], ".jpg"),
            "vips": count_files(out["vips_dzsave"], ".jpg"),
        },
        "time_ratio_export_vs_vips": ratio(results["imagelib_export"], results["vips_dzsave"]),
        "time_ratio_end_to_end_vs_vips": ratio(results["imagelib_end_to_end"], results["vips_dzsave"]),
        "time_ratio_ingest_tiles_vs_vips": ratio(results["imagelib_ingest_tiles"], results["vips_dzsave"]),
        "memory_ratio_export_vs_vips": round(
            results["imagelib_export"]["peak_pss_mib"]["median"]
            / results["vips_dzsave"]["peak_pss_mib"]["median"],
            2,
        ),
        "version": version,
    }
    if archive:
        packed = next(out["imagelib_export_archive"].glob("*.zip"))
        report["archive_bytes"] = packed.stat().st_size
        report["time_ratio_archive_vs_directory"] = ratio(
            results["imagelib_export_archive"], results["imagelib_export"]
        )
    return report


def gdal2tiles_command(source: Path, out: Path, zooms: str, processes: int) -> list[str]:
    """``gdal2tiles.py --xyz`` with nearest-neighbour resampling, like imagelib's XYZ export."""
    gdal2tiles = gdal2tiles_script()
    assert gdal2tiles
    return [
        "/usr/bin/python3",  # Debian's GDAL bindings, not this virtualenv's interpreter
        gdal2tiles,
        "--xyz",
        "-r",
        "near",
        "-z",
        zooms,
        f"--processes={processes}",
        "-w",
        "none",
        "-q",
        str(source),
        str(out),
    ]


def bench_xyz(work: Path, size: int, runs: int) -> dict[str, Any]:
    """imagelib XYZ vs gdal2tiles.py --xyz -r near at 1 process and at one per core."""
    source = work / f"geo{size}.tif"
    make_input(source, size, seed=1)
    lib, fresh = Library(work / "xyz_home"), Library(work / "xyz_e2e_home")
    version = lib.ingest(source)["version"]
    probe = lib.tile(version, "xyz", work / "xyz_probe")["result"]  # zoom range and tile count (untimed)
    shutil.rmtree(work / "xyz_probe")
    zooms = f"{probe['minzoom']}-{probe['maxzoom']}"
    cores = os.cpu_count() or 1
    report: dict[str, Any] = {"size": size, "zooms": zooms, "cores": cores, "tiles_imagelib": probe["tiles"]}
    out = {
        name: work / f"xyz_{name}"
        for name in (
            "imagelib_w1",
            "gdal2tiles_p1",
            "imagelib_wN",
            "gdal2tiles_pN",
            "imagelib_end_to_end",
            "imagelib_ingest_tiles",
        )
    }
    sides = {
        "imagelib_w1": lambda: lib.tile(version, "xyz", out["imagelib_w1"], workers=1),
        "imagelib_wN": lambda: lib.tile(version, "xyz", out["imagelib_wN"], workers=cores),
        "imagelib_end_to_end": lambda: fresh.end_to_end(source, "xyz", out["imagelib_end_to_end"], cores),
        "imagelib_ingest_tiles": lambda: fresh.ingest_tiles(source, out["imagelib_ingest_tiles"], "xyz"),
    }
    if gdal2tiles_script():
        clean = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}  # no virtualenv leaks in
        sides["gdal2tiles_p1"] = lambda: measure(
            gdal2tiles_command(source, out["gdal2tiles_p1"], zooms, 1), clean
        )
        sides["gdal2tiles_pN"] = lambda: measure(
            gdal2tiles_command(source, out["gdal2tiles_pN"], zooms, cores), clean
        )
    else:
        report["gdal2tiles"] = "skipped: gdal2tiles not installed (apt-get install -y gdal-bin python3-gdal)"
    results = interleaved(sides, runs, before_each(out, [source, lib.home / "store"]))
    report.update(results)
    if "gdal2tiles_p1" in results:
        report["tiles_gdal2tiles"] = count_files(out["gdal2tiles_p1"], ".png")
        report["speedup_1_process"] = round(1 / ratio(results["imagelib_w1"], results["gdal2tiles_p1"]), 2)
        report["speedup_all_cores"] = round(1 / ratio(results["imagelib_wN"], results["gdal2tiles_pN"]), 2)
        report["speedup_end_to_end"] = round(
            1 / ratio(results["imagelib_end_to_end"], results["gdal2tiles_pN"]), 2
        )
        report["speedup_ingest_tiles"] = round(
            1 / ratio(results["imagelib_ingest_tiles"], results["gdal2tiles_pN"]), 2
        )
    return report


def bench_on_the_fly(version: str, home: Path, count: int = 200) -> dict[str, float]:
    """p50/p95 ms of full-resolution 256×256 PNG tiles (tile cache off), chunk cache cold and warm."""
    os.environ["IMAGELIB_HOME"] = str(home)
    os.environ.pop("IMAGELIB_STORE", None), os.environ.pop("IMAGELIB_CATALOG", None)
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
        for col, row_ in tiles:
            start = time.perf_counter()
            render_tile(version, level, col, row_, "png", tile_size=256, overlap=0, cache=None)
            times.append((time.perf_counter() - start) * 1000)
        out[f"{label}_p50_ms"] = round(float(np.percentile(times, 50)), 2)
        out[f"{label}_p95_ms"] = round(float(np.percentile(times, 95)), 2)
    return out


def xyz_rows(report: dict[str, Any]) -> list[str]:
    """README rows of the XYZ and on-the-fly results."""
    lines: list[str] = []
    xyz = report["xyz"]
    what = (
        f"`benchmarks/pyramid.py`: XYZ z{xyz['zooms'].replace('-', '–')} of {xyz['size']}² 3-band UTM "
        f"GeoTIFF, nearest both, PNG ({xyz['tiles_imagelib']} tiles imagelib, "
        f"{xyz.get('tiles_gdal2tiles', '?')} gdal2tiles)"
    )
    if "gdal2tiles_p1" in xyz:
        for procs, ours, peer, speedup in (
            (1, "imagelib_w1", "gdal2tiles_p1", "speedup_1_process"),
            (xyz["cores"], "imagelib_wN", "gdal2tiles_pN", "speedup_all_cores"),
        ):
            lines.append(
                row(
                    f"{what}, {procs} process{'es' if procs > 1 else ''} — imagelib: export only, "
                    f"`--workers {procs}`; gdal2tiles: "
                    f"`-r near --processes={procs}` from the raw file (its whole job)",
                    cell(xyz[ours]),
                    f"`gdal2tiles.py` {cell(xyz[peer])}",
                    f"speed {xyz[speedup]:.2f}× (peer time ÷ ours)",
                    TARGETS["xyz"],
                )
            )
        for ours, speedup, how in (
            ("imagelib_end_to_end", "speedup_end_to_end", "`ingest` + `tile`"),
            (
                "imagelib_ingest_tiles",
                "speedup_ingest_tiles",
                "one `ingest --tiles xyz` run (tiles cut from the levels it wrote, one start-up)",
            ),
        ):
            if ours not in xyz:  # results saved before `ingest --tiles xyz` lack that side
                continue
            lines.append(
                row(
                    f"{what}, raw file → tiles on disk, {xyz['cores']} processes — imagelib: {how}",
                    cell(xyz[ours]),
                    f"`gdal2tiles.py` {cell(xyz['gdal2tiles_pN'])}",
                    f"speed {xyz[speedup]:.2f}× (peer time ÷ ours)",
                    TARGETS["xyz"],
                )
            )
    else:
        lines.append(row(f"{what} vs `gdal2tiles.py`", cell(xyz["imagelib_w1"]), "not installed", "—", ""))
    fly = report.get("on_the_fly_png_256")
    if fly is None:  # --xyz-only
        return lines
    lines.append(
        row(
            "`benchmarks/pyramid.py`: on-the-fly 256² PNG tile (`render_tile`, tile cache off, in process)",
            f"p50 {fly['warm_p50_ms']} ms warm, {fly['cold_p50_ms']} ms cold; "
            f"p95 {fly['warm_p95_ms']} ms warm",
            "—",
            "—",
            TARGETS["on_the_fly"],
        )
    )
    return lines


def markdown(report: dict[str, Any]) -> str:
    """README table rows for these results."""
    lines = list(TABLE_HEAD)
    for dzi in report["dzi"]:
        n = dzi["size"]
        what = f"`benchmarks/pyramid.py`: DZI of {n}² RGB (254/1, JPEG Q75, {dzi['tiles']['imagelib']} tiles)"
        vips = f"`vips dzsave` {cell(dzi['vips_dzsave'])}"
        lines.append(
            row(
                f"{what}, export only — imagelib: start-up + read the stored pyramid + encode + write "
                "(ingest not counted); vips: start-up + decode the raw TIFF + shrink + encode + write",
                cell(dzi["imagelib_export"]),
                vips,
                f"{dzi['time_ratio_export_vs_vips']:.2f}× vips time, "
                f"{dzi['memory_ratio_export_vs_vips']:.1f}× memory",
                TARGETS["dzi_export"],
            )
        )
        e2e = dzi["imagelib_end_to_end"]
        lines.append(
            row(
                f"{what}, raw file → tiles on disk — imagelib: "
                f"`ingest` ({e2e['ingest_s']['median']:.2f} s) + "
                f"`tile` ({e2e['export_s']['median']:.2f} s), two CLI runs, a fresh library each run; "
                "vips: the runs above",
                cell(e2e),
                vips,
                f"{dzi['time_ratio_end_to_end_vs_vips']:.2f}× vips time",
                TARGETS["dzi_end_to_end"],
            )
        )
        if "imagelib_ingest_tiles" in dzi:
            lines.append(
                row(
                    f"{what}, raw file → tiles on disk — imagelib: one `ingest --tiles dzi` run (source "
                    "read once; tiles cut from the levels it wrote), a fresh library each run; "
                    "vips: as above",
                    cell(dzi["imagelib_ingest_tiles"]),
                    vips,
                    f"{dzi['time_ratio_ingest_tiles_vs_vips']:.2f}× vips time",
                    TARGETS["dzi_end_to_end"],
                )
            )
        if "imagelib_export_archive" in dzi:
            lines.append(
                row(
                    f"{what}, export only, one packed zip "
                    f"(`tile --archive`, {dzi['archive_bytes'] / 1e6:.1f} MB) "
                    "vs one file per tile",
                    cell(dzi["imagelib_export_archive"]),
                    f"file per tile {cell(dzi['imagelib_export'])}",
                    f"{dzi['time_ratio_archive_vs_directory']:.2f}× the time",
                    TARGETS["dzi_archive"],
                )
            )
    if "xyz" in report:  # absent with --dzi-only
        lines += xyz_rows(report)
    lines.append("")
    if len(report["dzi"]) > 1:  # the target: export memory flat in the image size
        first, last = report["dzi"][0], report["dzi"][-1]
        a, b = (d["imagelib_export"]["peak_pss_mib"]["median"] for d in (first, last))
        lines.append(
            f"DZI export peak memory from {first['size']}² to {last['size']}²: {a:.0f} → {b:.0f} MiB "
            f"({(b / a - 1) * 100:+.0f} %); vips {first['vips_dzsave']['peak_pss_mib']['median']:.0f} → "
            f"{last['vips_dzsave']['peak_pss_mib']['median']:.0f} MiB."
        )
    lines.append(memory_note(report))
    return "\n".join(lines)


def main() -> None:
    """Run the benchmarks (or load saved results); print JSON or markdown."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--sizes", default="8192,16384", help="DZI input sides (px), comma-separated")
    parser.add_argument("--xyz-size", type=int, default=8192, help="XYZ input side (px)")
    parser.add_argument("--archive-size", type=int, default=8192, help="DZI size also exported packed")
    parser.add_argument("--runs", type=int, default=3, help="measurements per side (median, min–max)")
    parser.add_argument("--dzi-only", action="store_true", help="skip XYZ and on-the-fly (DZI rows only)")
    parser.add_argument("--xyz-only", action="store_true", help="the XYZ rows only (no DZI, no on-the-fly)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--results", type=Path, default=None, help="also save the JSON results here")
    parser.add_argument("--markdown", action="store_true", help="print README table rows instead of JSON")
    parser.add_argument("--load", type=Path, default=None, help="print saved results instead of running")
    args = parser.parse_args()
    if args.load:
        report = json.loads(args.load.read_text())
    else:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="imagelib-pyramid-"))
        work.mkdir(parents=True, exist_ok=True)
        sizes = [int(s) for s in args.sizes.split(",")]
        try:
            dzi = [bench_dzi(work, n, args.runs, n == args.archive_size) for n in sizes if not args.xyz_only]
            report = {
                "benchmark": "pyramid",
                "machine": machine(),
                "runs": args.runs,
                "dzi": dzi,
            }
            if args.xyz_only:
                report["xyz"] = bench_xyz(work, args.xyz_size, args.runs)
            elif not args.dzi_only:
                report["xyz"] = bench_xyz(work, args.xyz_size, args.runs)
                version, home = dzi[-1]["version"], work / f"home{sizes[-1]}"
                report["on_the_fly_png_256"] = bench_on_the_fly(version, home)
        finally:
            if args.workdir is None:
                shutil.rmtree(work, ignore_errors=True)
    if args.results:
        args.results.write_text(json.dumps(report, indent=2))
    print(markdown(report) if args.markdown else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
