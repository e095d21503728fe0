"""Array backend selection; CuPy paths run only where CuPy imports and a CUDA device exists."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

from imagelib import backend
from imagelib.errors import ImagelibError
from imagelib.filters import apply_chain

GPU_REASON = "needs CuPy and a CUDA device (pip install imagelib[gpu] on a GPU machine)"
needs_gpu = pytest.mark.skipif(not backend.cuda_available(), reason=GPU_REASON)


def test_numpy_backend() -> None:
    a = np.arange(6.0)
    assert backend.get_xp(a) is np
    assert backend.array_module("numpy") is np
    assert backend.select_backend("numpy") is np
    assert backend.ndimage_for(np) is scipy.ndimage
    assert backend.fft_for(np) is scipy.fft
    assert backend.to_numpy(a) is a
    assert backend.to_numpy([1, 2]).tolist() == [1, 2]


def test_unknown_backend_is_coded() -> None:
    with pytest.raises(ImagelibError) as err:
        backend.select_backend("tpu")
    assert err.value.code == "BACKEND_UNAVAILABLE"


@pytest.mark.skipif(backend.cuda_available(), reason="checks the CPU-only behaviour")
def test_auto_without_gpu_is_numpy_and_cupy_is_refused() -> None:
    assert backend.select_backend("auto") is np
    with pytest.raises(ImagelibError) as err:
        backend.select_backend("cupy")
    assert err.value.code == "BACKEND_UNAVAILABLE"


@pytest.mark.gpu
@needs_gpu
def test_cupy_modules() -> None:
    import cupy
    import cupyx.scipy.ndimage

    assert backend.select_backend("auto") is cupy
    a = cupy.arange(4.0)
    assert backend.get_xp(a) is cupy and backend.ndimage_for(cupy) is cupyx.scipy.ndimage
    assert isinstance(backend.to_numpy(a), np.ndarray)


GPU_CHAINS: list[list[dict[str, Any]]] = [
    [{"op": "gaussian", "sigma": 2}],
    [{"op": "median", "size": 5}],
    [{"op": "unsharp", "sigma": 1.5}],
    [{"op": "background_subtract", "method": "tophat", "radius": 3}],
    [{"op": "background_subtract", "radius": 5}],
    [{"op": "band_scale", "in_range": [0.1, 0.9]}, {"op": "gamma", "gamma": 0.8}, {"op": "clip", "max": 0.7}],
    [{"op": "percentile_stretch"}],
    [{"op": "band_math", "expr": "sqrt(b1) * 2 - b1"}],
    [{"op": "fft_bandpass", "low": 0.02, "high": 0.2, "kind": "butterworth"}],
    [{"op": "notch", "freqs": [[0.1, 0.2]]}],
    [{"op": "wiener", "psf": {"type": "gaussian", "sigma": 1.0}}],
    [{"op": "richardson_lucy", "psf": {"type": "airy", "radius": 2.0}, "iterations": 5}],
]


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("chain", GPU_CHAINS, ids=lambda c: c[0]["op"])
def test_cupy_equals_numpy(chain: list[dict[str, Any]]) -> None:
    import cupy
    import dask.array as da

    x = np.random.default_rng(3).random((64, 72)).astype(np.float32)
    on_cpu = apply_chain(x, chain, backend="numpy")
    on_gpu = apply_chain(cupy.asarray(x), chain, backend="cupy")
    assert isinstance(on_gpu, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(on_gpu), on_cpu, rtol=1e-4, atol=1e-5)
    lazy = apply_chain(da.from_array(x, chunks=24), chain, backend="cupy").compute()
    np.testing.assert_allclose(lazy, on_cpu, rtol=1e-4, atol=1e-5)


def test_gpu_cluster_without_device_is_a_coded_error() -> None:
    from imagelib.backend import cuda_available, gpu_cluster

    if cuda_available():
        pytest.skip("a CUDA device is present: the error path does not apply")
    with pytest.raises(ImagelibError) as info:
        gpu_cluster()
    assert info.value.code == "BACKEND_UNAVAILABLE"
