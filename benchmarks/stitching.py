"""Stitching: imagelib ``register`` vs m2stitch and ASHLAR on the same synthetic tiles, plus fusion.

Run: ``python benchmarks/stitching.py [--grid 10] [--tile 1024] [--overlap 0.1] [--jitter 12]
[--3d]``. Needs the ``bench`` extra (``pip install -e .[bench]``: m2stitch, ashlar);
a missing anchor is reported, not fatal. Prints, per method, wall time, peak RSS above the start of the
step, and the RMS/max position error (px) against the known truth after removing the free translation.
Fusion memory against mosaic size (5k², 10k², 20k²) is measured by ``benchmarks/stitching_fuse.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from imagelib.stitching import Layout, fuse, register
from imagelib.stitching.synthetic import cut, rms_error, textured_field
from imagelib.stitching.tiles import tile_set


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 10 ms by a thread."""

    def __enter__(self) -> PeakRSS:
        self.proc = psutil.Process()
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def run_imagelib(tiles: list[np.ndarray], layout: Layout, max_shift: float) -> np.ndarray:
    return register(tiles, layout, max_shift=max_shift).positions


def run_m2stitch(tiles: list[np.ndarray], layout: Layout, max_shift: float) -> np.ndarray:
    import m2stitch

    step = layout.positions[layout.positions > 0].min()
    index = np.rint(layout.positions / step).astype(int)
    # m2stitch's default ncc_threshold (0.5), and even 0.1, finds no starting pair on these tiles (10 %
    # overlap, vignetting, noise); its error message says to lower it.
    result, _ = m2stitch.stitch_images(
        np.asarray(tiles),
        rows=list(index[:, 0]),
        cols=list(index[:, 1]),
        row_col_transpose=False,
        ncc_threshold=0.01,
    )
    return result[["y_pos", "x_pos"]].to_numpy(dtype=float)


def run_ashlar(tiles: list[np.ndarray], layout: Layout, max_shift: float, sigma: float = 0.0) -> np.ndarray:
    from ashlar import reg

    class Metadata(reg.Metadata):
        """In-memory tiles at their nominal positions; 1 µm pixels so µm shifts are pixels."""

        _num_images = len(tiles)
        num_channels = 1
        pixel_size = 1.0
        pixel_dtype = tiles[0].dtype

        def tile_position(self, i: int) -> np.ndarray:
            return layout.positions[i]

        def tile_size(self, i: int) -> np.ndarray:
            return np.array(tiles[i].shape)

    class Reader(reg.Reader):
        metadata = Metadata()

        def read(self, series: int, c: int) -> np.ndarray:
            return tiles[series]

    aligner = reg.EdgeAligner(
        Reader(), channel=0, max_shift=max_shift, filter_sigma=sigma, do_make_thumbnail=False
    )
    aligner.run()
    return np.asarray(aligner.positions, dtype=float)


def measure(name: str, fn: Callable[[], np.ndarray], truth: np.ndarray) -> dict[str, Any]:
    """Run one registration; a failing or missing anchor is reported with its error."""
    try:
        with PeakRSS() as probe:
            positions = fn()
    except Exception as exc:  # an anchor that cannot run here is a result, not a crash
        return {"method": name, "error": f"{type(exc).__name__}: {exc}"[:200]}
    rms, worst = rms_error(positions, truth)
    return {"method": name, "wall_s": probe.wall, "peak_mib": probe.mib, "rms_px": rms, "max_px": worst}


def fuse_to_zarr(tiles: list[Any], layout: Layout, positions: np.ndarray) -> dict[str, Any]:
    """Fuse lazily and write the OME-Zarr multiscale through imagelib's staging writer."""
    from imagelib.storage import Store
    from imagelib.stored import Staging

    mosaic = fuse(tile_set(tiles, layout), positions)
    with tempfile.TemporaryDirectory() as tmp, PeakRSS() as probe, Staging(Store(f"file://{tmp}")) as staging:
        staging.write_levels(mosaic, {"name": "bench/mosaic", "dims": list(mosaic.dims)})
    return {"mosaic": list(mosaic.shape), "wall_s": probe.wall, "peak_mib": probe.mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=10)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--overlap", type=float, default=0.1)
    parser.add_argument("--jitter", type=float, default=12.0)
    parser.add_argument("--max-shift", type=float, default=30.0)
    parser.add_argument("--skip", default="", help="comma-separated methods to skip (m2stitch,ashlar)")
    parser.add_argument("--3d", dest="three_d", action="store_true", help="also time a 2×3×3 3D register")
    args = parser.parse_args()

    layout = Layout.grid((args.grid, args.grid), (args.tile, args.tile), args.overlap)
    field = textured_field(np.array(layout.mosaic_shape()) + 4 * args.jitter + 40, seed=1)
    m = cut(field, layout, jitter=args.jitter, seed=2)
    print(
        f"# {args.grid}x{args.grid} tiles of {args.tile}², {args.overlap:.0%} overlap,",
        f"jitter ±{args.jitter} px",
    )
    print(f"# machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    methods: dict[str, Callable[..., np.ndarray]] = {
        "imagelib": run_imagelib,
        "m2stitch": run_m2stitch,
        "ashlar": run_ashlar,
        "ashlar-sigma1": lambda *a: run_ashlar(*a, sigma=1.0),  # ASHLAR's own pre-filter for noisy tiles
    }
    skip = set(filter(None, args.skip.split(",")))
    rows = []
    for name, fn in methods.items():
        if name in skip:
            continue
        row = measure(name, lambda fn=fn: fn(m.tiles, layout, args.max_shift), m.truth)
        rows.append(row)
        print(_line(row), flush=True)
    if not any(r["method"] == "imagelib" and "error" in r for r in rows):
        reg = register(m.tiles, layout, max_shift=args.max_shift)
        print("fuse", fuse_to_zarr(m.tiles, layout, reg.positions), flush=True)
    if args.three_d:
        lay3 = Layout.grid((2, 3, 3), (64, 160, 160), 0.1)
        m3 = cut(textured_field(np.array(lay3.mosaic_shape()) + 60, seed=4), lay3, jitter=(4, 8, 8), seed=5)
        row = measure(
            "imagelib-3d", lambda: register(m3.tiles, lay3, max_shift=(8, 16, 16)).positions, m3.truth
        )
        print(_line(row), flush=True)


def _line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['method']:>12}: not run ({row['error']})"
    return (
        f"{row['method']:>12}: wall {row['wall_s']:7.2f} s  peak +{row['peak_mib']:7.1f} MiB  "
        f"RMS {row['rms_px']:.3f} px  max {row['max_px']:.3f} px"
    )


if __name__ == "__main__":
    main()
