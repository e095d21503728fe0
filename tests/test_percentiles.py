"""The stored view stretch (p2/p98): 8/16-bit bands are read off a histogram, and every value equals
``np.percentile`` of the valid pixels (linear method) exactly, nodata and edge cases included."""

from __future__ import annotations

import numpy as np
import pytest

from imagelib.stored import _band_percentiles


def reference(plane: np.ndarray, nodata: float | None) -> tuple[float | None, float | None]:
    """np.percentile of the valid values, computed the plain way."""
    values = plane.astype(np.float64).ravel()
    if nodata is not None and not np.isnan(nodata):
        values = values[values != nodata]
    if values.size == 0:
        return None, None
    lo, hi = np.percentile(values, [2, 98])
    return float(lo), float(hi)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize("nodata", [None, 0, -1, 7, 3.5, 1e9, float("nan")])
@pytest.mark.parametrize("size", [1, 2, 3, 50, 1001, 300 * 301])
def test_histogram_percentiles_equal_numpy(dtype: type, nodata: float | None, size: int) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(size)
    plane = rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True).reshape(1, -1)
    if size > 3:
        plane[0, : size // 4] = 7 if nodata == 7 else info.min  # a heavy value (a ragged histogram)
    assert _band_percentiles(plane, nodata) == reference(plane, nodata)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_all_nodata_has_no_percentiles(dtype: type) -> None:
    plane = np.full((4, 5), 9, dtype)
    assert _band_percentiles(plane, 9) == (None, None)
    assert _band_percentiles(plane, None) == (9.0, 9.0)


def test_other_dtypes_take_numpy_and_skip_nan() -> None:
    rng = np.random.default_rng(3)
    floats = rng.normal(size=(30, 40)).astype(np.float32)
    floats[0, :5] = np.nan
    lo, hi = np.percentile(floats[np.isfinite(floats)].astype(np.float64), [2, 98])
    assert _band_percentiles(floats, None) == (lo, hi)
    wide = rng.integers(0, 2**20, (30, 40)).astype(np.int32)
    assert _band_percentiles(wide, None) == reference(wide, None)
