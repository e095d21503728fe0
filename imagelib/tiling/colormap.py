"""Colormaps for single-band data: 256-entry RGB lookup tables, piecewise-linear through anchors
(perceptual maps sampled from matplotlib's definitions at nine points)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imagelib.errors import ImagelibError

ANCHORS: dict[str, list[tuple[int, int, int]]] = {
    "gray": [(0, 0, 0), (255, 255, 255)],
    "viridis": [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    "magma": [
        (0, 0, 4),
        (28, 16, 68),
        (79, 18, 123),
        (129, 37, 129),
        (181, 54, 122),
        (229, 80, 100),
        (251, 135, 97),
        (254, 194, 135),
        (252, 253, 191),
    ],
    "inferno": [
        (0, 0, 4),
        (31, 12, 72),
        (85, 15, 109),
        (136, 34, 106),
        (186, 54, 85),
        (227, 89, 51),
        (249, 140, 10),
        (249, 201, 50),
        (252, 255, 164),
    ],
    "coolwarm": [(59, 76, 192), (221, 221, 221), (180, 4, 38)],
}


def lut(colormap: str | Sequence[Sequence[int]]) -> np.ndarray:
    """A ``(256, 3)`` uint8 table from a colormap name or a list of RGB anchors (evenly spaced)."""
    if isinstance(colormap, str):
        if colormap not in ANCHORS:
            raise ImagelibError(
                f"unknown colormap {colormap!r}",
                code="PARAM_INVALID",
                field="colormap",
                expected=sorted(ANCHORS),
                found=colormap,
            )
        colormap = ANCHORS[colormap]
    anchors = np.asarray(colormap, dtype=np.float64)
    if anchors.ndim != 2 or anchors.shape[1] != 3 or len(anchors) < 2:
        raise ImagelibError(
            "a colormap is a list of at least two [r, g, b] anchors", code="PARAM_INVALID", field="colormap"
        )
    at = np.linspace(0, 255, len(anchors))
    table = [np.interp(np.arange(256), at, anchors[:, c]) for c in range(3)]
    return np.clip(np.rint(np.stack(table, axis=1)), 0, 255).astype(np.uint8)
