"""Spatial parameters per pyramid level: a chain's sizes are in full-resolution pixels, so a level shrunk
``factor`` times runs the chain with them divided by ``factor`` (FFT cutoffs, in cycles/pixel, multiplied).

:func:`scale_chain` is pure JSON in → JSON out. ``factor`` 1 returns the chain unchanged (the same
dicts), so full-resolution tiles keep their bytes. What cannot be rescaled faithfully comes back as a
note (ASCII, it travels in an HTTP header) and the closest runnable op, or none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from imagelib.filters.registry import REGISTRY
from imagelib.filters.schema import ChainLike, canonical_chain

Scaled = tuple[dict[str, Any] | None, list[str]]
#: what the op models accept (ops_fft: cutoffs <= 1, notch width <= 0.5; median size >= 1; ball radius >= 1)
MAX_CUTOFF = 1.0
NYQUIST = 0.5


def _num(value: float) -> str:
    return f"{value:.3g}"


def _div(value: float | list[float], factor: float) -> float | list[float]:
    """A scalar or per-axis length divided by ``factor``."""
    return [v / factor for v in value] if isinstance(value, list) else value / factor


def _smallest(value: float | list[float]) -> float:
    return min(value) if isinstance(value, list) else value


def _sigma(op: dict[str, Any], factor: float) -> Scaled:
    """gaussian, unsharp: sigma in level pixels (the kernel radius shrinks with it, so does the halo)."""
    return {**op, "sigma": _div(op["sigma"], factor)}, []


def _median(op: dict[str, Any], factor: float) -> Scaled:
    """median: the nearest odd window in level pixels; below 1.5 level pixels it is the identity."""
    sizes = op["size"] if isinstance(op["size"], list) else [op["size"]]
    scaled = [s / factor for s in sizes]
    rounded = [max(1, 2 * round((s - 1) / 2) + 1) for s in scaled]
    where = f"at 1/{factor:g} scale"
    if all(r == 1 for r in rounded):
        return None, [f"median: size {op['size']} < 1.5 level pixels {where}, skipped"]
    notes = [] if rounded == scaled else [f"median: size {op['size']} -> {rounded} level pixels {where}"]
    return {**op, "size": rounded if isinstance(op["size"], list) else rounded[0]}, notes


def _background(op: dict[str, Any], factor: float) -> Scaled:
    """background_subtract: the ball radius in level pixels (the ball's intensity axis is not rescaled)."""
    radius = max(1, round(op["radius"] / factor))
    note = f"background_subtract: radius {op['radius']} -> {radius} level pixels at 1/{factor:g} scale"
    return {**op, "radius": radius}, [note]


def _fft(op: dict[str, Any], factor: float) -> Scaled:
    """fft_lowpass/highpass/bandpass: cutoffs x factor. A lowpass edge beyond the ops' maximum passes all
    of this level to within its mask's tail, so it is dropped; a highpass edge beyond it removes nearly
    everything, so it saturates at the maximum (and says so)."""
    name, where = op["op"], f"at 1/{factor:g} scale"
    low = op["low"] * factor if "low" in op else None
    high = op["high"] * factor if "high" in op else None
    notes: list[str] = []
    if high is not None and high > MAX_CUTOFF:
        notes.append(f"{name}: high {_num(op['high'])} passes every frequency {where}")
        high = None
    if low is not None and low > MAX_CUTOFF:
        notes.append(f"{name}: low {_num(op['low'])} saturates at {MAX_CUTOFF:g} cycles/level pixel {where}")
        low = MAX_CUTOFF
    shape = {k: op[k] for k in ("kind", "order") if k in op}
    if low is not None and high is not None:
        return {**op, "low": low, "high": high}, notes
    if low is not None:
        return {"op": "fft_highpass", **shape, "low": low}, notes
    if high is not None:
        return {"op": "fft_lowpass", **shape, "high": high}, notes
    return None, [*notes, f"{name}: skipped {where}"]


def _notch(op: dict[str, Any], factor: float) -> Scaled:
    """notch: frequencies and width x factor; a notch past this level's Nyquist is dropped."""
    freqs = [[f * factor for f in pair] for pair in op["freqs"]]
    kept = [pair for pair in freqs if all(abs(f) <= NYQUIST for f in pair)]
    notes = (
        []
        if len(kept) == len(freqs)
        else [f"notch: {len(freqs) - len(kept)} notch(es) above Nyquist dropped"]
    )
    if not kept:
        return None, [*notes, "notch: skipped"]
    width = op["width"] * factor
    if width > NYQUIST:
        notes.append(f"notch: width {_num(op['width'])} saturates at {NYQUIST:g}")
        width = NYQUIST
    return {**op, "freqs": kept, "width": width}, notes


def _psf(psf: dict[str, Any], factor: float, name: str, notes: list[str]) -> dict[str, Any]:
    """A PSF in level pixels: gaussian sigma and airy radius / factor; array/version PSFs as given."""
    if psf.get("type") == "gaussian":
        return {**psf, "sigma": _div(psf["sigma"], factor)}
    if psf.get("type") == "airy":
        return {**psf, "radius": psf["radius"] / factor}
    notes.append(f"{name}: {psf.get('type')} psf not rescaled at 1/{factor:g} scale")
    return psf


def _deconv(op: dict[str, Any], factor: float) -> Scaled:
    """wiener, richardson_lucy: the PSF in level pixels; a PSF under half a level pixel is a point, so
    the op is skipped; deconvolving a shrunk level only approximates shrinking the deconvolved image."""
    notes: list[str] = []
    psf = op["psf"]
    scaled = _psf(psf, factor, op["op"], notes)
    size = psf.get("sigma", psf.get("radius"))
    if size is not None and _smallest(_div(size, factor)) < 0.5:
        return None, [f"{op['op']}: psf below 0.5 level pixels at 1/{factor:g} scale, skipped"]
    return {**op, "psf": scaled}, [*notes, f"{op['op']}: deconvolution approximated at 1/{factor:g} scale"]


#: op name → rescaler; band-scope ops (band_scale, clip, gamma, percentile_stretch, band_math) have no
#: spatial parameter; any other op missing here (a third-party one) runs unchanged, with a note
RESCALERS: dict[str, Callable[[dict[str, Any], float], Scaled]] = {
    "gaussian": _sigma,
    "unsharp": _sigma,
    "median": _median,
    "background_subtract": _background,
    "fft_lowpass": _fft,
    "fft_highpass": _fft,
    "fft_bandpass": _fft,
    "notch": _notch,
    "wiener": _deconv,
    "richardson_lucy": _deconv,
}


def scale_chain(chain: ChainLike, factor: float) -> tuple[list[dict[str, Any]], list[str]]:
    """The canonical chain with spatial parameters for a level ``factor`` times smaller than full
    resolution, and notes naming what is only approximated or skipped there (factor 1: unchanged)."""
    ops = canonical_chain(chain)
    if factor == 1:
        return ops, []
    if not (factor > 1 and math.isfinite(factor)):
        raise ValueError(f"factor must be a finite number >= 1, not {factor!r}")
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for op in ops:
        rescale = RESCALERS.get(op["op"])
        if rescale is not None:
            scaled, said = rescale(op, factor)
        elif REGISTRY[op["op"]].scope == "band":
            scaled, said = op, []
        else:
            scaled, said = op, [f"{op['op']}: parameters not rescaled at 1/{factor:g} scale"]
        notes += said
        if scaled is not None:
            out.append(scaled)
    return canonical_chain(out) if out else [], notes
