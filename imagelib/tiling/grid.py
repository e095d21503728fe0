"""Deep Zoom (DZI) geometry, identical to ``vips dzsave``: levels down to 1×1, ``ceil`` halving,
tiles of ``tile_size`` with ``overlap`` pixels shared with each neighbour."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """A pixel rectangle ``[y0, y1) × [x0, x1)`` of one level."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.y1 - self.y0, self.x1 - self.x0


@dataclass(frozen=True)
class DziGrid:
    """The DZI layout of a ``width × height`` image."""

    width: int
    height: int
    tile_size: int = 254
    overlap: int = 1

    @property
    def levels(self) -> int:
        """Number of levels; level ``levels - 1`` is full resolution, level 0 is 1×1."""
        return math.ceil(math.log2(max(self.width, self.height, 1))) + 1

    def shrink(self, level: int) -> int:
        """How many halvings separate ``level`` from full resolution."""
        return self.levels - 1 - level

    def level_shape(self, level: int) -> tuple[int, int]:
        """``(height, width)`` of a level."""
        k = 2 ** self.shrink(level)
        return math.ceil(self.height / k), math.ceil(self.width / k)

    def tile_counts(self, level: int) -> tuple[int, int]:
        """``(columns, rows)`` of a level."""
        h, w = self.level_shape(level)
        return math.ceil(w / self.tile_size), math.ceil(h / self.tile_size)

    def contains(self, level: int, col: int, row: int) -> bool:
        """True when the tile exists."""
        if not 0 <= level < self.levels:
            return False
        cols, rows = self.tile_counts(level)
        return 0 <= col < cols and 0 <= row < rows

    def window(self, level: int, col: int, row: int) -> Window:
        """Pixels of a tile, overlap included and clipped to the level."""
        h, w = self.level_shape(level)
        t, o = self.tile_size, self.overlap
        return Window(
            max(row * t - o, 0), min((row + 1) * t + o, h), max(col * t - o, 0), min((col + 1) * t + o, w)
        )

    def total_tiles(self) -> int:
        """Tiles over all levels."""
        return sum(c * r for c, r in map(self.tile_counts, range(self.levels)))

    def xml(self, fmt: str) -> str:
        """The ``.dzi`` descriptor."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="{fmt}" '
            f'Overlap="{self.overlap}" TileSize="{self.tile_size}">\n'
            f'  <Size Height="{self.height}" Width="{self.width}"/>\n</Image>\n'
        )
