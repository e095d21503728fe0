"""Local neighbourhood ops (finite halo): gaussian, median, unsharp, background subtraction.

Each gets one 2D plane or 3D volume and uses ``mode="reflect"`` at the array edge, like scipy.ndimage.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from imagelib.backend import ndimage_for, to_numpy, to_xp
from imagelib.filters.base import Op, Scope, check_axes, gaussian_radius, per_axis
from imagelib.filters.separable import fast_gaussian, fast_gaussian_ok

Sigma = float | list[float]
_SIGMA = Field(1.0, description="standard deviation in pixels: one number, or one per spatial axis")


class _Local(Op):
    scope: ClassVar[Scope] = "local"


def _check_sigma(sigma: Sigma) -> Sigma:
    values = [sigma] if isinstance(sigma, int | float) else sigma
    if not values or any(not 0 <= v <= 256 for v in values):
        raise ValueError("sigma values must lie in [0, 256]")
    return sigma


class Gaussian(_Local):
    """``scipy.ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=truncate)``."""

    op: Literal["gaussian"] = "gaussian"
    sigma: Sigma = _SIGMA
    truncate: float = Field(4.0, gt=0, le=10)

    _sigma_ok = field_validator("sigma")(_check_sigma)

    def check(self, n_bands: int | None, ndim: int | None, index: int) -> None:
        """``sigma`` lists need one value per spatial axis."""
        check_axes(self.sigma, ndim, index, "sigma")

    def halo(self, ndim: int) -> tuple[int, ...]:
        return tuple(gaussian_radius(s, self.truncate) for s in per_axis(self.sigma, ndim))

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        sigma = per_axis(self.sigma, array.ndim)
        if fast_gaussian_ok(array, sigma):
            return fast_gaussian(array, sigma, self.truncate)
        return ndimage_for(xp).gaussian_filter(array, sigma, mode="reflect", truncate=self.truncate)


class Median(_Local):
    """``scipy.ndimage.median_filter(x, size, mode="reflect")``."""

    op: Literal["median"] = "median"
    size: int | list[int] = Field(3, description="window side in pixels: one int, or one per spatial axis")

    @field_validator("size")
    @classmethod
    def _size_ok(cls, size: int | list[int]) -> int | list[int]:
        values = [size] if isinstance(size, int) else size
        if not values or any(not 1 <= v <= 101 for v in values):
            raise ValueError("size values must lie in [1, 101]")
        return size

    def check(self, n_bands: int | None, ndim: int | None, index: int) -> None:
        """``size`` lists need one value per spatial axis."""
        check_axes(self.size, ndim, index, "size")

    def halo(self, ndim: int) -> tuple[int, ...]:
        return tuple(int(s) // 2 for s in per_axis(self.size, ndim))

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        size = tuple(int(s) for s in per_axis(self.size, array.ndim))
        return ndimage_for(xp).median_filter(array, size=size, mode="reflect")


class Unsharp(_Local):
    """``x + amount * (x - gaussian(x, sigma))`` with the gaussian op's reflect semantics."""

    op: Literal["unsharp"] = "unsharp"
    sigma: Sigma = _SIGMA
    amount: float = Field(1.0, ge=0, le=100)
    truncate: float = Field(4.0, gt=0, le=10)

    _sigma_ok = field_validator("sigma")(_check_sigma)

    def _blur(self) -> Gaussian:
        return Gaussian(sigma=self.sigma, truncate=self.truncate)

    def check(self, n_bands: int | None, ndim: int | None, index: int) -> None:
        """``sigma`` lists need one value per spatial axis."""
        check_axes(self.sigma, ndim, index, "sigma")

    def halo(self, ndim: int) -> tuple[int, ...]:
        return self._blur().halo(ndim)

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        return array + self.amount * (array - self._blur()(array, xp))


class BackgroundSubtract(_Local):
    """``x - background``: skimage ``rolling_ball(x, radius)`` (CPU) or a white top-hat with a ball.

    ``tophat`` = ``x - grey_opening(x, footprint=ball(radius))`` (scipy.ndimage.white_tophat, reflect
    mode) and runs on the GPU too; ``rolling_ball`` always computes on the CPU.
    """

    op: Literal["background_subtract"] = "background_subtract"
    method: Literal["rolling_ball", "tophat"] = "rolling_ball"
    radius: int = Field(25, ge=1, le=256, description="ball radius in pixels")

    def halo(self, ndim: int) -> tuple[int, ...]:
        return (self.radius,) * ndim

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        if self.method == "tophat":
            return ndimage_for(xp).white_tophat(array, footprint=xp.asarray(ball(self.radius, array.ndim)))
        from skimage.restoration import rolling_ball  # scikit-image is only needed for this method

        host = to_numpy(array)
        return to_xp(host - rolling_ball(host, radius=self.radius), xp).astype(array.dtype)


def ball(radius: int, ndim: int) -> np.ndarray:
    """Boolean ``ndim``-ball footprint of ``radius`` (a disk in 2D)."""
    grid = np.ogrid[tuple(slice(-radius, radius + 1) for _ in range(ndim))]
    return sum(g.astype(np.int64) ** 2 for g in grid) <= radius**2
