"""Content rules: a chunked read-through that accumulates NaN/inf counts and value ranges.

The accumulator is fed block by block, so ingest can validate while it writes the multiscale store
(each pixel is read once) and memory stays flat in input size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import xarray as xr

from imagelib.errors import ImagelibError, InputError
from imagelib.formats.lazy import is_tiled
from imagelib.validation.rules import RuleSet

Issue = dict[str, Any]
BLOCK_BYTES = 64 * 1024 * 1024
STRIP_ROWS = 1024  # a multiple of the stored chunk height, so each strip fills whole chunks


def iter_blocks(
    data: xr.DataArray, block_bytes: int | None = None
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """Yield ``(index, numpy block)`` covering the array, all bands (or a slab of z planes) per block.

    A striped source is read in y strips of whole rows (each strip decoded once). A tiled one is read in
    ``STRIP_ROWS``² blocks in Z order (``index`` then also has an x slice): memory stays flat in the
    image's width, and each aligned 2ᵏ × 2ᵏ square of blocks arrives contiguously (the pyramid writer
    completes each lower-level chunk as soon as its four children are in)."""
    # looked up per call (not bound as a default) so a caller or test can change the module's budget
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    height, width = data.shape[-2], data.shape[-1]
    tiled = is_tiled(data.encoding, width)
    # one plane of one read: a 2·STRIP_ROWS square (Z order), else STRIP_ROWS whole rows
    side = 2 * STRIP_ROWS
    read_bytes = (min(height, side) * min(width, side) if tiled else STRIP_ROWS * width) * data.dtype.itemsize
    if data.ndim == 2:
        leads: list[tuple[slice, ...]] = [()]
    elif data.dims[0] == "band":
        leads = [(slice(0, data.shape[0]),)]
        read_bytes *= data.shape[0]
    else:  # z: as many planes per block as the budget allows
        step = max(1, block_bytes // max(1, read_bytes))
        leads = [(slice(z, min(z + step, data.shape[0])),) for z in range(0, data.shape[0], step)]
        read_bytes *= step  # a read spans the slab's planes: keep it within the budget
    rows = STRIP_ROWS * max(1, block_bytes // max(1, read_bytes))
    for lead in leads:
        if tiled:
            yield from _z_order_blocks(data, lead)
            continue
        for y0 in range(0, height, rows):
            index = (*lead, slice(y0, min(y0 + rows, height)))
            yield index, read_block(data, index)


def _z_order_blocks(
    data: xr.DataArray, lead: tuple[slice, ...]
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """``STRIP_ROWS``² blocks in Z order, read four at a time (a 2×2 square is contiguous in Z order):
    a quarter of the reads, each one dask chunk (see :func:`imagelib.formats.lazy.yx_chunks`)."""
    side, (height, width) = STRIP_ROWS, data.shape[-2:]
    for qy, qx in z_order(-(-height // (2 * side)), -(-width // (2 * side))):
        y0, x0 = 2 * side * qy, 2 * side * qx
        quad = read_block(
            data, (*lead, slice(y0, min(y0 + 2 * side, height)), slice(x0, min(x0 + 2 * side, width)))
        )
        for dy, dx in ((0, 0), (0, side), (side, 0), (side, side)):
            if dy < quad.shape[-2] and dx < quad.shape[-1]:
                block = quad[..., dy : dy + side, dx : dx + side]
                rows, cols = (
                    slice(y0 + dy, y0 + dy + block.shape[-2]),
                    slice(x0 + dx, x0 + dx + block.shape[-1]),
                )
                yield (*lead, rows, cols), block


def z_order(rows: int, cols: int) -> Iterator[tuple[int, int]]:
    """The cells of a ``rows × cols`` grid in Morton (Z) order: every aligned 2ᵏ × 2ᵏ square of cells,
    cut to the grid, is visited contiguously."""
    side = 1
    while side < max(rows, cols):
        side *= 2

    def visit(y: int, x: int, size: int) -> Iterator[tuple[int, int]]:
        if y >= rows or x >= cols:
            return
        if size == 1:
            yield y, x
            return
        half = size // 2
        for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
            yield from visit(y + dy * half, x + dx * half, half)

    return visit(0, 0, side)


def read_block(data: xr.DataArray, index: tuple[slice, ...]) -> np.ndarray:
    """Compute one block; any decoder failure becomes a coded TRUNCATED/FORMAT_CORRUPT error."""
    try:
        return _as_numpy(data.data[index])
    except ImagelibError:
        raise
    except Exception as exc:
        text = str(exc)
        code = (
            "TRUNCATED"
            if any(w in text.lower() for w in ("trunc", "eof", "short", "end of file"))
            else "FORMAT_CORRUPT"
        )
        raise InputError(f"reading pixels failed at {index}: {text}", code=code, field="pixels") from exc


def _as_numpy(block: Any) -> np.ndarray:
    """A block as NumPy. A block of one dask chunk is computed as a Delayed and handed over read-only:
    ``np.asarray`` copies single-chunk results (dask guards against aliasing a buffer of the graph),
    a second allocation and copy of every strip — 48 MB each for a 16000-wide RGB image, ~1 s of an
    805 MB ingest. The one task runs in this thread (dask's synchronous scheduler): a pool gains nothing
    for one task, and each hand-off to a pool thread waits for the GIL, which an ingest's writer and hash
    threads hold often."""
    if getattr(block, "npartitions", None) != 1:
        return np.asarray(block)
    (chunk,) = block.to_delayed().ravel()
    out = np.asarray(chunk.compute(scheduler="sync"))
    out.flags.writeable = False  # it may alias the reader's buffer: nothing downstream writes into it
    return out


class ContentStats:
    """Per-band min/max over valid pixels, NaN and inf counts."""

    def __init__(self, data: xr.DataArray):
        self.banded = data.dims[0] == "band"
        self.bands = data.sizes["band"] if self.banded else 1
        nodata = data.attrs.get("nodata")
        self.nodata = None if nodata is None or np.isnan(nodata) else nodata
        self.is_float = data.dtype.kind == "f"
        self.minimum = np.full(self.bands, np.inf)
        self.maximum = np.full(self.bands, -np.inf)
        self.valid = np.zeros(self.bands, dtype=np.int64)
        self.nan = 0
        self.inf = 0

    def update(self, block: np.ndarray) -> None:
        """Fold one block (with the leading band axis when banded) into the totals."""
        planes = block if self.banded else block[None]
        for i, plane in enumerate(planes):
            if self.nodata is None and not self.is_float:  # fast path: every pixel is valid
                self._fold(i, float(plane.min()), float(plane.max()), plane.size)
                continue
            mask = np.ones(plane.shape, dtype=bool) if self.nodata is None else plane != self.nodata
            if self.is_float:
                nan = np.isnan(plane)
                inf = np.isinf(plane)
                self.nan += int(nan.sum())
                self.inf += int(inf.sum())
                mask &= ~(nan | inf)
            count = int(mask.sum())
            if count:
                values = plane[mask]
                self._fold(i, float(values.min()), float(values.max()), count)

    def _fold(self, band: int, low: float, high: float, count: int) -> None:
        self.minimum[band] = min(self.minimum[band], low)
        self.maximum[band] = max(self.maximum[band], high)
        self.valid[band] += count

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals."""
        finite = self.valid > 0
        return {
            "min": [float(v) if ok else None for v, ok in zip(self.minimum, finite, strict=True)],
            "max": [float(v) if ok else None for v, ok in zip(self.maximum, finite, strict=True)],
            "valid_pixels": self.valid.tolist(),
            "nan_pixels": self.nan,
            "inf_pixels": self.inf,
        }

    def issues(self, rules: RuleSet) -> list[Issue]:
        """Content rule violations found so far."""
        out: list[Issue] = []
        if rules.nan == "forbid" and self.nan:
            out.append(
                {
                    "code": "NAN_FORBIDDEN",
                    "message": f"{self.nan} NaN pixels",
                    "field": "pixels",
                    "expected": 0,
                    "found": self.nan,
                }
            )
        if rules.inf == "forbid" and self.inf:
            out.append(
                {
                    "code": "INF_FORBIDDEN",
                    "message": f"{self.inf} infinite pixels",
                    "field": "pixels",
                    "expected": 0,
                    "found": self.inf,
                }
            )
        if rules.value_range and self.valid.any():
            lo, hi = rules.value_range
            found = [float(self.minimum[self.valid > 0].min()), float(self.maximum[self.valid > 0].max())]
            if found[0] < lo or found[1] > hi:
                out.append(
                    {
                        "code": "VALUE_OUT_OF_RANGE",
                        "message": f"values {found} outside [{lo}, {hi}]",
                        "field": "pixels",
                        "expected": [lo, hi],
                        "found": found,
                    }
                )
        return out


def read_through(
    data: xr.DataArray, on_block: Callable[[tuple[slice, ...], np.ndarray], None] | None = None
) -> ContentStats:
    """Read every pixel once, chunk by chunk; ``on_block`` sees each block (ingest writes it)."""
    stats = ContentStats(data)
    for index, block in iter_blocks(data):
        stats.update(block)
        if on_block:
            on_block(index, block)
    return stats
