"""2D/3D mosaic stitching: phase correlation per edge, global least squares, lazy fusion (DESIGN.md)."""

from __future__ import annotations

from imagelib.stitching.fuse import fuse
from imagelib.stitching.layout import Layout
from imagelib.stitching.pairs import Edge, register_pairs
from imagelib.stitching.register import Registration, StitchParams, StitchWarning, register
from imagelib.stitching.solve import solve
from imagelib.stitching.stitch import StitchResult, stitch

__all__ = [
    "Edge",
    "Layout",
    "Registration",
    "StitchParams",
    "StitchResult",
    "StitchWarning",
    "fuse",
    "register",
    "register_pairs",
    "solve",
    "stitch",
]
