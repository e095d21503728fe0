"""N-D windowed phase correlation with sub-pixel refinement and wrap-around resolution.

Pure array code on NumPy or CuPy (``imagelib.backend``): two equally shaped crops in, candidate shifts
and normalised cross-correlation (NCC) scores out. Convention: ``shift`` is ``t`` such that
``a[x] ≈ b[x - t]`` (the content of ``b`` sits at ``+t`` in ``a``'s frame).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from imagelib.backend import fft_for, ndimage_for, to_numpy

#: fewer overlapping pixels than this (per axis) make an NCC meaningless
MIN_OVERLAP = 4
#: LoG scale (px) of the texture the NCC score is computed on
SCORE_SIGMA = 1.0
#: relative variance under which a crop counts as texture-less
FLAT_VARIANCE = 1e-10


@dataclass(frozen=True)
class Match:
    """Outcome of matching two crops: best shift, its NCC, the best distinct rival's NCC."""

    shift: np.ndarray | None
    ncc: float
    rival: float
    reason: str | None = None

    @property
    def score(self) -> float:
        """NCC of the best shift minus the best distinct rival (ambiguous peaks score low)."""
        if self.shift is None:
            return float("nan")
        return self.ncc - max(self.rival, 0.0)


def tukey(n: int, xp: ModuleType, taper: int) -> Any:
    """A 1-D Tukey window: flat middle, cosine tapers of ``taper`` samples (edges of crops hold overlap)."""
    w = np.ones(n, dtype=np.float32)
    t = min(taper, n // 2)
    if t > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(t) + 0.5) / t)
        w[:t] = ramp
        w[n - t :] = ramp[::-1]
    return xp.asarray(w)


def window(shape: tuple[int, ...], xp: ModuleType) -> Any:
    """Separable Tukey window over ``shape`` (taper 10 % of each side, at least 2 px)."""
    out = None
    for axis, n in enumerate(shape):
        w = tukey(n, xp, max(2, n // 10)).reshape([n if k == axis else 1 for k in range(len(shape))])
        out = w if out is None else out * w
    return out


def spectral_weight(shape: tuple[int, ...], sigma: float, xp: ModuleType) -> Any:
    """Gaussian low-pass over the (whitened) cross-power spectrum: LoG-like band-pass, noise-robust peak."""
    return xp.asarray(_gaussian_weight(tuple(shape), float(sigma))) if sigma else None


@functools.lru_cache(maxsize=64)
def _gaussian_weight(shape: tuple[int, ...], sigma: float) -> np.ndarray:
    weight = np.ones((1,) * len(shape), dtype=np.float32)
    for axis, n in enumerate(shape):
        f = np.fft.fftfreq(n).reshape([n if k == axis else 1 for k in range(len(shape))])
        weight = weight * np.exp(-2.0 * np.pi**2 * sigma**2 * f**2).astype(np.float32)
    return weight


def _upsampled_dft(data: Any, size: int, factor: int, offsets: np.ndarray, xp: ModuleType) -> Any:
    """Inverse DFT of ``data`` sampled on a ``factor``-times finer grid of ``size`` points per axis."""
    for n, offset in zip(data.shape[::-1], offsets[::-1], strict=True):
        freq = xp.asarray(np.fft.fftfreq(n, factor))
        kernel = xp.exp(2j * np.pi * (xp.arange(size)[:, None] - float(offset)) * freq[None, :])
        kernel = kernel.astype(data.dtype)
        # einsum, not BLAS: tiny products where threaded BLAS start-up dominates
        data = xp.einsum("ij,...j->i...", kernel, data)
    return data


def _peaks(corr: np.ndarray, count: int, radius: int) -> list[tuple[int, ...]]:
    """Indices of the ``count`` highest local maxima of ``corr`` (non-maximum suppression, wrapping)."""
    work = corr.copy()
    found: list[tuple[int, ...]] = []
    for _ in range(count):
        idx = np.unravel_index(int(np.argmax(work)), work.shape)
        if not np.isfinite(work[idx]):
            break
        found.append(tuple(int(i) for i in idx))
        region = tuple(
            np.arange(i - radius, i + radius + 1) % n for i, n in zip(idx, work.shape, strict=True)
        )
        work[np.ix_(*region)] = -np.inf
    return found


def ncc(a: Any, b: Any, shift: np.ndarray, xp: ModuleType, least: int = 1) -> tuple[float, int]:
    """NCC of ``a`` and ``b`` on their overlap under integer-rounded ``shift``, and the overlap's size.

    NaN when the overlap is thinner than :data:`MIN_OVERLAP` or flat (no division by zero escapes).
    """
    t = np.rint(shift).astype(int)
    sa, sb = [], []
    for k, (na, nb) in enumerate(zip(a.shape, b.shape, strict=True)):
        lo, hi = max(0, t[k]), min(na, nb + t[k])
        if hi - lo < min(MIN_OVERLAP, na, nb):
            return float("nan"), 0
        sa.append(slice(lo, hi))
        sb.append(slice(lo - t[k], hi - t[k]))
    size = int(np.prod([s.stop - s.start for s in sa]))
    if size < least:
        return float("nan"), size
    # The hot loop of candidate scoring: stay in the crops' float32 (pairwise sums keep the precision)
    # and off BLAS, whose thread start-up dominates products this small on a busy machine.
    x = a[tuple(sa)]
    y = b[tuple(sb)]
    x = x - x.dtype.type(x.mean())
    y = y - y.dtype.type(y.mean())
    sxx, syy = float((x * x).sum()), float((y * y).sum())
    scale = max(float(xp.abs(x).max()), float(xp.abs(y).max()), 1e-30) ** 2 * x.size
    if sxx <= FLAT_VARIANCE * scale or syy <= FLAT_VARIANCE * scale:
        return float("nan"), int(x.size)
    return float((x * y).sum()) / float(np.sqrt(sxx * syy)), int(x.size)


def _flat(x: Any, xp: ModuleType) -> bool:
    """True for crops without usable texture (constant, or nothing finite)."""
    finite = xp.isfinite(x)
    if int(finite.sum()) < x.size // 2:
        return True
    values = x[finite]
    scale = float(xp.abs(values).max()) or 1.0
    return float(values.var()) <= FLAT_VARIANCE * scale**2


def match(
    a: Any,
    b: Any,
    xp: ModuleType = np,
    *,
    sigma: float = 1.0,
    upsample: int = 10,
    peaks: int = 4,
    min_fraction: float = 0.1,
) -> Match:
    """Register ``b`` against ``a`` (same shape): phase-correlation peaks × wrap-arounds, judged by NCC."""
    if _flat(a, xp) or _flat(b, xp):
        return Match(None, float("nan"), float("nan"), "no_texture")
    # NaN/nodata never reaches the FFT: replaced by the crop's mean (zero after centring).
    a = xp.where(xp.isfinite(a), a, xp.nanmean(a)).astype(xp.float32)
    b = xp.where(xp.isfinite(b), b, xp.nanmean(b)).astype(xp.float32)
    corr = to_numpy(fft_for(xp).ifftn(cross_power(a, b, sigma, xp)).real)
    # Candidates are judged on band-passed crops: smooth structure and illumination correlate at wrong
    # shifts too, fine texture only at the right one.
    ha, hb = bandpass(a, xp), bandpass(b, xp)
    shape = np.array(a.shape)
    # Small overlaps correlate well by chance: a candidate must cover ``min_fraction`` of the crop.
    least = max(1, int(min_fraction * a.size))
    # Shifts closer than this are the same correlation lobe, not rivals.
    lobe = max(4, round(4 * sigma))
    candidates: list[tuple[np.ndarray, float, int]] = []
    for peak in _peaks(corr, peaks, radius=lobe):
        # Integer peaks are enough to tell candidates apart; only the winner is refined (polish).
        base = np.where(np.array(peak) > shape // 2, np.array(peak) - shape, np.array(peak)).astype(float)
        # The FFT only knows the shift modulo the crop: every wrap-around is a candidate.
        for wraps in itertools.product((-1, 0, 1), repeat=len(shape)):
            shift = base + np.array(wraps) * shape
            score, size = ncc(ha, hb, shift, xp, least)
            if np.isfinite(score) and size >= least:
                candidates.append((shift, score, size))
    if not candidates:
        return Match(None, float("nan"), float("nan"), "no_texture")
    candidates.sort(key=lambda c: -c[1])
    best, best_ncc, best_size = candidates[0]
    best, best_ncc, curve = climb(ha, hb, best, best_ncc, least, xp)
    best = polish(a, b, best, curve, sigma, upsample, xp)
    # A rival is another shift far from the best (not the same peak re-sampled) over a comparable
    # overlap: periodic textures give rivals as good as the best, which must lower the score.
    rivals = [
        s
        for shift, s, size in candidates[1:]
        if np.max(np.abs(shift - best)) > lobe and size >= best_size // 2
    ]
    return Match(best, best_ncc, max(rivals) if rivals else float("nan"))


def bandpass(x: Any, xp: ModuleType, sigma: float = SCORE_SIGMA) -> Any:
    """Negated Laplacian of the Gaussian-smoothed crop: the fine texture the NCC score is computed on."""
    ndi = ndimage_for(xp)
    return -ndi.laplace(ndi.gaussian_filter(x, sigma, mode="reflect", truncate=2.5), mode="reflect")


def cross_power(a: Any, b: Any, sigma: float, xp: ModuleType) -> Any:
    """Whitened, Gaussian-weighted cross-power spectrum of the windowed, centred crops."""
    fft = fft_for(xp)
    win = window(a.shape, xp)
    product = fft.fftn((a - a.mean()) * win) * xp.conj(fft.fftn((b - b.mean()) * win))
    product /= xp.abs(product) + 1e-12 * float(xp.abs(product).max() + 1e-30)
    weight = spectral_weight(a.shape, sigma, xp)
    return product if weight is None else product * weight


def overlap(a: Any, b: Any, shift: np.ndarray) -> tuple[Any, Any]:
    """The parts of ``a`` and ``b`` that hold the same content under the integer-rounded ``shift``."""
    t = np.rint(shift).astype(int)
    sa = tuple(slice(max(0, t[k]), min(a.shape[k], b.shape[k] + t[k])) for k in range(a.ndim))
    sb = tuple(slice(s.start - t[k], s.stop - t[k]) for k, s in enumerate(sa))
    return a[sa], b[sb]


def climb(
    ha: Any, hb: Any, shift: np.ndarray, score: float, least: int, xp: ModuleType
) -> tuple[np.ndarray, float, np.ndarray]:
    """Integer hill-climb of the NCC from ``shift``; also the NCC curvature offsets per axis.

    The phase-correlation peak of thin overlaps sits at the window's tapered ends and is biased;
    the NCC on the unwindowed overlap is not. Returns (shift, NCC, per-axis parabola vertex offset).
    """
    t = np.rint(shift)
    steps = [sign * np.eye(t.size, dtype=int)[k] for k in range(t.size) for sign in (-1, 1)]
    for _ in range(8):  # coordinate ascent: the NCC lobe is smooth, a few axis steps reach its top
        trials = [(ncc(ha, hb, t + d, xp, least), d) for d in steps]
        value, move = max(
            ((v, d) for (v, size), d in trials if np.isfinite(v) and size >= least), default=(-2, 0)
        )
        if value <= score:
            break
        t, score = t + move, value
    vertex = np.zeros(t.size)
    for k in range(t.size):
        unit = np.eye(t.size)[k]
        lo, hi = ncc(ha, hb, t - unit, xp)[0], ncc(ha, hb, t + unit, xp)[0]
        denom = lo - 2 * score + hi
        if np.isfinite(denom) and denom < 0:
            vertex[k] = float(np.clip(0.5 * (lo - hi) / denom, -0.5, 0.5))
    return t, score, vertex


def polish(
    a: Any, b: Any, t: np.ndarray, vertex: np.ndarray, sigma: float, upsample: int, xp: ModuleType
) -> np.ndarray:
    """Sub-pixel shift: phase correlation of the aligned overlaps (thick ones), else the NCC parabola."""
    part_a, part_b = overlap(a, b, t)
    if upsample <= 1 or min(part_a.shape) < 2 * MIN_OVERLAP:
        return t + vertex
    product = cross_power(part_a, part_b, sigma, xp)
    delta = _refine(product, np.zeros(a.ndim), np.array(part_a.shape), upsample, xp)
    return t + delta if np.all(np.abs(delta) <= 1.0) else t + vertex


def _refine(product: Any, peak: np.ndarray, shape: np.ndarray, upsample: int, xp: ModuleType) -> np.ndarray:
    """Sub-pixel position of an integer peak by an upsampled DFT around it (Guizar-Sicairos 2008)."""
    shift = np.where(peak > shape // 2, peak - shape, peak).astype(float)
    if upsample <= 1:
        return shift
    size = int(np.ceil(upsample * 1.5))
    centre = np.fix(size / 2.0)
    offsets = centre - shift * upsample
    local = to_numpy(_upsampled_dft(product, size, upsample, offsets, xp).real)
    idx = np.array(np.unravel_index(int(np.argmax(local)), local.shape), dtype=float)
    return shift + (idx - centre) / upsample
