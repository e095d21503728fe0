"""Each filter op against its reference implementation (scipy.ndimage, scipy.fft, scikit-image).

Tolerances: float32 computations are compared with float64 references at ``rtol=1e-5`` of the data's
range (``atol``); median/clip pick input values and are compared exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage import exposure, filters, morphology, restoration

from imagelib.errors import ImagelibError
from imagelib.filters import apply_chain

RNG = np.random.default_rng(1234)


def _smooth(shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Positive, image-like data (smoothed noise plus texture)."""
    base = ndi.gaussian_filter(RNG.random(shape), 2) * scale
    return base + RNG.random(shape) * scale * 0.2 + scale * 0.05


@pytest.fixture(params=["float32", "uint16"])
def image(request: pytest.FixtureRequest) -> np.ndarray:
    """A 2D image, float32 in [0, 1) or uint16 in [0, 4095]."""
    data = _smooth((48, 56), 1.0 if request.param == "float32" else 3500.0)
    return data.astype(request.param)


@pytest.fixture(params=["float32", "uint16"])
def volume(request: pytest.FixtureRequest) -> np.ndarray:
    """A small z,y,x volume."""
    return _smooth((10, 18, 22), 1.0 if request.param == "float32" else 3500.0).astype(request.param)


def close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-5) -> None:
    """float32 result vs float64 reference: tolerance relative to the reference's range."""
    assert actual.shape == expected.shape
    span = float(np.ptp(expected)) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * span)


def f64(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)


# --- local ops -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.0, 2.5, [1.0, 3.0]])
def test_gaussian_2d(image: np.ndarray, sigma: float | list[float]) -> None:
    out = apply_chain(image, [{"op": "gaussian", "sigma": sigma}])
    assert out.dtype == np.float32
    close(out, ndi.gaussian_filter(f64(image), sigma, mode="reflect"))


def test_gaussian_3d_per_axis(volume: np.ndarray) -> None:
    out = apply_chain(volume, [{"op": "gaussian", "sigma": [0.5, 1.5, 2.0]}], dims=("z", "y", "x"))
    close(out, ndi.gaussian_filter(f64(volume), [0.5, 1.5, 2.0], mode="reflect"))


def test_gaussian_band_stack_acts_per_plane() -> None:
    stack = _smooth((3, 30, 34), 1.0).astype(np.float32)
    out = apply_chain(stack, [{"op": "gaussian", "sigma": 2}])  # 3D default dims: band, y, x
    expected = np.stack([ndi.gaussian_filter(f64(p), 2, mode="reflect") for p in stack])
    close(out, expected)


@pytest.mark.parametrize("size", [3, 4, 5])
def test_median_2d(image: np.ndarray, size: int) -> None:
    out = apply_chain(image, [{"op": "median", "size": size}])
    np.testing.assert_array_equal(out, ndi.median_filter(image, size, mode="reflect").astype(np.float32))


def test_median_3d(volume: np.ndarray) -> None:
    out = apply_chain(volume, [{"op": "median", "size": 3}], dims=("z", "y", "x"))
    np.testing.assert_array_equal(out, ndi.median_filter(volume, 3, mode="reflect").astype(np.float32))


def test_unsharp(image: np.ndarray) -> None:
    out = apply_chain(image, [{"op": "unsharp", "sigma": 1.5, "amount": 0.7}])
    x = f64(image)
    close(out, x + 0.7 * (x - ndi.gaussian_filter(x, 1.5, mode="reflect")))


def test_rolling_ball(image: np.ndarray) -> None:
    out = apply_chain(image, [{"op": "background_subtract", "method": "rolling_ball", "radius": 6}])
    x = image.astype(np.float32)
    close(out, f64(x) - restoration.rolling_ball(x, radius=6))


def test_tophat_2d_and_3d(image: np.ndarray, volume: np.ndarray) -> None:
    chain = [{"op": "background_subtract", "method": "tophat", "radius": 3}]
    close(apply_chain(image, chain), ndi.white_tophat(f64(image), footprint=morphology.disk(3)))
    out3 = apply_chain(volume, chain, dims=("z", "y", "x"))
    close(out3, ndi.white_tophat(f64(volume), footprint=morphology.ball(3)))


# --- band ops ------------------------------------------------------------------------------------


def test_band_scale_matches_rescale_intensity(image: np.ndarray) -> None:
    lo, hi = np.percentile(image, [10, 90])
    out = apply_chain(image, [{"op": "band_scale", "in_range": [lo, hi], "out_range": [0, 255]}])
    close(out, exposure.rescale_intensity(f64(image), in_range=(lo, hi), out_range=(0, 255)))


def test_band_scale_without_clip_and_band_selection() -> None:
    stack = _smooth((3, 20, 24), 1000.0).astype(np.uint16)
    chain = [{"op": "band_scale", "in_range": [100, 600], "out_range": [-1, 1], "clip": False, "bands": [2]}]
    out = apply_chain(stack, chain)
    assert out.dtype == np.float32
    close(out[1], (f64(stack[1]) - 100) / 500 * 2 - 1)
    np.testing.assert_array_equal(out[[0, 2]], stack[[0, 2]].astype(np.float32))  # unselected: unchanged


def test_clip(image: np.ndarray) -> None:
    lo, hi = np.percentile(image, [20, 80])
    out = apply_chain(image, [{"op": "clip", "min": lo, "max": hi}])
    np.testing.assert_array_equal(out, np.clip(image.astype(np.float32), np.float32(lo), np.float32(hi)))


def test_gamma_matches_adjust_gamma() -> None:
    x = _smooth((30, 30), 1.0).astype(np.float32)
    out = apply_chain(x, [{"op": "gamma", "gamma": 0.5, "gain": 2.0}])
    close(out, exposure.adjust_gamma(f64(x), gamma=0.5, gain=2.0))


def test_percentile_stretch_per_band() -> None:
    stack = np.stack([_smooth((25, 31), s) for s in (1.0, 50.0)]).astype(np.float32)
    out = apply_chain(stack, [{"op": "percentile_stretch", "low": 5, "high": 95}])
    for b in range(2):
        rng = tuple(np.percentile(stack[b], [5, 95]))
        close(out[b], exposure.rescale_intensity(f64(stack[b]), in_range=rng, out_range=(0, 1)))


def test_band_math_ndvi() -> None:
    stack = _smooth((4, 16, 18), 3000.0).astype(np.uint16)
    out = apply_chain(stack, [{"op": "band_math", "expr": "(b4 - b3) / (b4 + b3)"}])
    nir, red = f64(stack[3]), f64(stack[2])
    assert out.shape == (1, 16, 18) and out.dtype == np.float32
    close(out[0], (nir - red) / (nir + red))


def test_band_math_functions_and_2d_input(image: np.ndarray) -> None:
    out = apply_chain(image, [{"op": "band_math", "expr": "sqrt(abs(b1 - 2)) + maximum(b1, 0.5) ** 2"}])
    x = f64(image)
    assert out.shape == image.shape
    close(out, np.sqrt(np.abs(x - 2)) + np.maximum(x, 0.5) ** 2)


# --- frequency-domain ops ------------------------------------------------------------------------


def _fourier_gaussian(x: np.ndarray, cutoff: float) -> np.ndarray:
    """Gaussian low-pass with frequency sd ``cutoff`` via scipy.ndimage.fourier_gaussian."""
    return np.fft.irfftn(
        ndi.fourier_gaussian(np.fft.rfftn(x), 1 / (2 * np.pi * cutoff), n=x.shape[-1]),
        x.shape,
        axes=list(range(x.ndim)),
    )


def test_fft_gaussian_lowpass_highpass(image: np.ndarray, volume: np.ndarray) -> None:
    for data, dims in ((image, ("y", "x")), (volume, ("z", "y", "x"))):
        x = f64(data)
        low = apply_chain(data, [{"op": "fft_lowpass", "high": 0.08}], dims=dims)
        close(low, _fourier_gaussian(x, 0.08))
        high = apply_chain(data, [{"op": "fft_highpass", "low": 0.08}], dims=dims)
        close(high, x - _fourier_gaussian(x, 0.08))


@pytest.mark.parametrize("order", [1, 3])
def test_fft_butterworth_matches_skimage(image: np.ndarray, order: int) -> None:
    x = f64(image)

    def bw(a: np.ndarray, cutoff: float, high_pass: bool) -> np.ndarray:
        return filters.butterworth(a, cutoff, high_pass=high_pass, order=order, npad=0)

    common = {"kind": "butterworth", "order": order}
    close(apply_chain(image, [{"op": "fft_lowpass", "high": 0.1, **common}]), bw(x, 0.1, False))
    close(apply_chain(image, [{"op": "fft_highpass", "low": 0.1, **common}]), bw(x, 0.1, True))
    band = apply_chain(image, [{"op": "fft_bandpass", "low": 0.05, "high": 0.2, **common}])
    close(band, bw(bw(x, 0.2, False), 0.05, True))  # product of masks == the two filters in turn


def test_fft_gaussian_bandpass(image: np.ndarray) -> None:
    x = f64(image)
    out = apply_chain(image, [{"op": "fft_bandpass", "low": 0.03, "high": 0.15}])
    lowpassed = _fourier_gaussian(x, 0.15)
    close(out, lowpassed - _fourier_gaussian(lowpassed, 0.03))


def test_notch_removes_periodic_noise() -> None:
    y, x = np.mgrid[0:64, 0:64]
    clean = ndi.gaussian_filter(RNG.random((64, 64)), 6)
    stripes = 0.5 * np.cos(2 * np.pi * (0.25 * x + 0.125 * y))
    out = apply_chain((clean + stripes).astype(np.float32), [{"op": "notch", "freqs": [[0.125, 0.25]]}])
    # the clean part has almost no energy near (0.125, 0.25): the result is the clean image
    np.testing.assert_allclose(out, clean, atol=2e-3 * np.ptp(stripes))
    flat = apply_chain(np.full((32, 32), 7.0, np.float32), [{"op": "notch", "freqs": [[0.0, 0.25]]}])
    np.testing.assert_allclose(flat, 7.0, rtol=1e-6)  # DC passes untouched


# --- deconvolution -------------------------------------------------------------------------------


def _gaussian_psf(sigma: float, ndim: int) -> np.ndarray:
    """Reference PSF: size 2⌈3σ⌉+1, normalised (as DESIGN.md specifies)."""
    r = math.ceil(3 * sigma)
    grid = np.meshgrid(*[np.arange(-r, r + 1)] * ndim, indexing="ij")
    psf = np.exp(-sum(g**2 for g in grid) / (2 * sigma**2))
    return psf / psf.sum()


def test_richardson_lucy_matches_skimage(image: np.ndarray) -> None:
    blurred = ndi.gaussian_filter(image.astype(np.float32), 1.5)
    out = apply_chain(
        blurred, [{"op": "richardson_lucy", "psf": {"type": "gaussian", "sigma": 1.5}, "iterations": 8}]
    )
    expected = restoration.richardson_lucy(f64(blurred), _gaussian_psf(1.5, 2), num_iter=8, clip=False)
    close(out, expected, rtol=1e-4)  # 8 float32 iterations vs float64


def test_richardson_lucy_3d_and_array_psf(volume: np.ndarray) -> None:
    psf = RNG.random((3, 5, 5)) + 0.1
    psf /= psf.sum()
    chain = [{"op": "richardson_lucy", "psf": {"type": "array", "values": psf.tolist()}, "iterations": 4}]
    out = apply_chain(volume, chain, dims=("z", "y", "x"))
    close(out, restoration.richardson_lucy(f64(volume), psf, num_iter=4, clip=False), rtol=1e-4)


def test_richardson_lucy_version_psf_uses_resolver(image: np.ndarray) -> None:
    psf = _gaussian_psf(1.0, 2)
    chain = [{"op": "richardson_lucy", "psf": {"type": "version", "id": "v-psf"}, "iterations": 3}]
    asked: list[str] = []
    out = apply_chain(image, chain, psf_resolver=lambda vid: asked.append(vid) or psf)
    assert asked == ["v-psf"]
    close(out, restoration.richardson_lucy(f64(image), psf, num_iter=3, clip=False), rtol=1e-4)
    with pytest.raises(ImagelibError) as err:
        apply_chain(image, chain)
    assert err.value.code == "PSF_UNRESOLVED"


def test_airy_psf_shape() -> None:
    from imagelib.filters.psf import AiryPsf

    psf = AiryPsf(radius=3.0).build(2)
    assert psf.shape == (13, 13) and math.isclose(psf.sum(), 1.0)
    np.testing.assert_allclose(psf, psf.T)
    assert psf[6, 6] == psf.max() and psf[6, 9] < 1e-3 * psf.max()  # first dark ring at 3 px


@pytest.mark.parametrize("dims", [("y", "x"), ("z", "y", "x")])
def test_wiener_matches_skimage(image: np.ndarray, volume: np.ndarray, dims: tuple[str, ...]) -> None:
    data = image if len(dims) == 2 else volume
    psf = _gaussian_psf(1.2, len(dims))
    blurred = ndi.convolve(f64(data), psf, mode="wrap").astype(np.float32)
    out = apply_chain(
        blurred, [{"op": "wiener", "psf": {"type": "gaussian", "sigma": 1.2}, "balance": 0.05}], dims=dims
    )
    close(out, restoration.wiener(f64(blurred), psf, 0.05, clip=False), rtol=1e-4)


# --- dtypes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("uint8", "float32"),
        ("uint16", "float32"),
        ("int32", "float32"),
        ("float32", "float32"),
        ("float64", "float64"),
    ],
)
def test_output_dtype(dtype: str, expected: str) -> None:
    x = (RNG.random((12, 14)) * 100).astype(dtype)
    for chain in ([{"op": "gaussian"}], [{"op": "clip", "max": 50}], [{"op": "fft_lowpass"}]):
        assert apply_chain(x, chain).dtype == np.dtype(expected)
