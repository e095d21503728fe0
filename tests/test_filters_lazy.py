"""Dask and xarray execution: chunked == whole-array for local ops, whole-plane global ops, tiled
overlap-add, and DataArray in → DataArray out."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import xarray as xr

from imagelib.filters import REGISTRY, apply_chain
from imagelib.filters.lazy import overlap_add

RNG = np.random.default_rng(99)
PLANE = (ndi.gaussian_filter(RNG.random((40, 46)), 2) + 0.2 * RNG.random((40, 46))).astype(np.float32)
STACK = np.stack([PLANE, PLANE[::-1] * 2, PLANE[:, ::-1] + 1])
VOLUME = (ndi.gaussian_filter(RNG.random((12, 20, 22)), 1.5) + 0.1).astype(np.float32)
GAUSS_PSF = {"type": "gaussian", "sigma": 1.0}

#: one chain per local/band op; halos range from 0 to 24 px so chunks of 5 are smaller than the halo
LOCAL_CHAINS: dict[str, list[dict[str, Any]]] = {
    "gaussian": [{"op": "gaussian", "sigma": [2.0, 3.0]}],
    "median": [{"op": "median", "size": 4}],
    "unsharp": [{"op": "unsharp", "sigma": 1.5, "amount": 2.0}],
    "background_subtract": [{"op": "background_subtract", "radius": 4}],
    "richardson_lucy": [{"op": "richardson_lucy", "psf": GAUSS_PSF, "iterations": 4}],
    "band_scale": [{"op": "band_scale", "in_range": [0.2, 0.8], "bands": [1]}],
    "clip": [{"op": "clip", "min": 0.3}],
    "gamma": [{"op": "gamma", "gamma": 2.2}],
    "percentile_stretch": [{"op": "percentile_stretch"}],
    "band_math": [{"op": "band_math", "expr": "(b1 - 0.5) * 2"}],
}
CHUNKS = [(16, 16), (5, 7), (40, 13), (11, 46)]


def test_every_local_op_is_covered() -> None:
    local = {name for name, cls in REGISTRY.items() if cls.scope != "global"}
    assert local == set(LOCAL_CHAINS)


def assert_same(chunked: np.ndarray, whole: np.ndarray) -> None:
    # float32 rounding: RL's FFT convolution rounds by block size, and the OpenCV Gaussian
    # (filters.separable) rounds a pixel's sum a few ulp differently near a chunk edge than in the middle,
    # which percentile_stretch and band_math then scale up; a halo or offset bug is off by far more
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5 * float(np.abs(whole).max()))


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("name", sorted(LOCAL_CHAINS))
def test_local_ops_chunked_equal_whole_2d(name: str, chunks: tuple[int, int]) -> None:
    chain = LOCAL_CHAINS[name]
    lazy = apply_chain(da.from_array(PLANE, chunks=chunks), chain)
    assert isinstance(lazy, da.Array)
    assert_same(lazy.compute(), apply_chain(PLANE, chain))


@pytest.mark.parametrize("chunks", [(1, 9, 9), (2, 40, 6), (3, 20, 23)])
def test_band_stack_chunked_equal_whole(chunks: tuple[int, ...]) -> None:
    chain = [
        {"op": "band_scale", "in_range": [0, 2], "bands": [2]},
        {"op": "gaussian", "sigma": 1.5},
        {"op": "median", "size": 3},
        {"op": "percentile_stretch", "bands": [1, 3]},
        {"op": "band_math", "expr": "b1 * b2 - b3"},
        {"op": "unsharp", "sigma": 1.0},
    ]
    lazy = apply_chain(da.from_array(STACK, chunks=chunks), chain)
    assert lazy.shape == (1, 40, 46)
    assert_same(lazy.compute(), apply_chain(STACK, chain))


@pytest.mark.parametrize("chunks", [(4, 7, 7), (12, 20, 5), (3, 3, 3)])
def test_3d_chunked_equal_whole(chunks: tuple[int, int, int]) -> None:
    chain = [{"op": "gaussian", "sigma": [0.5, 1.0, 2.0]}, {"op": "median", "size": 3}, {"op": "unsharp"}]
    dims = ("z", "y", "x")
    lazy = apply_chain(da.from_array(VOLUME, chunks=chunks), chain, dims=dims)
    assert_same(lazy.compute(), apply_chain(VOLUME, chain, dims=dims))


GLOBAL_CHAINS = [
    [{"op": "fft_lowpass", "high": 0.1}],
    [{"op": "fft_highpass", "low": 0.05, "kind": "butterworth"}],
    [{"op": "fft_bandpass", "low": 0.02, "high": 0.2}],
    [{"op": "notch", "freqs": [[0.0, 0.25]]}],
    [{"op": "wiener", "psf": GAUSS_PSF}],
]


@pytest.mark.parametrize("chain", GLOBAL_CHAINS, ids=lambda c: c[0]["op"])
def test_global_ops_whole_plane_when_within_budget(chain: list[dict[str, Any]]) -> None:
    lazy = apply_chain(da.from_array(STACK, chunks=(1, 10, 10)), chain)
    np.testing.assert_allclose(lazy.compute(), apply_chain(STACK, chain), rtol=0, atol=1e-6)


def test_overlap_add_is_a_partition_of_unity() -> None:
    arr = da.from_array(STACK, chunks=(1, 13, 17))
    same = overlap_add(arr, lambda b: b, core={1: 12, 2: 14}, depth={1: 4, 2: 5}).compute()
    np.testing.assert_allclose(same, STACK, atol=1e-6)
    doubled = overlap_add(arr, lambda b: b * 2, core={1: 9, 2: 46}, depth={1: 3, 2: 0}).compute()
    np.testing.assert_allclose(doubled, STACK * 2, atol=1e-6)


def test_global_op_tiled_beyond_budget_approximates_whole() -> None:
    big = ndi.gaussian_filter(RNG.random((192, 200)), 3).astype(np.float32)
    chain = [{"op": "fft_lowpass", "high": 0.08}]
    tiled = apply_chain(da.from_array(big, chunks=64), chain, memory_budget=48 * 80 * 80).compute()
    whole = apply_chain(big, chain)
    inner = (slice(32, -32), slice(32, -32))  # the plane's periodic wrap only matters near its edges
    rel = np.sqrt(np.mean((tiled - whole)[inner] ** 2)) / np.sqrt(np.mean(whole[inner] ** 2))
    assert rel < 1e-3


def test_dataarray_in_dataarray_out() -> None:
    coords = {"band": ["r", "g", "b"], "y": np.arange(40) * 0.5, "x": np.arange(46) * 0.5}
    arr = xr.DataArray(STACK, dims=("band", "y", "x"), coords=coords, attrs={"crs": "EPSG:32633"}, name="img")
    out = apply_chain(arr, [{"op": "gaussian", "sigma": 1}])
    assert isinstance(out, xr.DataArray) and out.dims == arr.dims and out.name == "img"
    assert out.attrs == {"crs": "EPSG:32633"}
    assert list(out.band.values) == ["r", "g", "b"] and np.array_equal(out.x, arr.x)
    np.testing.assert_array_equal(out.values, apply_chain(STACK, [{"op": "gaussian", "sigma": 1}]))
    ratio = apply_chain(arr, [{"op": "band_math", "expr": "b1 / b2"}])
    assert ratio.shape == (1, 40, 46) and "band" not in ratio.coords and ratio.attrs == arr.attrs


def test_lazy_dataarray_stays_lazy_and_uses_its_dims() -> None:
    arr = xr.DataArray(da.from_array(VOLUME, chunks=(6, 10, 11)), dims=("z", "y", "x"), attrs={"unit": "um"})
    out = apply_chain(arr, [{"op": "gaussian", "sigma": [1, 2, 2]}])  # 3 sigmas: z,y,x acted on in 3D
    assert isinstance(out.data, da.Array) and out.attrs == {"unit": "um"}
    expected = ndi.gaussian_filter(VOLUME, [1, 2, 2], mode="reflect")
    np.testing.assert_allclose(out.values, expected, atol=1e-6)


def test_bare_array_dims_keyword() -> None:
    as_volume = apply_chain(VOLUME, [{"op": "gaussian", "sigma": 1}], dims=("z", "y", "x"))
    as_bands = apply_chain(VOLUME, [{"op": "gaussian", "sigma": 1}])  # default for 3D: band,y,x
    np.testing.assert_allclose(as_volume, ndi.gaussian_filter(VOLUME, 1, mode="reflect"), atol=1e-6)
    np.testing.assert_allclose(as_bands[3], ndi.gaussian_filter(VOLUME[3], 1, mode="reflect"), atol=1e-6)
