"""The built-in filter ops, listed explicitly (no registration by import side effects)."""

from __future__ import annotations

from imagelib.filters.base import OpRegistry
from imagelib.filters.ops_band import BandScale, Clip, Gamma, PercentileStretch
from imagelib.filters.ops_bandmath import BandMath
from imagelib.filters.ops_deconv import RichardsonLucy, Wiener
from imagelib.filters.ops_fft import FFTBandpass, FFTHighpass, FFTLowpass, Notch
from imagelib.filters.ops_spatial import BackgroundSubtract, Gaussian, Median, Unsharp

BUILTIN_OPS = (
    BandScale,
    Clip,
    Gamma,
    PercentileStretch,
    BandMath,
    Gaussian,
    Median,
    Unsharp,
    BackgroundSubtract,
    FFTLowpass,
    FFTHighpass,
    FFTBandpass,
    Notch,
    Wiener,
    RichardsonLucy,
)

#: op name → op model class; ``REGISTRY.add(MyOp)`` registers a third-party op
REGISTRY = OpRegistry(BUILTIN_OPS)
