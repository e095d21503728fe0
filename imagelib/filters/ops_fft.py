"""Frequency-domain ops (global scope): low/high/band-pass and notch, via ``rfftn`` over the spatial axes.

Frequencies are in cycles/pixel (``scipy.fft.fftfreq`` convention, Nyquist = 0.5); the FFT treats the
plane as periodic. Masks, with ``f`` the radial frequency:

* gaussian lowpass ``exp(-f²/(2·high²))`` (= ``scipy.ndimage.fourier_gaussian`` with σ = 1/(2π·high));
  highpass ``1 − exp(-f²/(2·low²))``;
* butterworth lowpass ``1/(1+(f/high)^(2·order))`` (= ``skimage.filters.butterworth``, squared form,
  ``npad=0``); highpass ``1 − 1/(1+(f/low)^(2·order))``;
* bandpass = lowpass(high) · highpass(low); notch = Π over ±f_k of ``1 − exp(-|f∓f_k|²/(2·width²))``.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from imagelib.backend import fft_for
from imagelib.filters.base import Op, Scope, check_axes

MAX_OVERLAP = 512


def freq_grid(shape: tuple[int, ...], xp: ModuleType) -> list[Any]:
    """Open (broadcastable) per-axis frequency grids matching ``rfftn`` output over all axes."""
    fft = fft_for(xp)
    axes = [fft.fftfreq(n) for n in shape[:-1]] + [fft.rfftfreq(shape[-1])]
    return [
        xp.asarray(a, dtype=xp.float64).reshape([-1 if i == k else 1 for i in range(len(shape))])
        for k, a in enumerate(axes)
    ]


def lowpass(shape: tuple[int, ...], cutoff: float, kind: str, order: int, xp: ModuleType, dtype: Any) -> Any:
    """Low-pass transfer function on the ``rfftn`` grid of ``shape``, in ``dtype``."""
    grid = freq_grid(shape, xp)
    if kind == "gaussian":  # separable: per-axis exponentials, one full-size product (cheap)
        factors = [xp.exp(-(g**2) / (2 * cutoff**2)).astype(dtype) for g in grid]
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        return out
    f2 = sum(g**2 for g in grid)
    return (1 / (1 + (f2 / cutoff**2) ** order)).astype(dtype)


def apply_mask(array: Any, mask: Any, xp: ModuleType) -> Any:
    """``irfftn(rfftn(array) * mask)`` over all axes, keeping the input dtype."""
    fft = fft_for(xp)
    spectrum = fft.rfftn(array)
    spectrum *= mask.astype(spectrum.real.dtype, copy=False)
    return fft.irfftn(spectrum, s=array.shape).astype(array.dtype, copy=False)


def support(cutoff: float, kind: str, order: int) -> int:
    """Approximate spatial half-width of a filter with that cutoff (the tapered-tile overlap)."""
    sigma = 1 / (2 * math.pi * cutoff)  # spatial sd of the matching gaussian
    width = 4 * sigma if kind == "gaussian" else 4 * sigma * (1 + 1 / order) * 2  # butterworth rings longer
    return min(MAX_OVERLAP, max(1, math.ceil(width)))


class _FFTOp(Op):
    scope: ClassVar[Scope] = "global"
    kind: Literal["gaussian", "butterworth"] = "gaussian"
    order: int = Field(2, ge=1, le=16, description="butterworth order (ignored for gaussian)")

    def _cutoffs(self) -> list[float]:
        raise NotImplementedError

    def mask(self, shape: tuple[int, ...], xp: ModuleType, dtype: Any = np.float64) -> Any:
        """The transfer function on the ``rfftn`` grid of ``shape``."""
        raise NotImplementedError

    def halo(self, ndim: int) -> tuple[int, ...]:
        return (max(support(c, self.kind, self.order) for c in self._cutoffs()),) * ndim

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        return apply_mask(array, self.mask(array.shape, xp, array.dtype), xp)


class FFTLowpass(_FFTOp):
    """Keep frequencies below ``high`` (cycles/pixel)."""

    op: Literal["fft_lowpass"] = "fft_lowpass"
    high: float = Field(0.1, gt=0, le=1, description="cutoff, cycles/pixel")

    def _cutoffs(self) -> list[float]:
        return [self.high]

    def mask(self, shape: tuple[int, ...], xp: ModuleType, dtype: Any = np.float64) -> Any:
        return lowpass(shape, self.high, self.kind, self.order, xp, dtype)


class FFTHighpass(_FFTOp):
    """Keep frequencies above ``low`` (cycles/pixel)."""

    op: Literal["fft_highpass"] = "fft_highpass"
    low: float = Field(0.01, gt=0, le=1, description="cutoff, cycles/pixel")

    def _cutoffs(self) -> list[float]:
        return [self.low]

    def mask(self, shape: tuple[int, ...], xp: ModuleType, dtype: Any = np.float64) -> Any:
        return 1 - lowpass(shape, self.low, self.kind, self.order, xp, dtype)


class FFTBandpass(_FFTOp):
    """Keep frequencies between ``low`` and ``high`` (cycles/pixel)."""

    op: Literal["fft_bandpass"] = "fft_bandpass"
    low: float = Field(0.01, gt=0, le=1, description="lower edge, cycles/pixel")
    high: float = Field(0.1, gt=0, le=1, description="upper edge, cycles/pixel")

    @model_validator(mode="after")
    def _ordered(self) -> FFTBandpass:
        if self.low >= self.high:
            raise ValueError("low must be < high")
        return self

    def _cutoffs(self) -> list[float]:
        return [self.low, self.high]

    def mask(self, shape: tuple[int, ...], xp: ModuleType, dtype: Any = np.float64) -> Any:
        low = lowpass(shape, self.low, self.kind, self.order, xp, dtype)
        return lowpass(shape, self.high, self.kind, self.order, xp, dtype) * (1 - low)


class Notch(Op):
    """Remove periodic noise: gaussian notches of ``width`` at each ``±f_k`` (cycles/pixel per axis)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"op": "notch", "freqs": [[0.0, 0.25]]}]})
    scope: ClassVar[Scope] = "global"
    op: Literal["notch"] = "notch"
    freqs: list[list[float]] = Field(..., min_length=1, max_length=64, description="[[fy, fx], …]")
    width: float = Field(0.01, gt=0, le=0.5, description="notch sd, cycles/pixel")

    @model_validator(mode="after")
    def _in_band(self) -> Notch:
        if any(not f or any(abs(v) > 0.5 for v in f) for f in self.freqs):
            raise ValueError("each notch is a non-empty list of frequencies within [-0.5, 0.5]")
        return self

    def check(self, n_bands: int | None, ndim: int | None, index: int) -> None:
        """Each notch frequency has one component per spatial axis."""
        for f in self.freqs:
            check_axes(f, ndim, index, "freqs")

    def halo(self, ndim: int) -> tuple[int, ...]:
        return (support(self.width, "gaussian", 1),) * ndim

    def mask(self, shape: tuple[int, ...], xp: ModuleType, dtype: Any = np.float64) -> Any:
        """Product of the notch pairs on the ``rfftn`` grid."""
        grid = freq_grid(shape, xp)
        out = xp.ones(np.broadcast_shapes(*(g.shape for g in grid)), dtype=xp.float64)
        for f in self.freqs:
            for sign in (1, -1):
                d2 = sum((g - sign * fk) ** 2 for g, fk in zip(grid, f, strict=True))
                out = out * (1 - xp.exp(-d2 / (2 * self.width**2)))
        return out.astype(dtype, copy=False)

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        return apply_mask(array, self.mask(array.shape, xp, array.dtype), xp)
