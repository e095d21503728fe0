"""A faster CPU Gaussian for 2D planes: OpenCV's SIMD separable filter with scipy.ndimage's own kernel.

scipy.ndimage filters each line through a float64 buffer; for a tile-sized float32 plane OpenCV's
``sepFilter2D`` is about 7× faster (0.36 vs 2.6 ms for 3×266², the cost that dominated a chained tile).
Same kernel (scipy's weights, radius ``int(truncate·σ + 0.5)``) and the same edge rule (scipy's
``reflect`` is OpenCV's ``BORDER_REFLECT``), so results agree to float rounding; volumes, other dtypes
and CuPy arrays keep scipy.ndimage / cupyx.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from imagelib.backend import CV2_MAX_SIZE, cv2_module
from imagelib.filters.base import gaussian_radius

#: OpenCV's depth code per float dtype (the only inputs the fast path takes: results keep the dtype)
_DEPTHS = {np.dtype(np.float32): 5, np.dtype(np.float64): 6}  # cv2.CV_32F, cv2.CV_64F
#: OpenCV's SIMD path needs a plane at least this big on each side to pay off its call
_MIN_SIDE = 8


@functools.lru_cache(maxsize=64)
def gaussian_kernel(sigma: float, truncate: float, dtype: np.dtype) -> np.ndarray:
    """scipy.ndimage's 1D Gaussian weights (normalised to sum 1) as an OpenCV column kernel."""
    radius = gaussian_radius(sigma, truncate)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    return (phi / phi.sum()).astype(dtype).reshape(-1, 1)


def fast_gaussian_ok(array: Any, sigma: tuple[float, ...]) -> bool:
    """Whether :func:`fast_gaussian` takes this array: a NumPy float 2D plane, σ > 0 on both axes."""
    return (
        isinstance(array, np.ndarray)
        and array.ndim == 2
        and array.dtype in _DEPTHS
        and min(array.shape) >= _MIN_SIDE
        and array.size < CV2_MAX_SIZE
        and all(s > 0 for s in sigma)
        and cv2_module() is not None
    )


def fast_gaussian(array: np.ndarray, sigma: tuple[float, float], truncate: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(array, sigma, mode="reflect", truncate=truncate)`` through OpenCV
    (check :func:`fast_gaussian_ok` first)."""
    cv2 = cv2_module()
    rows = gaussian_kernel(sigma[0], truncate, array.dtype)
    cols = gaussian_kernel(sigma[1], truncate, array.dtype)
    source = np.ascontiguousarray(array)
    # sepFilter2D's kernelX runs along x (axis 1), kernelY along y (axis 0)
    return cv2.sepFilter2D(source, _DEPTHS[array.dtype], cols, rows, borderType=cv2.BORDER_REFLECT)
