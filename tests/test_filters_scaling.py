"""``scale_chain``: spatial parameters in full-resolution pixels, rescaled for a level ``factor`` times
smaller; factor 1 changes nothing; what cannot be rescaled faithfully comes back as a note. Checked
against the ops' own definitions (a gaussian blur of a downsampled image, FFT masks on a shrunk grid)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from imagelib.filters import REGISTRY, apply_chain, canonical_chain
from imagelib.filters.ops_fft import lowpass
from imagelib.filters.scaling import RESCALERS, scale_chain

EVERY_OP = [
    {"op": "band_scale", "in_range": [0, 255], "out_range": [0, 1]},
    {"op": "gaussian", "sigma": [2, 4]},
    {"op": "median", "size": 5},
    {"op": "unsharp", "sigma": 3, "amount": 0.5},
    {"op": "background_subtract", "radius": 20, "method": "tophat"},
    {"op": "fft_lowpass", "high": 0.05},
    {"op": "fft_highpass", "low": 0.02},
    {"op": "fft_bandpass", "low": 0.01, "high": 0.2},
    {"op": "notch", "freqs": [[0.0, 0.1], [0.2, 0.2]], "width": 0.01},
    {"op": "wiener", "psf": {"type": "gaussian", "sigma": 2.0}},
    {"op": "richardson_lucy", "psf": {"type": "airy", "radius": 4.0}, "iterations": 3},
    {"op": "gamma", "gamma": 0.8},
]


def test_every_spatial_op_has_a_rescaler() -> None:
    """An op with a neighbourhood (local/global scope) must say how its parameters scale."""
    spatial = {name for name, cls in REGISTRY.items() if cls.scope != "band"}
    assert spatial == set(RESCALERS)


def test_factor_one_is_the_chain_itself() -> None:
    assert scale_chain(EVERY_OP, 1) == (canonical_chain(EVERY_OP), [])


def test_parameters_at_half_and_eighth_scale() -> None:
    half, notes = scale_chain(EVERY_OP, 2)
    by_op = {op["op"]: op for op in half}
    assert by_op["gaussian"]["sigma"] == [1.0, 2.0] and by_op["unsharp"]["sigma"] == 1.5
    assert by_op["unsharp"]["amount"] == 0.5  # not a length
    assert by_op["median"]["size"] == 3  # 2.5 level pixels → the nearest odd window
    assert by_op["background_subtract"]["radius"] == 10
    assert by_op["fft_lowpass"]["high"] == 0.1 and by_op["fft_highpass"]["low"] == 0.04
    assert (by_op["fft_bandpass"]["low"], by_op["fft_bandpass"]["high"]) == (0.02, 0.4)
    assert by_op["notch"]["freqs"] == [[0.0, 0.2], [0.4, 0.4]] and by_op["notch"]["width"] == 0.02
    assert by_op["wiener"]["psf"]["sigma"] == 1.0 and by_op["richardson_lucy"]["psf"]["radius"] == 2.0
    assert by_op["band_scale"] == canonical_chain([EVERY_OP[0]])[0]
    assert any(n.startswith("median: size 5 -> [3]") for n in notes)
    assert any(n.startswith("richardson_lucy: deconvolution approximated") for n in notes)
    eighth, notes = scale_chain(EVERY_OP, 8)
    by_op = {op["op"]: op for op in eighth}
    assert "median" not in by_op and "wiener" not in by_op  # 5/8 px window, 0.25 px PSF: skipped
    assert "notch" not in by_op  # 0.8 and 1.6 cycles/level px: above Nyquist, both dropped
    assert by_op["fft_lowpass"]["high"] == 0.4
    # the bandpass's upper edge (1.6 cycles/level px) passes everything: its highpass part is left
    assert [op["low"] for op in eighth if op["op"] == "fft_highpass"] == [0.16, 0.08]
    assert "fft_bandpass" not in by_op
    assert by_op["richardson_lucy"]["psf"]["radius"] == 0.5
    assert "median: size 5 < 1.5 level pixels at 1/8 scale, skipped" in notes
    assert "notch: 2 notch(es) above Nyquist dropped" in notes
    assert all(n.isascii() for n in notes)  # they travel in an HTTP header


def test_bad_factors_are_refused() -> None:
    for factor in (0.5, 0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            scale_chain(EVERY_OP, factor)


def test_gaussian_commutes_with_downsampling() -> None:
    """blur(σ) then shrink ×4 ≈ shrink ×4 then blur(σ/4): what makes the rescaled preview faithful."""
    rng = np.random.default_rng(1)
    image = ndimage.zoom(rng.random((64, 64)), 8, order=1)  # 512², structure at several scales
    chain = [{"op": "gaussian", "sigma": 6.0}]

    def shrink(a: np.ndarray) -> np.ndarray:
        return a.reshape(128, 4, 128, 4).mean(axis=(1, 3))

    truth = shrink(np.asarray(apply_chain(image, chain, dims=("y", "x"))))
    rescaled = np.asarray(apply_chain(shrink(image), scale_chain(chain, 4)[0], dims=("y", "x")))
    unscaled = np.asarray(apply_chain(shrink(image), chain, dims=("y", "x")))
    inner = (slice(16, -16), slice(16, -16))  # away from the reflect edges
    good, bad = np.abs(rescaled - truth)[inner].mean(), np.abs(unscaled - truth)[inner].mean()
    assert good < bad / 5, (good, bad)


def test_fft_mask_on_the_shrunk_grid_is_the_full_resolution_mask() -> None:
    """A cutoff ×f on a grid f times coarser samples the same transfer function (below Nyquist)."""
    high, factor = 0.05, 4
    full = lowpass((256, 256), high, "gaussian", 2, np, np.float64)
    (op,), _ = scale_chain([{"op": "fft_lowpass", "high": high}], factor)
    coarse = lowpass((64, 64), op["high"], "gaussian", 2, np, np.float64)
    # frequency k/64 on the coarse grid is k/256 · 4 … the same physical frequency as k/256 at full res
    np.testing.assert_allclose(coarse[:32, :32], full[:32, :32], rtol=1e-12)
