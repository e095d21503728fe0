"""Stitching fusion memory vs mosaic size: fuse stored tiles into an OME-Zarr multiscale at several sizes.

Run: ``python benchmarks/stitching_fuse.py [--sizes 5000,10000,20000] [--tile 1024] [--overlap 0.1]``.
For each size the tiles (uint16, one Zarr chunk per tile, as a stored tile version is read) are written to
a temporary folder first, outside the measurement; then a fresh subprocess opens them lazily, fuses them
at fractional positions (linear interpolation + linear blending, the defaults) and writes the mosaic with
every pyramid level through imagelib's staging writer. ``benchmarks/common.py`` samples that process
tree: wall time, peak RSS and PSS. The target is a peak that does not grow with the mosaic (< 1 GB at 20k²).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks.common import machine, measure
from imagelib.stitching.layout import Layout

MiB = 2**20


def grid_for(side: int, tile: int, overlap: float) -> int:
    """Tiles per axis so that an n×n grid covers about ``side`` pixels."""
    return max(2, round((side - tile) / (tile * (1 - overlap))) + 1)


def write_tiles(folder: Path, count: int, tile: int) -> None:
    """``count`` noisy uint16 tiles as one Zarr array, a chunk per tile (the content does not matter)."""
    import zarr

    arr = zarr.open_array(
        str(folder / "tiles.zarr"),
        mode="w",
        shape=(count, tile, tile),
        chunks=(1, tile, tile),
        dtype="uint16",
        zarr_format=2,
    )
    rng = np.random.default_rng(0)
    for k in range(count):
        arr[k] = rng.integers(200, 2200, (tile, tile), dtype=np.uint16)


def positions_for(layout: Layout, seed: int = 1) -> np.ndarray:
    """Nominal positions plus a fractional jitter of up to ±3 px, shifted to start at 0."""
    jitter = np.random.default_rng(seed).uniform(-3, 3, layout.positions.shape)
    positions = layout.positions + jitter
    return positions - positions.min(axis=0)


def child(folder: Path, n: int, tile: int, overlap: float) -> None:
    """The measured process: open the tiles lazily, fuse, write the multiscale; print a JSON summary."""
    import dask.array as da
    import psutil
    import zarr

    from imagelib.stitching import fuse
    from imagelib.stitching.tiles import tile_set
    from imagelib.storage import Store
    from imagelib.stored import Staging

    layout = Layout.grid((n, n), (tile, tile), overlap)
    stack = da.from_zarr(zarr.open_array(str(folder / "tiles.zarr"), mode="r"))
    tiles = [stack[k] for k in range(n * n)]
    mosaic = fuse(tile_set(tiles, layout), positions_for(layout))
    baseline = psutil.Process().memory_info().rss  # interpreter + imports + graph, before any pixel
    out = folder / "store"
    with Staging(Store(f"file://{out}")) as staging:
        group, _ = staging.write_levels(mosaic, {"name": "bench/mosaic", "dims": list(mosaic.dims)})
        levels = len(group)
    print(
        json.dumps(
            {
                "mosaic": list(mosaic.shape),
                "tiles": n * n,
                "chunks": int(np.prod(mosaic.data.numblocks)),
                "levels": levels,
                "baseline_rss_mib": round(baseline / MiB, 1),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,10000,20000", help="comma-separated mosaic sides (px)")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=float, default=0.1)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--grid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.grid, args.tile, args.overlap)
        return
    print(f"# machine: {json.dumps(machine())}")
    print("| mosaic | tiles | chunks | wall s | peak RSS MiB | peak PSS MiB | RSS before fusing MiB |")
    print("|---|---|---|---|---|---|---|")
    for side in (int(s) for s in args.sizes.split(",")):
        n = grid_for(side, args.tile, args.overlap)
        with tempfile.TemporaryDirectory(prefix="imagelib-fuse-") as tmp:
            write_tiles(Path(tmp), n * n, args.tile)
            cmd = [sys.executable, __file__, "--child", tmp, "--grid", str(n)]
            run = measure([*cmd, "--tile", str(args.tile), "--overlap", str(args.overlap)])
        doc: dict[str, Any] = json.loads(run["stdout"].strip().splitlines()[-1])
        h, w = doc["mosaic"]
        print(
            f"| {h}×{w} | {doc['tiles']} | {doc['chunks']} | {run['wall_s']:.1f} | {run['peak_rss_mib']:.0f}"
            f" | {run['peak_pss_mib']:.0f} | {doc['baseline_rss_mib']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
