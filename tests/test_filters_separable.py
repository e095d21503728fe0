"""The OpenCV Gaussian of 2D planes against scipy.ndimage.gaussian_filter (the reference it replaces).

Tolerances: float32 results within 2e-6 of scipy's on data in [0, 1) (float32 rounding of a sum of ≤ 2·(2r+1)
products), float64 within 1e-12; the op falls back to scipy where OpenCV does not apply."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from imagelib.filters import apply_chain, separable
from imagelib.filters.ops_spatial import Gaussian

RNG = np.random.default_rng(7)
TOL = {np.float32: 2e-6, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("shape", "sigma", "truncate"),
    [
        ((266, 266), (1.0, 1.0), 4.0),
        ((300, 211), (1.5, 1.5), 4.0),
        ((64, 97), (0.5, 3.0), 4.0),
        ((40, 40), (2.0, 2.0), 2.5),
        ((9, 30), (5.0, 5.0), 4.0),  # radius 20 > 9 rows: the mirror folds more than once
    ],
)
def test_matches_scipy(
    dtype: type, shape: tuple[int, int], sigma: tuple[float, float], truncate: float
) -> None:
    plane = RNG.random(shape).astype(dtype)
    assert separable.fast_gaussian_ok(plane, sigma)
    fast = separable.fast_gaussian(plane, sigma, truncate)
    ref = ndi.gaussian_filter(plane, sigma, mode="reflect", truncate=truncate)
    assert fast.dtype == plane.dtype and fast.shape == plane.shape
    np.testing.assert_allclose(fast, ref, rtol=0, atol=TOL[dtype])


def test_non_contiguous_input_is_read_correctly() -> None:
    plane = RNG.random((120, 200)).astype(np.float32)[:, ::2]
    fast = separable.fast_gaussian(plane, (1.2, 1.2), 4.0)
    np.testing.assert_allclose(fast, ndi.gaussian_filter(plane, 1.2, mode="reflect"), rtol=0, atol=2e-6)


@pytest.mark.parametrize(
    ("array", "sigma"),
    [
        (np.zeros((50, 50), np.uint8), (1.0, 1.0)),  # integer planes round like scipy: scipy does them
        (np.zeros((4, 50, 50), np.float32), (1.0, 1.0, 1.0)),  # volumes
        (np.zeros((50, 50), np.float32), (0.0, 1.0)),  # σ 0 on an axis skips it in scipy
        (np.zeros((5, 50), np.float32), (1.0, 1.0)),  # too small to pay off
    ],
)
def test_declines_what_it_does_not_cover(array: np.ndarray, sigma: tuple[float, ...]) -> None:
    assert not separable.fast_gaussian_ok(array, sigma)


def test_op_takes_the_fast_path_and_agrees_with_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    plane = RNG.random((3, 130, 140)).astype(np.float32)
    chain = [{"op": "gaussian", "sigma": 1.5}]
    calls: list[tuple[int, ...]] = []
    real = separable.fast_gaussian

    def counting(array: np.ndarray, sigma: tuple[float, float], truncate: float) -> np.ndarray:
        calls.append(array.shape)
        return real(array, sigma, truncate)

    monkeypatch.setattr("imagelib.filters.ops_spatial.fast_gaussian", counting)
    fast = np.asarray(apply_chain(plane, chain, dims=("band", "y", "x")))
    assert calls == [(130, 140)] * 3  # one plane per band
    monkeypatch.setattr(separable, "cv2_module", lambda: None)
    slow = np.asarray(apply_chain(plane, chain, dims=("band", "y", "x")))
    assert len(calls) == 3  # no OpenCV: scipy only
    np.testing.assert_allclose(fast, slow, rtol=0, atol=2e-6)
    ref = np.stack([ndi.gaussian_filter(b, 1.5, mode="reflect") for b in plane])
    np.testing.assert_allclose(slow, ref, rtol=0, atol=0)
    assert Gaussian(sigma=1.5).halo(2) == (6, 6)
