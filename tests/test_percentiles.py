"""The stored view stretch (p2/p98): 8/16-bit bands are read off a histogram, and every value equals
``np.percentile`` of the valid pixels (linear method) exactly, nodata and edge cases included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from imagelib import multiscale, stored
from imagelib.stored import _band_percentiles, percentiles


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


def volume_group(a: np.ndarray) -> tuple[Any, xr.DataArray]:
    """A stored-like multiscale of a z,y,x volume (every level filled) and its DataArray."""
    data = xr.DataArray(a, dims=("z", "y", "x"))
    group = multiscale.create(zarr.storage.MemoryStore(), data, {})
    group["0"][...] = a
    multiscale.build_lower_levels(group)
    return group, data


def test_volume_stats_level_bounds_the_pixels_of_all_planes() -> None:
    """40 planes of 600²: level 0 holds 14.4 M values, level 1 3.6 M ≤ 2048²; the stretch is np.percentile
    of every value of level 1."""
    a = np.random.default_rng(3).integers(0, 4000, (40, 600, 600), dtype=np.uint16)
    group, data = volume_group(a)
    stats = percentiles(group, data)
    assert stats["stats_level"] == 1
    assert (stats["p2"][0], stats["p98"][0]) == reference(group["1"][...], None)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_a_volume_too_deep_for_any_level_is_read_plane_by_plane(
    dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Budget 64²: even the last level (40 × 150²) is over it. 16-bit: exact over every plane (summed
    histograms); float: evenly spaced planes within the budget (here only the first)."""
    a = np.random.default_rng(4).integers(0, 4000, (40, 600, 600)).astype(dtype)
    group, data = volume_group(a)
    monkeypatch.setattr(stored, "STATS_LEVEL_SIDE", 64)
    stats = percentiles(group, data)
    last = group[str(len(group) - 1)][...]
    assert stats["stats_level"] == len(group) - 1 == 2
    expected = reference(last if dtype == np.uint16 else last[:1], None)
    assert (stats["p2"][0], stats["p98"][0]) == expected
