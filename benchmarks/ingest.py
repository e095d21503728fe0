"""Ingest throughput and peak memory vs ``sha256sum`` and ``gdal_translate -of COG`` on the same file.

    python benchmarks/ingest.py [--sizes 16000[,32000]] [--bands 3] [--layout tiled|striped] [--runs 3]
                                [--workdir DIR] [--results FILE] [--markdown] [--load FILE]

For each size, generates a uint8 GeoTIFF of ``size × size × bands`` (tiled in 512² blocks as a COG, or
striped; never committed), then measures, interleaved, ``runs`` times each (``common.py`` says how):

- ``sha256sum FILE``: start-up + read + hash — the floor for anything that must read every byte;
- ``imagelib ingest FILE`` (the CLI, fresh ``IMAGELIB_HOME`` every run so nothing is deduplicated):
  start-up + imports + validation read-through + hashing + storing the original and the multiscale
  pyramid + catalog record;
- ``gdal_translate -of COG`` (LZW, all cores) when installed: start-up + read + a compressed COG with
  overviews;
- ``python -m imagelib --help``: the CLI's start-up alone, for reference.

Each run starts from the page cache (the input is read once before it). Prints JSON (``--results``
also saves it), or README table rows with ``--markdown``; ``--load`` re-prints saved results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from common import TABLE_HEAD, cell, interleaved, machine, measure, memory_note, ratio, row, warm
from rasterio.transform import from_origin
from rasterio.windows import Window

TARGETS = {
    "sha256sum": "throughput ≥ 0.6× (tiled 16000²); RSS < 600 MB, within 10 % from 16000² to 32000²",
    "gdal_translate": "≥ 2× faster",
}


def make_input(path: Path, size: int, bands: int, noise_bits: int = 5, layout: str = "striped") -> None:
    """Write a synthetic GeoTIFF (striped, or tiled in 512² blocks) strip by strip (memory stays flat).

    A ramp plus 5 bits of noise, which LZ4 cannot compress (ratio 1.0) — like natural-colour imagery
    (shared/data world.rgb.tif 1.01×, cogeo.tif 1.09×; hillshades reach 16×): the store's worst case.
    """
    rng = np.random.default_rng(0)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 5000000, 1, 1),
        "BIGTIFF": "IF_SAFER",
    }
    if layout == "tiled":
        profile.update(tiled=True, blockxsize=512, blockysize=512)
    ramp = (np.arange(size, dtype=np.uint32) % 251).astype(np.uint8)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 1024):
            h = min(1024, size - top)
            block = np.broadcast_to(ramp, (bands, h, size)).copy()
            block += (np.arange(top, top + h, dtype=np.uint32) % 7).astype(np.uint8)[None, :, None]
            block += rng.integers(0, 1 << noise_bits, block.shape, dtype=np.uint8)
            dst.write(block, window=Window(0, top, size, h))


def run_all(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Measure every side at every size; return the results document."""
    sizes = [int(s) for s in args.sizes.split(",")]
    return {
        "benchmark": "ingest",
        "machine": machine(),
        "runs": args.runs,
        "sizes": [run_size(args, work, size) for size in sizes],
    }


def run_size(args: argparse.Namespace, work: Path, size: int) -> dict[str, Any]:
    """Measure every side on one generated input."""
    src = work / f"input-{size}-{args.layout}-noise{args.noise_bits}.tif"
    if not src.exists():
        make_input(src, size, args.bands, args.noise_bits, args.layout)
    size_mb = src.stat().st_size / 1e6
    home = work / "home"
    cog = work / "out-cog.tif"
    env = {**os.environ, "IMAGELIB_HOME": str(home)}
    env.pop("IMAGELIB_STORE", None), env.pop("IMAGELIB_CATALOG", None)
    imagelib = [sys.executable, "-m", "imagelib"]
    ingest = [*imagelib, "ingest", str(src), "--namespace", "bench", "--dataset", "ingest", "--json"]
    sides = {
        "sha256sum": lambda: measure(["sha256sum", str(src)]),
        "imagelib_ingest": lambda: measure(ingest, env),
        "imagelib_startup": lambda: measure([*imagelib, "--help"], env),
    }
    gdal_translate = shutil.which("gdal_translate")
    if gdal_translate:
        cog_cmd = [gdal_translate, "-q", "-of", "COG", "-co", "COMPRESS=LZW", "-co", "NUM_THREADS=ALL_CPUS"]
        cog_cmd += ["-co", "BIGTIFF=IF_SAFER"]  # a 32000² LZW COG passes 4 GiB mid-write without it
        sides["gdal_translate_cog"] = lambda: measure([*cog_cmd, str(src), str(cog)])

    def before(_side: str) -> None:
        shutil.rmtree(home, ignore_errors=True)  # a re-ingest would be deduplicated (nothing written)
        cog.unlink(missing_ok=True)
        warm(src)

    results = interleaved(sides, args.runs, before)
    ours = results["imagelib_ingest"]
    for side in results.values():
        side["MB_per_s"] = round(size_mb / side["wall_s"]["median"], 1)
    report: dict[str, Any] = {
        "input": {
            "shape": [args.bands, size, size],
            "dtype": "uint8",
            "layout": args.layout,
            "MB": round(size_mb, 1),
        },
        **results,
        # sha256sum's time ÷ ours: the fraction of sha256sum's throughput that ingest reaches
        "throughput_ratio_vs_sha256sum": round(1 / ratio(ours, results["sha256sum"]), 3),
    }
    if not gdal_translate:
        report["gdal_translate_cog"] = "skipped: gdal_translate not installed (apt-get install gdal-bin)"
    else:
        report["speedup_vs_gdal_translate"] = round(1 / ratio(ours, results["gdal_translate_cog"]), 2)
    return report


def markdown(report: dict[str, Any]) -> str:
    """README table rows for these results (+ how peak memory changes with the input size)."""
    lines = list(TABLE_HEAD)
    for one in report["sizes"]:
        lines += size_rows(one)
    lines.append("")
    sizes = report["sizes"]
    if len(sizes) > 1:
        first, last = (s["imagelib_ingest"]["peak_pss_mib"]["median"] for s in (sizes[0], sizes[-1]))
        change = (last / first - 1) * 100
        lines.append(
            f"imagelib ingest peak memory from {sizes[0]['input']['shape'][1]}² to "
            f"{sizes[-1]['input']['shape'][1]}²: {first:.0f} → {last:.0f} MiB ({change:+.0f} %)."
        )
    lines.append(memory_note(report))
    return "\n".join(lines)


def size_rows(report: dict[str, Any]) -> list[str]:
    """The rows of one input size."""
    inp = report["input"]
    bands, size = inp["shape"][0], inp["shape"][1]
    what = f"`benchmarks/ingest.py`: {size}²×{bands} uint8 {inp['layout']} GeoTIFF ({inp['MB']:.0f} MB)"
    ours = report["imagelib_ingest"]
    lines = [
        row(
            f"{what}; imagelib: CLI start-up ({report['imagelib_startup']['wall_s']['median']:.2f} s) + "
            "validate + hash + store + pyramid + catalog; peer: start-up + read + hash",
            cell(ours),
            f"`sha256sum` {cell(report['sha256sum'])}",
            f"throughput {report['throughput_ratio_vs_sha256sum']:.2f}× sha256sum",
            TARGETS["sha256sum"],
        ),
    ]
    if isinstance(report.get("gdal_translate_cog"), dict):
        lines.append(
            row(
                f"{what}; imagelib as above; peer: start-up + read + LZW COG with overviews, all cores",
                cell(ours),
                f"`gdal_translate -of COG` {cell(report['gdal_translate_cog'])}",
                f"speed {report['speedup_vs_gdal_translate']:.2f}× (peer time ÷ ours)",
                TARGETS["gdal_translate"],
            )
        )
    else:
        lines.append(row(f"{what} vs `gdal_translate -of COG`", "—", "not installed", "—", ""))
    return lines


def main() -> None:
    """Parse options, run (or load) the benchmark, print JSON or markdown."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--sizes", default="16000", help="input sides (px), e.g. 16000,32000 (memory flat?)")
    parser.add_argument("--bands", type=int, default=3)
    parser.add_argument("--layout", choices=["tiled", "striped"], default="tiled")
    parser.add_argument("--noise-bits", type=int, default=5, help="0-8: 5 is LZ4-incompressible, 1 not")
    parser.add_argument("--runs", type=int, default=3, help="measurements per side (median, min–max)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None, help="also save the JSON results here")
    parser.add_argument("--markdown", action="store_true", help="print README table rows instead of JSON")
    parser.add_argument("--load", type=Path, default=None, help="print saved results instead of running")
    args = parser.parse_args()
    if args.load:
        report = json.loads(args.load.read_text())
    else:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="imagelib-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            report = run_all(args, work)
        finally:
            if args.workdir is None:
                shutil.rmtree(work, ignore_errors=True)
    if args.results:
        args.results.write_text(json.dumps(report, indent=2))
    print(markdown(report) if args.markdown else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
