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
    #: chain statistics shared by the renderers of one plane and chain whatever their style (a style
    #: change must not run the chain over a whole level again): a mapping and this renderer's key in it
    shared: tuple[Any, Any] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def halo(self) -> tuple[int, int]:
        """Context pixels (y, x) the chain needs around a full-resolution tile."""
        return self.level_halo(0)

    def _level(self, level: int) -> tuple[Chain | None, tuple[str, ...], tuple[int, int]]:
        """(chain, notes, halo) of a level, worked out once (same key, same value: no lock needed)."""
        if not self.chain:  # nothing to rescale, and no filters package imported (~0.1 s, pydantic)
            return None, (), (0, 0)
        if level not in self._levels:
            from imagelib.filters import chain_halo
            from imagelib.filters.scaling import scale_chain

            chain, notes = self.chain, []
            if level > 0:
                chain, notes = scale_chain(chain, 2**level)
            halo = tuple(int(h) for h in chain_halo(chain, 2)[-2:]) if chain else (0, 0)
            self._levels[level] = (chain or None, tuple(notes), (halo[0], halo[1]))
        return self._levels[level]

    def level_chain(self, level: int) -> Chain | None:
        """The chain with its spatial parameters in pixels of ``level`` (they are given in full-resolution
        pixels, :func:`imagelib.filters.scaling.scale_chain`); level 0 is the chain itself."""
        return self._level(level)[0]

    def level_halo(self, level: int) -> tuple[int, int]:
        """Context pixels (y, x) the level's chain needs around a tile (it follows the rescaled chain)."""
        return self._level(level)[2]

    def notes(self, level: int) -> list[str]:
        """What the chain only approximates at ``level`` (empty at full resolution)."""
        return list(self._level(level)[1])

    @cached_property
    def _levels(self) -> dict[int, tuple[Chain | None, tuple[str, ...], tuple[int, int]]]:
        return {}

    @cached_property
    def has_band(self) -> bool:
        """Whether the chain sees a band axis."""
        return "band" in (self.plane.attrs.get("dims") or ()) and getattr(self.plane, "index", None) is None

    @cached_property
    def scaling(self) -> Scaling:
        """The resolved stretch/mask/colormap. With a chain and no ``style.rescale``, the stretch is the
        chain output's p2/p98 (what the derived version stores, so the live view and the derived version's
        tiles agree); the mask and alpha stay the plane's, so explicit ranges give today's bytes."""
        scaling = resolve(self.plane.attrs, self.plane.dtype, self._bands_out, self.style)
        if not self.chain or self.style.rescale:
            return scaling
        stats = self.chain_stats
        lo = np.array([_or(stats["p2"][b - 1], 0.0) for b in scaling.bands], float)
        hi = np.array([_or(stats["p98"][b - 1], 1.0) for b in scaling.bands], float)
        flat = hi <= lo  # a constant band shows mid-grey (as for stored statistics)
        lo, hi = np.where(flat, lo - 0.5, lo), np.where(flat, lo + 0.5, hi)
        return dataclasses.replace(scaling, lo=lo, hi=hi, identity=False)

    @cached_property
    def chain_stats(self) -> dict[str, Any]:
        """Per-band p2/p98 of the chain's output, computed as ``imagelib.stored.percentiles`` computes
        them for the derived version: on the first level no larger than ``STATS_LEVEL_SIDE`` (there with
        the chain rescaled to that level), valid pixels only. Once per plane and chain."""
        if self.shared is None:
            return self._chain_stats()
        memo, key = self.shared
        return memo.get(key) or memo.setdefault(key, self._chain_stats())

    def _chain_stats(self) -> dict[str, Any]:
        from imagelib.stored import STATS_LEVEL_SIDE

        level = next(
            (k for k in range(self.plane.levels) if max(self.plane.shape(k)) <= STATS_LEVEL_SIDE),
            self.plane.levels - 1,
        )
        data, inner = read(self.plane, level, self.plane.full(level))
        out = apply_filters(data, self.level_chain(level), self.has_band, inner)
        nodata = self.plane.attrs.get("nodata")
        p2, p98 = [], []
        for band in out:
            values = np.asarray(band, np.float64).ravel()
            valid = np.isfinite(values)
            if isinstance(nodata, int | float) and not np.isnan(nodata):
                valid &= values != nodata
            lo, hi = np.percentile(values[valid], [2, 98]) if valid.any() else (None, None)
            p2.append(None if lo is None else float(lo))
            p98.append(None if hi is None else float(hi))
        return {"p2": p2, "p98": p98, "stats_level": level}

    @cached_property
    def _bands_out(self) -> int:
        if not self.chain:
            return self.plane.bands
        level = max(self.plane.levels - 6, 0)  # a ≤ 32×32 level is enough to see the band count
        probe, inner = read(self.plane, level, self.plane.full(level))
        return apply_filters(probe, self.level_chain(level), self.has_band, inner).shape[0]

    @cached_property
    def xyz_grid(self) -> XyzGrid:
        """The WebMercatorQuad grid of the plane (NOT_GEOREFERENCED otherwise)."""
        return XyzGrid.for_plane(self.plane)

    def dzi_grid(self, tile_size: int = 254, overlap: int = 1) -> DziGrid:
        """The DZI grid of the plane."""
        return DziGrid(self.plane.width, self.plane.height, tile_size, overlap)

    def pixels(self, level: int, window: Window) -> np.ndarray:
        """Steps 1–2 and band selection: the selected bands of a window, filtered."""
        data, inner = read(self.plane, level, window, self.level_halo(level))
        return select(apply_filters(data, self.level_chain(level), self.has_band, inner), self.scaling)

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
        if inside is not None and not inside.any():  # a corner tile of a rotated/curved footprint
            return to_uint8(
                np.zeros((len(scaling.bands), TILE, TILE), self.plane.dtype), scaling, missing=~inside
            )
        r, c = (rows, cols) if inside is None else (rows[inside], cols[inside])
        window = Window(int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1)
        data = self.pixels(level, window)
        ry, cx = rows - window.y0, cols - window.x0
        if inside is not None:
            np.clip(ry, 0, window.y1 - window.y0 - 1, out=ry)
            np.clip(cx, 0, window.x1 - window.x0 - 1, out=cx)
        # one flat index per pixel: a 1-axis take is ~6× faster than data[:, ry, cx]'s 2-axis gather
        flat = np.ascontiguousarray(data).reshape(len(data), -1)
        picked = flat.take(ry * data.shape[2] + cx, axis=1)
        if inside is None:  # no pixel outside the source: an alpha only where the plane's mask needs one
            return to_uint8(picked, self.scaling)
        return to_uint8(picked, scaling, missing=~inside)


def _or(value: float | None, default: float) -> float:
    """``value``, or ``default`` for a band without valid pixels."""
    return default if value is None else value


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


class _Stats(OrderedDict[Any, Any]):
    """Chain statistics per (store, version, slice, chain): a few floats each, the oldest forgotten past
    ``size`` entries."""

    size = 1024
    _lock = threading.Lock()  # one lock for every instance: writes are rare (one per chain)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``dict.setdefault``, bounded and thread-safe."""
        with self._lock:
            value = super().setdefault(key, default)
            while len(self) > self.size:
                self.popitem(last=False)
            return value


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
        from imagelib.stored import open_levels
        from imagelib.tiling.volume import plane_for

        group, store = open_levels(version, lib=lib)
        chunks = lib.cache("chunks", lambda: LruCache(CHUNK_CACHE_BYTES))
        plane = plane_for(group, f"{store.url}/{version}", axis, index, chunks)
        shared = (lib.cache("chain_stats", _Stats), (lib.settings.store, version, axis, index, chain))
        return Renderer(plane, json.loads(chain) if chain else None, style, encoding, shared=shared)

    renderers = lib.cache("renderers", _Renderers)
    return renderers.get((lib.settings.store, version, axis, index, chain, style, encoding), make)


def canonical(chain: Chain | str | os.PathLike[str] | None) -> str | None:
    """Canonical chain JSON (the cache key part), None for no chain."""
    if chain is None:  # the filters package costs ~0.1 s to import; a plain export needs none of it
        return None
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


def tile_notes(
    version: str,
    z: int,
    chain: Chain | str | None = None,
    scheme: str = "dzi",
    *,
    axis: str | None = None,
    index: int | None = None,
    style: Style | None = None,
    tile_size: int = 254,
    overlap: int = 1,
    lib: Library | None = None,
) -> list[str]:
    """What the chain only approximates in the tiles of DZI level / XYZ zoom ``z`` (the servers send it
    as ``X-Imagelib-Approximate``); empty without a chain or at full resolution."""
    if not chain:
        return []
    renderer = renderer_for(version, chain, axis=axis, index=index, style=style, lib=lib)
    if scheme == "xyz":
        level = renderer.xyz_grid.source_level(z, renderer.plane.levels)
    else:
        level = renderer.dzi_grid(tile_size, overlap).shrink(z)
    return renderer.notes(level) if 0 <= level < renderer.plane.levels else []
