"""Synthetic mosaics with a known truth: a continuous textured field cut into jittered, noisy tiles.

The field is a cubic B-spline over random lattices (band-limited noise plus sparse bright blobs), so it
can be sampled exactly at any sub-pixel origin: tiles carry true fractional positions without any
resampling error. Used by the tests, the benchmark and the notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imagelib.stitching.layout import Layout

#: lattice cells before position 0 (the lattices are ``extent / spacing + 2 * MARGIN`` long)
MARGIN = 2


def _bspline3(t: np.ndarray) -> np.ndarray:
    """The cubic B-spline kernel."""
    a = np.abs(t)
    return np.where(a < 1, 2 / 3 - a**2 + a**3 / 2, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))


@dataclass(frozen=True)
class Lattice:
    """One B-spline layer: coefficients on a lattice of ``spacing`` px."""

    coeffs: np.ndarray
    spacing: float

    def sample(self, origin: Sequence[float], shape: Sequence[int]) -> np.ndarray:
        """The layer on the grid ``origin + index`` (float64)."""
        weights, window = [], []
        for axis, (o, n) in enumerate(zip(origin, shape, strict=True)):
            u = (o + np.arange(n)) / self.spacing + MARGIN  # lattice index 0 sits MARGIN cells before 0
            base = np.floor(u).astype(np.int64)
            k0 = int(base[0]) - 1
            size = int(base[-1]) + 3 - k0
            w = np.zeros((n, size))
            for m in (-1, 0, 1, 2):  # the four non-zero B-spline taps of each sample
                idx = base + m
                w[np.arange(n), idx - k0] = _bspline3(u - idx)
            if k0 < 0 or k0 + size > self.coeffs.shape[axis]:
                raise ValueError("sample outside the field")
            weights.append(w)
            window.append(slice(k0, k0 + size))
        out = self.coeffs[tuple(window)]
        for axis, w in enumerate(weights):
            out = np.moveaxis(np.tensordot(w, out, axes=(1, axis)), 0, axis)
        return out


@dataclass(frozen=True)
class Field:
    """A continuous test field (sum of B-spline layers), values roughly in [0, 1]."""

    layers: tuple[Lattice, ...]
    base: float = 0.5

    def sample(self, origin: Sequence[float], shape: Sequence[int]) -> np.ndarray:
        """The field on the grid ``origin + index``."""
        return self.base + sum(layer.sample(origin, shape) for layer in self.layers)


def textured_field(extent: Sequence[float], seed: int, *, fine: float = 3.0, blobs: float = 0.004) -> Field:
    """Band-limited noise (``fine`` px lattice + 4× coarser structure) plus sparse bright blobs."""
    rng = np.random.default_rng(seed)
    layers = []
    for spacing, amplitude in ((fine, 0.12), (4 * fine, 0.15)):
        shape = tuple(int(np.ceil(e / spacing)) + 4 for e in extent)
        layers.append(Lattice(rng.normal(0, amplitude, shape), spacing))
    shape = tuple(int(np.ceil(e / (2 * fine))) + 4 for e in extent)
    spots = (rng.random(shape) < blobs) * rng.uniform(0.5, 1.0, shape)
    layers.append(Lattice(spots, 2 * fine))
    return Field(tuple(layers))


def periodic_field(extent: Sequence[float], period: float) -> Field:
    """A purely periodic texture (a checker of B-spline bumps every ``period``/2 px)."""
    step = period / 4
    shape = tuple(int(np.ceil(e / step)) + 4 for e in extent)
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    coeffs = np.cos(np.pi * sum(grids) / 2) * 0.5
    return Field((Lattice(coeffs, step),), base=0.5)


def vignette(shape: Sequence[int], corner: float = 0.6) -> np.ndarray:
    """Radial illumination falloff over the last two axes: 1 at the centre, ``corner`` at the corners."""
    h, w = shape[-2], shape[-1]
    y = (np.arange(h) - (h - 1) / 2) / ((h - 1) / 2)
    x = (np.arange(w) - (w - 1) / 2) / ((w - 1) / 2)
    r2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2
    plane = 1 - (1 - corner) * r2
    return np.broadcast_to(plane, tuple(shape)).astype(np.float32)


@dataclass
class Mosaic:
    """Tiles cut from a field at known positions, and what is needed to check a stitch against them."""

    tiles: list[np.ndarray]
    layout: Layout
    truth: np.ndarray
    field: Field
    gain: float
    background: float
    flat: np.ndarray
    noise_sigma: float
    snr_db: float
    jitter: np.ndarray


def cut(
    field: Field,
    layout: Layout,
    *,
    jitter: float | Sequence[float],
    seed: int,
    snr_db: float | None = 15.0,
    corner: float = 0.6,
    gain: float = 2000.0,
    background: float = 200.0,
    dtype: str = "uint16",
    blank: Sequence[int] = (),
    poisson: bool = True,
) -> Mosaic:
    """Cut ``field`` at nominal + uniform jitter (fractional), with vignetting and Poisson+Gaussian noise.

    ``blank`` tiles see only the background (no texture). The noise is set for ``snr_db`` =
    10·log10(signal variance / noise variance) on the clean tiles; ``snr_db=None`` gives noiseless tiles,
    ``poisson=False`` Gaussian noise only.
    """
    rng = np.random.default_rng(seed)
    jit = np.broadcast_to(np.asarray(jitter, dtype=float), (layout.ndim,))
    offsets = rng.uniform(-1, 1, layout.positions.shape) * jit
    margin = jit + 8.0
    truth = layout.positions + offsets + margin
    shape = tuple(int(n) for n in layout.tile_shapes[0])
    flat = vignette(shape, corner)
    clean = []
    for k, origin in enumerate(truth):
        values = field.sample(origin, shape) if k not in blank else np.zeros(shape)
        clean.append(background + gain * values * flat)
    signal_var = float(np.mean([c.var() for k, c in enumerate(clean) if k not in blank] or [1.0]))
    noise_var = signal_var / 10 ** (snr_db / 10) if snr_db is not None else 0.0
    tiles = []
    for c in clean:
        if noise_var and poisson:
            photons = rng.poisson(np.clip(c, 0, None)).astype(np.float64)
            read = np.sqrt(max(noise_var - float(c.mean()), 0.0))
            c = photons + rng.normal(0, read, c.shape)
        elif noise_var:
            c = c + rng.normal(0, np.sqrt(noise_var), c.shape).astype(np.float32)
        if np.issubdtype(np.dtype(dtype), np.integer):
            info = np.iinfo(dtype)
            c = np.clip(np.rint(c), info.min, info.max)
        tiles.append(c.astype(dtype))
    return Mosaic(
        tiles,
        layout,
        truth,
        field,
        gain,
        background,
        flat,
        float(np.sqrt(noise_var)),
        snr_db or float("inf"),
        offsets,
    )


def rms_error(solved: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """RMS and max position error (Euclidean, px) after removing the free global translation."""
    keep = np.ones(len(truth), bool) if mask is None else np.asarray(mask, bool)
    diff = solved[keep] - truth[keep]
    diff = diff - diff.mean(axis=0)
    norms = np.linalg.norm(diff, axis=1)
    return float(np.sqrt(np.mean(norms**2))), float(norms.max())
