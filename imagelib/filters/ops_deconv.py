"""Deconvolution: Wiener (global, circular FFT) and Richardson–Lucy (local, exact halo).

Both re-implement scikit-image's algorithms with the array module's own FFT/convolution so they run on
NumPy and CuPy alike; the tests compare them with ``skimage.restoration``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field

from imagelib.backend import fft_for, signal_for
from imagelib.filters.base import Op, Scope, param_error
from imagelib.filters.psf import Psf, PsfResolver, resolve

MAX_OVERLAP = 512
_EXAMPLE_PSF = {"type": "gaussian", "sigma": 1.5}


class _DeconvOp(Op):
    psf: Psf

    def check(self, n_bands: int | None, ndim: int | None, index: int) -> None:
        """An explicit PSF must have the data's spatial dimensionality."""
        values = getattr(self.psf, "values", None)
        if ndim is not None and values is not None and np.ndim(values) != ndim:
            raise param_error(
                index,
                "psf",
                "psf dimensionality differs from the data's",
                expected=ndim,
                found=np.ndim(values),
            )

    def with_psf(self, resolver: PsfResolver | None) -> _DeconvOp:
        """This op with a ``version`` PSF fetched through ``resolver``."""
        return self.model_copy(update={"psf": resolve(self.psf, resolver)})

    def kernel(self, ndim: int, xp: ModuleType, dtype: Any) -> Any:
        """The PSF on the array module's device."""
        return xp.asarray(self.psf.build(ndim), dtype=dtype)


def transfer_function(kernel: Any, shape: tuple[int, ...], xp: ModuleType) -> Any:
    """``rfftn`` of ``kernel`` zero-padded to ``shape`` and centred on the origin (skimage's ``ir2tf``)."""
    padded = xp.zeros(shape, dtype=kernel.dtype)
    padded[tuple(slice(0, s) for s in kernel.shape)] = kernel
    padded = xp.roll(padded, tuple(-(s // 2) for s in kernel.shape), axis=tuple(range(kernel.ndim)))
    return fft_for(xp).rfftn(padded)


def laplacian(ndim: int) -> np.ndarray:
    """The discrete Laplacian stencil (2·ndim at the centre, −1 at each face neighbour)."""
    kernel = np.zeros((3,) * ndim)
    for axis in range(ndim):
        for side in (0, 2):
            kernel[tuple(side if a == axis else 1 for a in range(ndim))] = -1.0
    kernel[(1,) * ndim] = 2.0 * ndim
    return kernel


class Wiener(_DeconvOp):
    """Wiener–Hunt deconvolution with a Laplacian regulariser (== ``skimage.restoration.wiener``,
    ``clip=False``); circular boundary, so a global op."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"op": "wiener", "psf": _EXAMPLE_PSF}]})
    scope: ClassVar[Scope] = "global"
    op: Literal["wiener"] = "wiener"
    balance: float = Field(0.1, gt=0, le=1e6, description="regularisation weight")

    def halo(self, ndim: int) -> tuple[int, ...]:
        return tuple(min(MAX_OVERLAP, 8 * s) for s in self.psf.build(ndim).shape)

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        shape = array.shape
        tf = transfer_function(self.kernel(array.ndim, xp, array.dtype), shape, xp)
        reg = transfer_function(xp.asarray(laplacian(array.ndim), dtype=array.dtype), shape, xp).real
        wiener = xp.conj(tf) / (xp.abs(tf) ** 2 + self.balance * xp.abs(reg) ** 2)
        fft = fft_for(xp)
        return fft.irfftn(wiener * fft.rfftn(array), s=shape).astype(array.dtype)


class RichardsonLucy(_DeconvOp):
    """Richardson–Lucy (== ``skimage.restoration.richardson_lucy(x, psf, iterations, clip=False)``).

    Each iteration convolves twice with zero padding at the array edge, so the result at a pixel depends
    on ``iterations · 2 · (psf_side // 2)`` neighbours per axis: an exact halo.
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"op": "richardson_lucy", "psf": _EXAMPLE_PSF}]}
    )
    scope: ClassVar[Scope] = "local"
    op: Literal["richardson_lucy"] = "richardson_lucy"
    iterations: int = Field(10, ge=1, le=500)

    def halo(self, ndim: int) -> tuple[int, ...]:
        return tuple(self.iterations * 2 * (s // 2) for s in self.psf.build(ndim).shape)

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        convolve = signal_for(xp).convolve
        psf = self.kernel(array.ndim, xp, array.dtype)
        mirror = xp.flip(psf)
        estimate = xp.full(array.shape, 0.5, dtype=array.dtype)
        for _ in range(self.iterations):
            relative_blur = array / (convolve(estimate, psf, mode="same") + 1e-12)  # skimage's eps
            estimate *= convolve(relative_blur, mirror, mode="same")
        return estimate
