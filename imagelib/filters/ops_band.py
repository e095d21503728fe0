"""Band-wise point ops: scale, clip, gamma, percentile stretch. Bands are numbered from 1 (GDAL style);
``bands`` omitted means every band; unselected bands pass through unchanged (as floats)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from imagelib.backend import to_xp
from imagelib.errors import ImagelibError
from imagelib.filters.base import Op, Scope

Range = tuple[float, float]


class BandOp(Op):
    """A pointwise op applied to a selection of bands."""

    scope: ClassVar[Scope] = "band"
    bands: list[int] | None = Field(None, description="1-based band numbers; omitted = all bands")

    def check(self, n_bands: int | None, ndim: int | None, index: int) -> None:
        """Every selected band must exist."""
        bad = [b for b in self.bands or [] if b < 1 or (n_bands is not None and b > n_bands)]
        if bad:
            raise ImagelibError(
                f"band number(s) {bad} out of range 1..{n_bands}",
                code="BAND_INDEX_INVALID",
                field=f"chain[{index}].bands",
                expected=f"1..{n_bands}" if n_bands else ">= 1",
                found=bad,
            )

    def selected(self, n_bands: int) -> list[int]:
        """0-based indices of the bands this op touches."""
        return list(range(n_bands)) if self.bands is None else [b - 1 for b in self.bands]

    def map_bands(self, array: Any, xp: ModuleType, fn: Callable[[Any, int], Any]) -> Any:
        """Apply ``fn(band_array, band_index)`` to the selected bands of a ``(band, ...)`` array."""
        selected = self.selected(array.shape[0])
        if selected == [0] and array.shape[0] == 1:
            return fn(array[0], 0)[None]  # the common single-band case: no extra full-size copy
        out = array.copy() if len(selected) < array.shape[0] else xp.empty_like(array)
        for b in selected:
            out[b] = fn(array[b], b)
        return out


def _linear(x: Any, xp: ModuleType, in_range: Range, out_range: Range, clip: bool) -> Any:
    """Linear map of ``in_range`` onto ``out_range`` in float64, then clipped to ``out_range``."""
    (ilo, ihi), (olo, ohi) = in_range, out_range
    y = x.astype(xp.float64)  # in-place steps below: one float64 temporary, not four
    y -= ilo
    y *= (ohi - olo) / (ihi - ilo)
    y += olo
    if clip:
        xp.clip(y, min(olo, ohi), max(olo, ohi), out=y)
    return y.astype(x.dtype)


class BandScale(BandOp):
    """Linear map ``in_range`` → ``out_range`` computed in float64, clipped to ``out_range`` by default."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"op": "band_scale", "in_range": [0, 4095]}]})
    op: Literal["band_scale"] = "band_scale"
    in_range: Range
    out_range: Range = (0.0, 1.0)
    clip: bool = True

    @model_validator(mode="after")
    def _distinct(self) -> BandScale:
        if self.in_range[0] == self.in_range[1]:
            raise ValueError("in_range bounds must differ")
        return self

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        return self.map_bands(
            array, xp, lambda x, _: _linear(x, xp, self.in_range, self.out_range, self.clip)
        )


class Clip(BandOp):
    """Clip values to ``[min, max]`` (either bound may be omitted)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"op": "clip", "min": 0.0, "max": 1.0}]})
    op: Literal["clip"] = "clip"
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Clip:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must be <= max")
        return self

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        return self.map_bands(array, xp, lambda x, _: xp.clip(x, self.min, self.max))


class Gamma(BandOp):
    """``gain * x**gamma`` (skimage.exposure.adjust_gamma); negative values are taken as 0."""

    op: Literal["gamma"] = "gamma"
    gamma: float = Field(1.0, gt=0, le=100)
    gain: float = 1.0

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        if self.bands is None and array.dtype.kind == "f":  # pointwise on every band: one stack-wide pass
            return self._apply(array, xp)
        return self.map_bands(array, xp, lambda x, _: self._apply(x, xp))

    def _apply(self, x: Any, xp: ModuleType) -> Any:
        """``(max(x, 0) ** gamma * gain).astype(x.dtype)``; for floats in place on one temporary."""
        if x.dtype.kind != "f":
            return (xp.maximum(x, 0) ** self.gamma * self.gain).astype(x.dtype)
        y = xp.maximum(x, 0)
        y **= self.gamma  # `**=` takes the same scalar-exponent shortcuts (0.5 → sqrt, 2 → square) as `**`
        y *= self.gain  # kept even for gain 1: the same float ops as the expression above, bit for bit
        return y


class PercentileStretch(BandOp):
    """Per band, map the ``low``..``high`` percentiles (NaN ignored) onto ``out_range`` like band_scale.

    A whole-array statistic: over Dask the percentiles are computed exactly first (one pass, band by
    band in memory), then the stretch runs chunk-wise.
    """

    op: Literal["percentile_stretch"] = "percentile_stretch"
    low: float = Field(2.0, ge=0, le=100)
    high: float = Field(98.0, ge=0, le=100)
    out_range: Range = (0.0, 1.0)
    clip: bool = True
    _ranges: dict[int, Range] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _ordered(self) -> PercentileStretch:
        if self.low >= self.high:
            raise ValueError("low must be < high")
        return self

    def fit(self, array: Any, xp: ModuleType) -> PercentileStretch:
        """A copy holding each selected band's percentiles; ``array`` may be lazy (Dask)."""
        ranges = {}
        for b in self.selected(array.shape[0]):
            band = array[b]
            band = to_xp(band.compute() if hasattr(band, "compute") else band, xp)
            lo, hi = (float(v) for v in xp.nanpercentile(band, [self.low, self.high]))
            ranges[b] = (lo, hi if hi > lo else lo + 1.0)  # a flat band maps to out_range's low end
        fitted = self.model_copy()
        fitted._ranges = ranges
        return fitted

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        ranges = (self._ranges if self._ranges is not None else self.fit(array, xp)._ranges) or {}
        return self.map_bands(array, xp, lambda x, b: _linear(x, xp, ranges[b], self.out_range, self.clip))
