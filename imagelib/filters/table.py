"""Leading band_scale/clip ops on 8/16-bit integer pixels through a per-band lookup table.

A chain on integer pixels first converts them to float32 and then (typically) rescales them: two or three
full passes in float32/float64 per band. Both are pointwise and use only correctly rounded arithmetic (one
subtraction, multiplication and addition in float64, a clip, a cast), so running them once on every
possible input value and looking the result up gives the same bits as running them on the pixels. For a
uint8 RGB tile that is one table lookup instead of about a dozen array passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from imagelib.backend import CV2_MAX_SIZE, cv2_module
from imagelib.filters.base import Op
from imagelib.filters.lazy import run_ops
from imagelib.filters.ops_band import BandScale, Clip

#: pointwise ops whose float arithmetic is correctly rounded (gamma's ``**`` is not: a table could
#: differ from the SIMD loop in the last bit)
TABLE_OPS = (BandScale, Clip)
#: build a table only when a band has this many times more pixels than the table has entries
MIN_PIXELS_PER_ENTRY = 4


def table_prefix(ops: list[Op]) -> int:
    """How many of the chain's leading ops a table can replace."""
    n = 0
    while n < len(ops) and type(ops[n]) in TABLE_OPS:
        n += 1
    return n


def tabulable(stack: Any, ops: list[Op]) -> bool:
    """Whether :func:`run_table` applies: a NumPy ``(band, ...)`` array of ≤16-bit integers, large enough,
    and a chain that starts with band_scale/clip."""
    if not isinstance(stack, np.ndarray) or stack.dtype.kind not in "ui" or stack.dtype.itemsize > 2:
        return False
    entries = 1 << (8 * stack.dtype.itemsize)
    return stack.ndim >= 2 and stack[0].size >= MIN_PIXELS_PER_ENTRY * entries and table_prefix(ops) > 0


def run_table(stack: np.ndarray, ops: list[Op], working: np.dtype) -> np.ndarray:
    """``run_ops(stack.astype(working), ops)`` for table ops only (check :func:`tabulable` first)."""
    info = np.iinfo(stack.dtype)
    values = np.arange(info.min, info.max + 1, dtype=np.int64).astype(stack.dtype)
    rows = np.broadcast_to(values.astype(working), (stack.shape[0], values.size))
    table = run_ops(np.ascontiguousarray(rows), ops, np)
    out = np.empty(stack.shape, table.dtype)
    cv2 = cv2_module() if stack.dtype == np.uint8 and stack[0].size < CV2_MAX_SIZE else None
    for b in range(stack.shape[0]):
        if cv2 is not None:  # OpenCV's LUT is about 2.5× faster than np.take for 8-bit indices
            plane = np.ascontiguousarray(stack[b]).reshape(-1, stack.shape[-1])  # a volume's band as 2D
            out[b] = cv2.LUT(plane, table[b]).reshape(out[b].shape)
            continue
        index = stack[b] if info.min == 0 else stack[b].astype(np.int32) - info.min
        np.take(table[b], index, out=out[b])
    return out
