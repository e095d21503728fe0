"""Nominal tile positions (``y,x`` or ``z,y,x``, pixels): constructors, JSON form and validation."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from imagelib.errors import InputError

Order = Literal["row-major", "snake"]
Origin = Literal["top-left", "top-right", "bottom-left", "bottom-right"]


def _mismatch(message: str, **fields: Any) -> InputError:
    return InputError(message, code="STITCH_LAYOUT_MISMATCH", field="layout", **fields)


@dataclass(frozen=True)
class Layout:
    """Nominal top-left corner of every tile (N × ndim, pixels) and each tile's shape (N × ndim)."""

    positions: np.ndarray
    tile_shapes: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        positions = np.asarray(self.positions, dtype=np.float64)
        shapes = np.asarray(self.tile_shapes, dtype=np.int64)
        if positions.ndim != 2 or positions.shape[1] not in (2, 3):
            raise _mismatch(
                "layout positions must be an (N, 2) or (N, 3) array (y,x or z,y,x)",
                found=list(positions.shape),
            )
        if shapes.ndim == 1:
            shapes = np.broadcast_to(shapes, positions.shape).copy()
        if shapes.shape != positions.shape:
            raise _mismatch(
                "layout tile_shapes must give one shape per tile, with the positions' dims",
                expected=list(positions.shape),
                found=list(shapes.shape),
            )
        if not np.all(np.isfinite(positions)) or np.any(shapes <= 0):
            raise _mismatch("layout positions must be finite and tile shapes positive")
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "tile_shapes", shapes)
        self.validate()

    @property
    def ndim(self) -> int:
        """2 for ``y,x`` tiles, 3 for ``z,y,x`` tiles."""
        return int(self.positions.shape[1])

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def validate(self) -> None:
        """Refuse zero tiles and duplicate positions (``STITCH_LAYOUT_MISMATCH``)."""
        if len(self) == 0:
            raise _mismatch("the layout has no tiles", found=0)
        _, first, counts = np.unique(self.positions, axis=0, return_index=True, return_counts=True)
        if np.any(counts > 1):
            dup = [int(i) for i in first[counts > 1]]
            raise _mismatch(f"duplicate tile positions (first tiles: {dup})", found=dup)

    def boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """Nominal (start, stop) corners of every tile box."""
        return self.positions, self.positions + self.tile_shapes

    def intersection(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """The nominal boxes' intersection of tiles ``i`` and ``j`` (stop ≤ start on an axis: none)."""
        lo = np.maximum(self.positions[i], self.positions[j])
        hi = np.minimum(self.positions[i] + self.tile_shapes[i], self.positions[j] + self.tile_shapes[j])
        return lo, hi

    def neighbours(self, *, diagonal: bool = False) -> list[tuple[int, int]]:
        """Pairs (i < j) whose nominal boxes really intersect on every axis.

        Without ``diagonal`` a pair must overlap by more than half of the smaller tile on all axes but one
        (face neighbours); corner-only contacts are kept with ``diagonal=True``.
        """
        lo_all, hi_all = self.boxes()
        pairs = []
        for i in range(len(self) - 1):  # vectorised over j > i: O(N) Python steps for N tiles
            lo = np.maximum(lo_all[i], lo_all[i + 1 :])
            hi = np.minimum(hi_all[i], hi_all[i + 1 :])
            extent = hi - lo
            smaller = np.minimum(self.tile_shapes[i], self.tile_shapes[i + 1 :])
            partial = np.sum(extent < 0.5 * smaller, axis=1)
            keep = np.all(extent > 0, axis=1) & (diagonal | (partial <= 1))
            pairs.extend((i, i + 1 + int(k)) for k in np.flatnonzero(keep))
        return pairs

    def isolated(self) -> list[int]:
        """Tiles whose nominal box touches no other tile's box."""
        touched = {k for pair in self.neighbours(diagonal=True) for k in pair}
        return [k for k in range(len(self)) if k not in touched]

    def mosaic_shape(self) -> tuple[int, ...]:
        """The nominal mosaic's shape (bounding box of all tiles)."""
        lo, hi = self.boxes()
        return tuple(int(np.ceil(v)) for v in hi.max(axis=0) - lo.min(axis=0))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def grid(
        cls,
        shape: Sequence[int],
        tile_shape: Sequence[int],
        overlap: float | Sequence[float] = 0.1,
        *,
        order: Order = "row-major",
        origin: Origin = "top-left",
    ) -> Layout:
        """A regular grid: ``shape`` = (rows, cols) or (layers, rows, cols), ``overlap`` a fraction per axis.

        ``order`` is the acquisition order of the tiles (``snake`` reverses every other row);
        ``origin`` the corner where the first tile was taken.
        """
        shape = tuple(int(n) for n in shape)
        tile = np.asarray(tile_shape, dtype=np.int64)
        if len(shape) not in (2, 3) or len(tile) != len(shape) or min(shape) < 1:
            raise _mismatch("grid shape and tile_shape must both be 2-D or 3-D", found=[shape, list(tile)])
        frac = np.broadcast_to(np.asarray(overlap, dtype=np.float64), (len(shape),))
        if np.any(frac < 0) or np.any(frac >= 1):
            raise _mismatch("grid overlap must be in [0, 1)", found=frac.tolist())
        step = tile - np.rint(tile * frac).astype(np.int64)
        flip = {"top-left": (False, False), "top-right": (False, True)}.get(origin) or {
            "bottom-left": (True, False),
            "bottom-right": (True, True),
        }.get(origin)
        if flip is None or order not in ("row-major", "snake"):
            raise _mismatch(f"unknown grid order/origin {order!r}/{origin!r}", field="layout")
        positions = []
        for index in np.ndindex(*shape):
            idx = list(index)
            if order == "snake" and idx[-2] % 2 == 1:
                idx[-1] = shape[-1] - 1 - idx[-1]
            if flip[0]:
                idx[-2] = shape[-2] - 1 - idx[-2]
            if flip[1]:
                idx[-1] = shape[-1] - 1 - idx[-1]
            positions.append(np.array(idx) * step)
        meta = {"grid": list(shape), "overlap": frac.tolist(), "order": order, "origin": origin}
        return cls(
            np.array(positions, dtype=np.float64), np.broadcast_to(tile, (len(positions), len(shape))), meta
        )

    @classmethod
    def from_positions(
        cls,
        positions: Any,
        tile_shape: Sequence[int] | Any,
        *,
        units: Literal["px", "um"] = "px",
        pixel_size: float | Sequence[float] | None = None,
    ) -> Layout:
        """Positions (N × ndim) in pixels, or in micrometres with ``pixel_size`` (µm per pixel, per axis)."""
        pos = np.asarray(positions, dtype=np.float64)
        if units == "um":
            if pixel_size is None:
                raise _mismatch("positions in 'um' need pixel_size", field="pixel_size")
            pos = pos / np.asarray(pixel_size, dtype=np.float64)
        elif units != "px":
            raise _mismatch(f"unknown position units {units!r}", expected=["px", "um"], found=units)
        if pos.ndim == 2 and len(pos):
            pos = pos - pos.min(axis=0)
        return cls(pos, np.asarray(tile_shape, dtype=np.int64))

    @classmethod
    def from_ome(cls, sources: Sequence[str | Path], tile_shape: Sequence[int]) -> Layout:
        """Stage positions from OME-XML (``Plane/@PositionX/Y/Z`` or ``StagePosition``) of each tile.

        ``sources`` are OME-TIFF paths or OME-XML strings, one per tile; positions are converted to
        pixels with each image's ``PhysicalSize*``.
        """
        rows = [_ome_position(source, len(tile_shape)) for source in sources]
        return cls.from_positions(np.array(rows), tile_shape)

    @classmethod
    def from_json(cls, value: str | Path | dict[str, Any]) -> Layout:
        """A layout from its JSON form (a dict, a JSON string or a file path)."""
        if isinstance(value, Path) or (isinstance(value, str) and not value.lstrip().startswith("{")):
            value = Path(value).read_text()
        doc = json.loads(value) if isinstance(value, str) else value
        if not isinstance(doc, dict) or "positions" not in doc or "tile_shape" not in doc:
            raise _mismatch("a layout JSON needs 'positions' and 'tile_shape'")
        return cls.from_positions(
            doc["positions"],
            doc["tile_shape"],
            units=doc.get("units", "px"),
            pixel_size=doc.get("pixel_size"),
        )

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form (stored in the stitch op): pixels, one shape when all tiles agree."""
        same = bool(np.all(self.tile_shapes == self.tile_shapes[0]))
        positions = [[_num(v) for v in row] for row in self.positions]
        shapes = self.tile_shapes[0].tolist() if same else self.tile_shapes.tolist()
        return {"ndim": self.ndim, "units": "px", "positions": positions, "tile_shape": shapes}


def _num(value: float) -> float | int:
    """Integers as ints so the canonical JSON (and thus the version ID) does not depend on float form."""
    return int(value) if float(value).is_integer() else float(value)


def _ome_position(source: str | Path, ndim: int) -> list[float]:
    """(z,)y,x of the first plane of one OME image, in pixels."""
    text = str(source)
    if not text.lstrip().startswith("<"):
        import tifffile

        with tifffile.TiffFile(text) as tif:
            text = tif.ome_metadata or ""
    axes = "ZYX"[3 - ndim :]
    out = []
    for axis in axes:
        found = re.search(rf'<(?:\w+:)?Plane\b[^>]*\bPosition{axis}="([-0-9.eE+]+)"', text) or re.search(
            rf'<(?:\w+:)?StagePosition\b[^>]*\b{axis}="([-0-9.eE+]+)"', text
        )
        size = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', text)
        if found is None:
            raise _mismatch(f"OME metadata has no stage position for axis {axis}", field="layout", found=axis)
        out.append(float(found.group(1)) / (float(size.group(1)) if size else 1.0))
    return out
