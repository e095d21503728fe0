"""Point-spread functions for deconvolution, as a discriminated union on ``type``.

``gaussian``: size 2⌈3σ⌉+1 per axis, normalised to sum 1. ``airy``: (2·J1(v)/v)² with the first dark
ring at ``radius`` pixels, out to 2·radius, normalised (in 3D the same radial profile, no axial model).
``array``: ``values`` used exactly as given. ``version``: a stored PSF, fetched by the caller's
``psf_resolver(id) -> array`` hook, because filters never touch storage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from imagelib.backend import to_numpy
from imagelib.errors import ImagelibError

MAX_PSF_SIDE = 257
_AIRY_FIRST_ZERO = 3.8317059702075125  # first zero of the Bessel function J1

PsfResolver = Callable[[str], Any]


class _Psf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def build(self, ndim: int) -> np.ndarray:
        """The PSF as a float64 array with ``ndim`` axes."""
        raise NotImplementedError


class GaussianPsf(_Psf):
    """Normalised Gaussian of ``sigma`` (one number or one per axis)."""

    type: Literal["gaussian"] = "gaussian"
    sigma: float | list[float] = Field(..., description="pixels; one value or one per spatial axis")

    @field_validator("sigma")
    @classmethod
    def _bounded(cls, sigma: float | list[float]) -> float | list[float]:
        values = [sigma] if isinstance(sigma, int | float) else sigma
        if not values or any(not 0 < v <= 40 for v in values):
            raise ValueError("psf sigma values must lie in (0, 40]")
        return sigma

    def build(self, ndim: int) -> np.ndarray:
        sigmas = [self.sigma] * ndim if isinstance(self.sigma, int | float) else self.sigma
        axes = [np.arange(-math.ceil(3 * s), math.ceil(3 * s) + 1) for s in sigmas]
        grid = np.ix_(*axes)
        psf = np.exp(-sum(g.astype(np.float64) ** 2 / (2 * s**2) for g, s in zip(grid, sigmas, strict=True)))
        return psf / psf.sum()


class AiryPsf(_Psf):
    """Normalised Airy pattern whose first dark ring lies at ``radius`` pixels."""

    type: Literal["airy"] = "airy"
    radius: float = Field(..., gt=0, le=64, description="first dark ring radius, pixels")

    def build(self, ndim: int) -> np.ndarray:
        from scipy.special import j1

        half = math.ceil(2 * self.radius)
        grid = np.ogrid[tuple(slice(-half, half + 1) for _ in range(ndim))]
        v = np.sqrt(sum(g.astype(np.float64) ** 2 for g in grid)) * (_AIRY_FIRST_ZERO / self.radius)
        with np.errstate(invalid="ignore", divide="ignore"):
            psf = np.where(v == 0, 1.0, (2 * j1(v) / v) ** 2)
        return psf / psf.sum()


class ArrayPsf(_Psf):
    """An explicit PSF (nested lists), used as given."""

    type: Literal["array"] = "array"
    values: list[Any] = Field(..., min_length=1)

    @field_validator("values")
    @classmethod
    def _rectangular(cls, values: list[Any]) -> list[Any]:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (ValueError, TypeError):
            raise ValueError("psf values must be a rectangular nested list of numbers") from None
        if arr.ndim not in (2, 3) or max(arr.shape) > MAX_PSF_SIDE or not np.isfinite(arr).all():
            raise ValueError(f"psf values must be a finite 2D/3D array, sides <= {MAX_PSF_SIDE}")
        if arr.sum() <= 0:
            raise ValueError("psf values must have a positive sum")
        return values

    def build(self, ndim: int) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float64)


class VersionPsf(_Psf):
    """A PSF stored as an imagelib version; resolved through the caller's ``psf_resolver``."""

    type: Literal["version"] = "version"
    id: str = Field(..., min_length=1, max_length=256)

    def build(self, ndim: int) -> np.ndarray:
        raise ImagelibError(
            f"psf version {self.id!r} is not resolved: pass psf_resolver= to apply_chain",
            code="PSF_UNRESOLVED",
            field="psf",
            found=self.id,
        )


Psf = Annotated[GaussianPsf | AiryPsf | ArrayPsf | VersionPsf, Field(discriminator="type")]


def resolve(psf: _Psf, resolver: PsfResolver | None) -> _Psf:
    """A ``version`` PSF replaced by an ``array`` PSF from ``resolver``; other PSFs unchanged."""
    if not isinstance(psf, VersionPsf) or resolver is None:
        return psf
    return ArrayPsf(values=to_numpy(resolver(psf.id)).astype(np.float64).tolist())
