"""Filter throughput: imagelib ``apply_chain`` vs calling scipy/skimage directly, and Dask speed-up.

Run: ``python benchmarks/filters.py [--size 4096] [--chunk 1024] [--repeat 3]``. Prints MPix/s per op,
the overhead ratio imagelib/direct (target ≤ 1.1×) and the chunked-Dask speed-up on this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.fft
import scipy.ndimage as ndi
from skimage import morphology, restoration

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from imagelib.filters import apply_chain
from imagelib.filters.psf import GaussianPsf

Direct = Callable[[np.ndarray], Any]


def _lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    spectrum = ndi.fourier_gaussian(scipy.fft.rfftn(x), 1 / (2 * np.pi * cutoff), n=x.shape[-1])
    return scipy.fft.irfftn(spectrum, s=x.shape)


def _band_scale(x: np.ndarray) -> np.ndarray:
    return np.clip((x.astype(np.float64) - 0.1) / 0.8, 0, 1).astype(np.float32)


PSF = GaussianPsf(sigma=1.5).build(2)
#: name -> (chain, the same computation called directly, run over Dask too?)
CASES: dict[str, tuple[list[dict[str, Any]], Direct, bool]] = {
    "gaussian": ([{"op": "gaussian", "sigma": 2}], lambda x: ndi.gaussian_filter(x, 2, mode="reflect"), True),
    "median": ([{"op": "median", "size": 3}], lambda x: ndi.median_filter(x, 3, mode="reflect"), True),
    "unsharp": (
        [{"op": "unsharp", "sigma": 2}],
        lambda x: x + (x - ndi.gaussian_filter(x, 2, mode="reflect")),
        True,
    ),
    "tophat": (
        [{"op": "background_subtract", "method": "tophat", "radius": 3}],
        lambda x: ndi.white_tophat(x, footprint=morphology.disk(3)),
        True,
    ),
    "band_scale": ([{"op": "band_scale", "in_range": [0.1, 0.9]}], _band_scale, True),
    "fft_lowpass": ([{"op": "fft_lowpass", "high": 0.05}], lambda x: _lowpass(x, 0.05), False),
    "wiener": (
        [{"op": "wiener", "psf": {"type": "gaussian", "sigma": 1.5}}],
        lambda x: restoration.wiener(x, PSF, 0.1, clip=False),
        False,
    ),
    "richardson_lucy": (
        [{"op": "richardson_lucy", "psf": {"type": "gaussian", "sigma": 1.5}, "iterations": 5}],
        lambda x: restoration.richardson_lucy(x, PSF, num_iter=5, clip=False),
        True,
    ),
}


WIDTHS = (16, 14, 16, 10, 13, 10)


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """Fastest wall time of ``repeat`` runs, seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Run every case and print one table row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="image side in pixels (float32, square)")
    parser.add_argument("--chunk", type=int, default=1024, help="Dask chunk side")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    parser.add_argument("--ops", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    image = (ndi.gaussian_filter(rng.random((args.size, args.size), dtype=np.float32), 2) + 0.01).astype(
        np.float32
    )
    mpix = args.size**2 / 1e6
    cores = os.cpu_count() or 1
    print(
        f"image {args.size}x{args.size} float32 ({mpix:.1f} MPix), dask chunks {args.chunk}², {cores} cores"
    )
    header = ("op", "direct MPix/s", "imagelib MPix/s", "overhead", "dask MPix/s", "speed-up")
    print(f"{header[0]:<16}" + "".join(f"{h:>{w}}" for h, w in zip(header[1:], WIDTHS[1:], strict=True)))
    lazy = da.from_array(image, chunks=args.chunk)
    for name in args.ops:
        chain, direct, over_dask = CASES[name]
        t_direct = best_of(lambda d=direct: d(image), args.repeat)
        t_lib = best_of(lambda c=chain: apply_chain(image, c, backend="numpy"), args.repeat)
        row = f"{name:<16}{mpix / t_direct:>14.1f}{mpix / t_lib:>16.1f}{t_lib / t_direct:>9.2f}×"
        if over_dask:
            with dask.config.set(scheduler="threads", num_workers=cores):
                t_dask = best_of(lambda c=chain: apply_chain(lazy, c, backend="numpy").compute(), args.repeat)
            row += f"{mpix / t_dask:>13.1f}{t_lib / t_dask:>9.2f}×"
        print(row, flush=True)


if __name__ == "__main__":
    main()
