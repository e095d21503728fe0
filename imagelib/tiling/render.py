"""The tile pipeline as composable steps — read (only the chunks under the tile, plus the chain's halo)
→ filter chain (native pixel grid) → band selection → [reproject for XYZ] → 8-bit scaling → encode —
and :func:`render_tile`, the cached on-the-fly entry point. Pre-built pyramids call the same steps, so
a pre-baked tile and the on-the-fly one are byte-identical."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from imagelib.context import Library, current
from imagelib.errors import NotFound, UsageError
from imagelib.tiling.cache import LruCache, TileCache, tile_key
from imagelib.tiling.encode import Encoding, encode, normalize_format
from imagelib.tiling.grid import DziGrid, Window
from imagelib.tiling.scale import Scaling, Style, resolve, select, to_uint8
from imagelib.tiling.source import CHUNK_CACHE_BYTES, Plane
from imagelib.tiling.xyz import TILE, XyzGrid
from imagelib.versioning import check_version_id

Chain = list[dict[str, Any]]


def read(
    plane: Plane, level: int, window: Window, halo: tuple[int, int] = (0, 0)
) -> tuple[np.ndarray, Window]:
    """Step 1: the window grown by ``halo`` (clipped to the level) and where the window sits inside it."""
    h, w = plane.shape(level)
    grown = Window(
        max(window.y0 - halo[0], 0),
        min(window.y1 + halo[0], h),
        max(window.x0 - halo[1], 0),
        min(window.x1 + halo[1], w),
    )
    inner = Window(window.y0 - grown.y0, window.y1 - grown.y0, window.x0 - grown.x0, window.x1 - grown.x0)
    return plane.read(level, grown), inner


def apply_filters(data: np.ndarray, chain: Chain | None, has_band: bool, inner: Window) -> np.ndarray:
    """Step 2: run the filter chain on ``(bands, h, w)`` pixels, then crop the halo away."""
    window = (slice(inner.y0, inner.y1), slice(inner.x0, inner.x1))
    if not chain:
        return data[(slice(None), *window)]
    from imagelib.filters.chain import apply_chain_cropped  # crops before the chain's trailing point ops

    if has_band:
        return apply_chain_cropped(data, chain, (slice(None), *window), dims=("band", "y", "x"))
    return apply_chain_cropped(data[0], chain, window, dims=("y", "x"))[None]


def as_float(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Float32 copy with nodata → NaN (what reprojection carries as 'missing')."""
    out = data.astype(np.float32)
    if nodata is not None and data.dtype.kind != "f":
        out[data == np.array(nodata).astype(data.dtype)] = np.nan
    elif nodata is not None:
        out[data == nodata] = np.nan
    return out


@dataclass
class Renderer:
    """Renders tiles of one plane with one chain, style and encoding."""

    plane: Plane
    chain: Chain | None = None
    style: Style = field(default_factory=Style)
    encoding: Encoding = field(default_factory=Encoding)
    resampling: str = "nearest"

    @cached_property
    def halo(self) -> tuple[int, int]:
        """Context pixels (y, x) the chain needs around a tile."""
        if not self.chain:
            return (0, 0)
        from imagelib.filters import chain_halo

        hy, hx = chain_halo(self.chain, 2)[-2:]
        return int(hy), int(hx)

    @cached_property
    def has_band(self) -> bool:
        """Whether the chain sees a band axis."""
        return "band" in (self.plane.attrs.get("dims") or ()) and getattr(self.plane, "index", None) is None

    @cached_property
    def scaling(self) -> Scaling:
        """The resolved stretch/mask/colormap."""
        return resolve(self.plane.attrs, self.plane.dtype, self._bands_out, self.style)

    @cached_property
    def _bands_out(self) -> int:
        if not self.chain:
            return self.plane.bands
        level = max(self.plane.levels - 6, 0)  # a ≤ 32×32 level is enough to see the band count
        probe, inner = read(self.plane, level, self.plane.full(level))
        return apply_filters(probe, self.chain, self.has_band, inner).shape[0]

    @cached_property
    def xyz_grid(self) -> XyzGrid:
        """The WebMercatorQuad grid of the plane (NOT_GEOREFERENCED otherwise)."""
        return XyzGrid.for_plane(self.plane)

    def dzi_grid(self, tile_size: int = 254, overlap: int = 1) -> DziGrid:
        """The DZI grid of the plane."""
        return DziGrid(self.plane.width, self.plane.height, tile_size, overlap)

    def pixels(self, level: int, window: Window) -> np.ndarray:
        """Steps 1–2 and band selection: the selected bands of a window, filtered."""
        data, inner = read(self.plane, level, window, self.halo)
        return select(apply_filters(data, self.chain, self.has_band, inner), self.scaling)

    def dzi(self, grid: DziGrid, level: int, col: int, row: int, fmt: str) -> bytes:
        """One DZI tile."""
        if not grid.contains(level, col, row):
            raise tile_not_found("dzi", level, col, row)
        window = grid.window(level, col, row)
        return encode(to_uint8(self.pixels(grid.shrink(level), window), self.scaling), fmt, self.encoding)

    def xyz(self, grid: XyzGrid, z: int, x: int, y: int, fmt: str) -> bytes:
        """One WebMercatorQuad tile (256×256)."""
        if not grid.contains(z, x, y):
            raise tile_not_found("xyz", z, x, y)
        level = grid.source_level(z, self.plane.levels)
        scaling = dataclasses.replace(self.scaling, alpha=True)
        if self.resampling == "nearest":
            return encode(self._nearest_tile(grid, z, x, y, level, scaling), fmt, self.encoding)
        window = grid.source_window(z, x, y, level, self.plane.shape(level))
        if window is None:
            tile = np.full((len(scaling.bands), TILE, TILE), np.nan, np.float32)
        else:
            source = as_float(self.pixels(level, window), scaling.nodata)
            tile = grid.warp(source, level, window, z, x, y, self.resampling)
        return encode(to_uint8(tile, scaling), fmt, self.encoding)

    def _nearest_tile(
        self, grid: XyzGrid, z: int, x: int, y: int, level: int, scaling: Scaling
    ) -> np.ndarray:
        """Nearest-neighbour tile by gathering source pixels (native dtype, no GDAL round trip)."""
        rows, cols, inside = grid.nearest_map(z, x, y, level, self.plane.shape(level))
        if not inside.any():  # a corner tile of a rotated/curved footprint: fully transparent
            return to_uint8(
                np.zeros((len(scaling.bands), TILE, TILE), self.plane.dtype), scaling, missing=~inside
            )
        r, c = rows[inside], cols[inside]
        window = Window(int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1)
        data = self.pixels(level, window)
        ry = np.clip(rows - window.y0, 0, window.y1 - window.y0 - 1)
        cx = np.clip(cols - window.x0, 0, window.x1 - window.x0 - 1)
        return to_uint8(data[:, ry, cx], scaling, missing=~inside)


def tile_not_found(scheme: str, z: int, x: int, y: int) -> NotFound:
    """The coded error for a tile outside the pyramid."""
    return NotFound(
        f"{scheme} tile {z}/{x}/{y} is outside the pyramid",
        code="TILE_NOT_FOUND",
        field="tile",
        found=[z, x, y],
    )


#: renderers (opened versions) remembered per context
RENDERERS = 32


class _Renderers:
    """A small LRU of renderers keyed by (store URL, version, slice, chain, style, encoding)."""

    def __init__(self, size: int = RENDERERS) -> None:
        self.size, self._items, self._lock = size, OrderedDict[Any, Renderer](), threading.Lock()

    def get(self, key: Any, make: Any) -> Renderer:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        renderer = make()
        with self._lock:
            self._items[key] = renderer
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return renderer

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _renderer(
    lib: Library,
    version: str,
    axis: str | None,
    index: int | None,
    chain: str | None,
    style: Style,
    encoding: Encoding,
) -> Renderer:
    """The context's renderer for this request, opening the version on first use (the caches live on
    the context, so another store or catalog never sees these entries)."""

    def make() -> Renderer:
        from imagelib.stored import open_group
        from imagelib.tiling.volume import plane_for

        group, store = open_group(version, lib=lib)
        chunks = lib.cache("chunks", lambda: LruCache(CHUNK_CACHE_BYTES))
        plane = plane_for(group, f"{store.url}/{version}", axis, index, chunks)
        return Renderer(plane, json.loads(chain) if chain else None, style, encoding)

    renderers = lib.cache("renderers", _Renderers)
    return renderers.get((lib.settings.store, version, axis, index, chain, style, encoding), make)


def canonical(chain: Chain | str | os.PathLike[str] | None) -> str | None:
    """Canonical chain JSON (the cache key part), None for no chain."""
    from imagelib.filters.schema import canonical_text, load_chain

    ops = load_chain(chain)  # validated and canonical: serialising it needs no second validation
    return canonical_text(ops) if ops else None


def renderer_for(
    version: str,
    chain: Chain | str | os.PathLike[str] | None = None,
    *,
    axis: str | None = None,
    index: int | None = None,
    style: Style | None = None,
    encoding: Encoding | None = None,
    lib: Library | None = None,
) -> Renderer:
    """A (memoised) renderer for a stored version or one slice of a volume."""
    check_version_id(version)
    lib = current(lib)
    return _renderer(lib, version, axis, index, canonical(chain), style or Style(), encoding or Encoding())


def render_tile(
    version: str,
    z: int,
    x: int,
    y: int,
    fmt: str = "png",
    chain: Chain | str | None = None,
    scheme: str = "dzi",
    *,
    axis: str | None = None,
    index: int | None = None,
    style: Style | None = None,
    tile_size: int = 254,
    overlap: int = 1,
    encoding: Encoding | None = None,
    cache: TileCache | Literal["context"] | None = "context",
    lib: Library | None = None,
) -> bytes:
    """Encoded bytes of one tile (DZI ``level/col/row`` or XYZ ``z/x/y``), cached; TILE_NOT_FOUND outside.

    ``cache`` is the context's tile cache by default; pass a :class:`TileCache` or None (no caching)."""
    check_version_id(version)
    lib = current(lib)
    fmt, style, encoding = normalize_format(fmt), style or Style(), encoding or Encoding()
    chain_text = canonical(chain)
    if cache == "context":
        cache = lib.cache("tiles", TileCache)
    key = tile_key(
        store=lib.settings.store,
        catalog=lib.settings.catalog,
        version=version,
        scheme=scheme,
        tile=[z, x, y],
        fmt=fmt,
        chain=chain_text,
        axis=axis,
        index=index,
        style=style.key(),
        size=[tile_size, overlap],
        encoding=dataclasses.asdict(encoding),
    )
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    renderer = _renderer(lib, version, axis, index, chain_text, style, encoding)
    if scheme == "xyz":
        data = renderer.xyz(renderer.xyz_grid, z, x, y, fmt)
    elif scheme == "dzi":
        data = renderer.dzi(renderer.dzi_grid(tile_size, overlap), z, x, y, fmt)
    else:
        raise UsageError(
            f"unknown tile scheme {scheme!r}", field="scheme", expected=["dzi", "xyz"], found=scheme
        )
    if cache is not None:
        cache.put(key, data)
    return data
