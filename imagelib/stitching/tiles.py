"""The tiles of a mosaic as lazy arrays: compatibility checks and crop reads (registration channel)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from imagelib.errors import InputError
from imagelib.stitching.layout import Layout


def _incompatible(message: str, field: str = "tiles", **fields: Any) -> InputError:
    return InputError(message, code="STITCH_INCOMPATIBLE_TILES", field=field, **fields)


def as_lazy(tile: Any) -> tuple[da.Array, Any]:
    """A tile (NumPy, Dask or xarray) as a Dask array plus its nodata value (xarray attrs)."""
    nodata = None
    if hasattr(tile, "dims") and hasattr(tile, "attrs"):
        nodata = tile.attrs.get("nodata")
        tile = tile.data
    if not isinstance(tile, da.Array):
        tile = da.from_array(np.asarray(tile), chunks=-1)
    return tile, nodata


@dataclass(frozen=True)
class TileSet:
    """Tiles of one dtype and layout (``[band,] (z,) y, x``); reads crops as float32 with NaN for nodata."""

    arrays: tuple[da.Array, ...]
    ndim: int
    channel: int = 0
    nodata: Any = None
    flat: np.ndarray | None = None
    dark: np.ndarray | None = None

    @property
    def has_band(self) -> bool:
        """True when the tiles carry a leading band axis."""
        return self.arrays[0].ndim == self.ndim + 1

    @property
    def dtype(self) -> np.dtype:
        """The tiles' common dtype (the mosaic keeps it)."""
        return np.dtype(self.arrays[0].dtype)

    @property
    def bands(self) -> int:
        """Number of bands (1 without a band axis)."""
        return int(self.arrays[0].shape[0]) if self.has_band else 1

    def __len__(self) -> int:
        return len(self.arrays)

    def read(self, k: int, region: tuple[slice, ...], band: int | None = None) -> np.ndarray:
        """Tile ``k``'s ``region`` of ``band`` (the registration channel by default), corrected, float32."""
        arr = self.arrays[k]
        key = ((self.channel if band is None else band), *region) if self.has_band else region
        out = np.asarray(arr[key].compute(scheduler="sync"), dtype=np.float32)
        return self.correct(out, region)

    def correct(self, values: np.ndarray, region: tuple[slice, ...]) -> np.ndarray:
        """Nodata → NaN, then dark subtraction and flat division (the same for every tile)."""
        if self.nodata is not None and not np.isnan(self.nodata):
            values = np.where(values == np.float32(self.nodata), np.float32(np.nan), values)
        if self.dark is not None:
            values = values - self.dark[region]
        if self.flat is not None:
            values = values / self.flat[region]
        return values


def tile_set(
    tiles: Sequence[Any],
    layout: Layout,
    *,
    channel: int = 0,
    flat: Any = None,
    dark: Any = None,
) -> TileSet:
    """Check tiles against each other and the layout (no pixel is read) and wrap them."""
    check_count(tiles, layout)
    pairs = [as_lazy(t) for t in tiles]
    arrays = tuple(a for a, _ in pairs)
    first = arrays[0]
    for k, arr in enumerate(arrays):
        if arr.ndim != first.ndim:
            raise _incompatible(f"tile {k} has {arr.ndim} dims, tile 0 has {first.ndim}", found=k)
        if arr.dtype != first.dtype:
            raise _incompatible(f"tile {k} is {arr.dtype}, tile 0 is {first.dtype}", found=k)
        if arr.ndim == layout.ndim + 1 and arr.shape[0] != first.shape[0]:
            raise _incompatible(f"tile {k} has {arr.shape[0]} bands, tile 0 has {first.shape[0]}", found=k)
    if first.ndim not in (layout.ndim, layout.ndim + 1):
        raise _incompatible(
            f"{first.ndim}-D tiles do not fit a {layout.ndim}-D layout",
            expected=layout.ndim,
            found=first.ndim,
        )
    spatial = [tuple(a.shape[-layout.ndim :]) for a in arrays]
    for k, shape in enumerate(spatial):
        if shape != tuple(int(n) for n in layout.tile_shapes[k]):
            raise InputError(
                f"tile {k} has shape {shape}, the layout says {layout.tile_shapes[k].tolist()}",
                code="STITCH_LAYOUT_MISMATCH",
                field="layout",
                expected=layout.tile_shapes[k].tolist(),
                found=list(shape),
            )
    nodata = {n for _, n in pairs}
    bands = int(first.shape[0]) if first.ndim == layout.ndim + 1 else 1
    if not 0 <= channel < bands:
        raise _incompatible(f"channel {channel} is out of range (tiles have {bands} bands)", field="channel")
    flat_arr = _field(flat, spatial[0], "flat")
    dark_arr = _field(dark, spatial[0], "dark")
    if flat_arr is not None and len(set(spatial)) > 1:
        raise _incompatible("flat/dark-field correction needs tiles of one shape", field="flat")
    return TileSet(
        arrays, layout.ndim, channel, next(iter(nodata)) if len(nodata) == 1 else None, flat_arr, dark_arr
    )


def _field(values: Any, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    """A flat/dark-field array of the tile shape, float32."""
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float32)
    if arr.shape != shape:
        raise _incompatible(f"the {name} field is {arr.shape}, tiles are {shape}", field=name)
    if name == "flat" and not np.all(arr > 0):
        raise _incompatible("the flat field must be positive everywhere", field=name)
    return arr


def check_count(tiles: Sequence[Any], layout: Layout) -> None:
    """STITCH_LAYOUT_MISMATCH unless the layout places exactly one position per tile."""
    if len(tiles) != len(layout):
        raise InputError(
            f"{len(tiles)} tiles but the layout places {len(layout)}",
            code="STITCH_LAYOUT_MISMATCH",
            field="layout",
            expected=len(layout),
            found=len(tiles),
        )
