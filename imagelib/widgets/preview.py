"""Preview rendering: run a chain on a small region (with halo context) and encode it as PNG."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from imagelib.backend import to_numpy
from imagelib.filters import apply_chain, chain_halo
from imagelib.filters.chain import split_dims

MAX_PREVIEW_HALO = 128


def default_region(shape: tuple[int, ...], size: int = 256) -> tuple[slice, slice]:
    """A centred ``size``² window on the last two (y, x) axes."""
    y, x = shape[-2:]
    h, w = min(size, y), min(size, x)
    return slice((y - h) // 2, (y - h) // 2 + h), slice((x - w) // 2, (x - w) // 2 + w)


def region_result(data: Any, chain: list[dict[str, Any]], region: tuple[slice, slice]) -> np.ndarray:
    """The chain's output on ``region`` (y, x slices) of an xarray.DataArray, computed with enough
    surrounding context (the chain's halo, capped) that the region matches the whole-image result."""
    _, ndim = split_dims(data.dims)
    halo = [min(h, MAX_PREVIEW_HALO) for h in chain_halo(chain, ndim)[-2:]] if chain else [0, 0]
    sy, sx = region
    ny, nx = data.shape[-2:]
    y0, y1 = max(0, sy.start - halo[0]), min(ny, sy.stop + halo[0])
    x0, x1 = max(0, sx.start - halo[1]), min(nx, sx.stop + halo[1])
    window = data.isel({data.dims[-2]: slice(y0, y1), data.dims[-1]: slice(x0, x1)})
    out = apply_chain(window.compute(), chain, backend="numpy") if chain else window.compute()
    trimmed = out.isel(
        {out.dims[-2]: slice(sy.start - y0, sy.stop - y0), out.dims[-1]: slice(sx.start - x0, sx.stop - x0)}
    )
    return to_numpy(trimmed.values)


def to_display(result: np.ndarray, dims: tuple[str, ...]) -> np.ndarray:
    """A 2D (grey) or y,x,3 (RGB, when there are 3 bands) view; 3D volumes show their middle slice."""
    has_band, ndim = split_dims(dims)
    if ndim == 3:
        mid = result.shape[-3] // 2
        result = result[:, mid] if has_band else result[mid]
    if has_band:
        result = np.moveaxis(result[:3], 0, -1) if result.shape[0] >= 3 else result[0]
    return result


def png_bytes(image: np.ndarray) -> bytes:
    """8-bit PNG of a float image, stretched between its 2nd and 98th percentiles (NaN → black)."""
    from PIL import Image

    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    scaled = np.nan_to_num((image - lo) / ((hi - lo) or 1.0), nan=0.0, posinf=1.0, neginf=0.0)
    buf = io.BytesIO()
    Image.fromarray((np.clip(scaled, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
