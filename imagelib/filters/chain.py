"""``apply_chain``: run a validated chain on NumPy, CuPy, Dask or xarray data.

Layouts (from a DataArray's dims, or ``dims=`` for bare arrays; default 2D → ``(y, x)``,
3D → ``(band, y, x)``): a leading ``band`` dim makes spatial ops act per plane and band ops select
bands; the other 2 or 3 dims are spatial (``z, y, x`` → ops act in 3D, per-axis lists in that order).

Output dtype: float64 for float64 input, float32 for every other input (integers, float16/32);
band ops included. ``band_math`` returns one band (the band axis is kept when the input had one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from imagelib.backend import BackendName, get_xp, is_cupy_array, select_backend, to_xp
from imagelib.errors import ImagelibError
from imagelib.filters.base import Op
from imagelib.filters.lazy import DEFAULT_MEMORY_BUDGET, run_dask, run_ops
from imagelib.filters.ops_band import BandScale, Clip, Gamma
from imagelib.filters.ops_deconv import _DeconvOp
from imagelib.filters.psf import PsfResolver
from imagelib.filters.schema import ChainLike, check_ops, validate_chain
from imagelib.filters.table import run_table, table_prefix, tabulable

BAND_DIMS = ("band", "c", "channel")


def default_dims(ndim: int) -> tuple[str, ...]:
    """Dims assumed for a bare array: ``(y, x)`` for 2D, ``(band, y, x)`` for 3D."""
    if ndim == 2:
        return ("y", "x")
    if ndim == 3:
        return ("band", "y", "x")
    raise _dims_error(ndim)


def _dims_error(found: Any) -> ImagelibError:
    return ImagelibError(
        "filters take (y, x), (band, y, x), (z, y, x) or (band, z, y, x) data",
        code="DIMENSIONS_NOT_ALLOWED",
        field="dims",
        expected=["y,x", "band,y,x", "z,y,x", "band,z,y,x"],
        found=found,
    )


def split_dims(dims: Sequence[str]) -> tuple[bool, int]:
    """``(has_band_axis, spatial_ndim)`` for a layout; a band dim may only come first."""
    dims = tuple(str(d) for d in dims)
    has_band = bool(dims) and dims[0] in BAND_DIMS
    spatial = dims[1:] if has_band else dims
    if len(spatial) not in (2, 3) or any(d in BAND_DIMS for d in spatial):
        raise _dims_error(list(dims))
    return has_band, len(spatial)


def working_dtype(dtype: Any) -> np.dtype:
    """float64 stays float64; everything else is computed and returned as float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def resolve_ops(ops: list[Op], psf_resolver: PsfResolver | None) -> list[Op]:
    """Ops with ``{"type":"version"}`` PSFs fetched through ``psf_resolver``."""
    return [op.with_psf(psf_resolver) if isinstance(op, _DeconvOp) else op for op in ops]


def prepare(
    chain: ChainLike, shape: tuple[int, ...], dims: Sequence[str], psf_resolver: PsfResolver | None = None
) -> tuple[list[Op], bool, int]:
    """Validated, PSF-resolved ops for data of ``shape``/``dims``, plus the layout."""
    if len(dims) != len(shape):
        raise _dims_error(list(dims))
    has_band, ndim = split_dims(dims)
    n_bands = shape[0] if has_band else 1
    ops = resolve_ops(validate_chain(chain, n_bands=n_bands, ndim=ndim), psf_resolver)
    check_ops(ops, n_bands=n_bands, ndim=ndim)  # again: resolved PSFs now have a dimensionality
    return ops, has_band, ndim


def chain_halo(chain: ChainLike, ndim: int, psf_resolver: PsfResolver | None = None) -> tuple[int, ...]:
    """Pixels of context per spatial axis a tile needs: exact for local ops; global ops add their
    tapered-tile overlap (their true support is the whole plane)."""
    ops = resolve_ops(validate_chain(chain, ndim=ndim), psf_resolver)
    halos = [op.halo(ndim) for op in ops]
    return tuple(sum(h[a] for h in halos) for a in range(ndim))


def _apply_array(
    data: Any, ops: list[Op], has_band: bool, backend: BackendName | str, memory_budget: int
) -> Any:
    """The chain on a bare NumPy/CuPy/Dask array (same type out)."""
    xp = get_xp(data) if is_cupy_array(data) and backend == "auto" else select_backend(backend)
    head = data if has_band else data[None]
    if xp is np and tabulable(head, ops):  # leading band_scale/clip on 8/16-bit pixels: one table lookup
        done = table_prefix(ops)
        stack, ops = run_table(head, ops[:done], working_dtype(data.dtype)), ops[done:]
    else:
        stack = head.astype(working_dtype(data.dtype), copy=False)
    if hasattr(stack, "map_overlap"):  # a Dask array
        out = run_dask(stack, ops, xp, memory_budget)
    else:
        out = to_xp(run_ops(to_xp(stack, xp), ops, xp), get_xp(data))
    return out if has_band else out[0]


def _apply_dataarray(data: Any, ops: list[Op], has_band: bool, backend: str, memory_budget: int) -> Any:
    """The chain on an ``xarray.DataArray``: same dims, coords and attrs; band coords dropped when the
    band count changes."""
    out = _apply_array(data.data, ops, has_band, backend, memory_budget)
    if out.shape == data.shape:
        return data.copy(data=out)
    band = data.dims[0]
    coords = {k: v for k, v in data.coords.items() if band not in v.dims}
    return type(data)(out, dims=data.dims, coords=coords, attrs=dict(data.attrs), name=data.name)


#: Ops computed pixel by pixel (no neighbours, no fitted statistics): after the chain's last
#: neighbourhood op they may run on the cropped tile alone. Each starts with an exact copy (astype,
#: clip, maximum), so their rounded float loops (``**``) still see contiguous planes, as on the whole tile.
PIXEL_OPS = (BandScale, Clip, Gamma)


def apply_chain_cropped(
    data: np.ndarray, chain: ChainLike, crop: tuple[slice, ...], *, dims: Sequence[str]
) -> Any:
    """``apply_chain(data, chain, dims=dims)[crop]``, with the chain's trailing per-pixel ops run on the
    cropped pixels only (a tile's halo is needed by neighbourhood ops, not by point ops after them)."""
    ops, has_band, _ = prepare(chain, tuple(data.shape), tuple(dims))  # the whole chain's checks and errors
    head = len(ops)
    while head and type(ops[head - 1]) in PIXEL_OPS:
        head -= 1
    if head:
        data = _apply_array(data, ops[:head], has_band, "auto", DEFAULT_MEMORY_BUDGET)
    if head == len(ops):
        return data[crop]
    return _apply_array(data[crop], ops[head:], has_band, "auto", DEFAULT_MEMORY_BUDGET)


def apply_chain(
    data: Any,
    chain: ChainLike,
    *,
    dims: Sequence[str] | None = None,
    backend: BackendName | str = "auto",
    psf_resolver: PsfResolver | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Any:
    """Run ``chain`` on ``data`` (NumPy, CuPy, Dask or xarray.DataArray) and return the same type."""
    is_dataarray = hasattr(data, "dims") and hasattr(data, "attrs") and hasattr(data, "coords")
    layout = tuple(data.dims) if is_dataarray else tuple(dims or default_dims(data.ndim))
    ops, has_band, _ = prepare(chain, tuple(data.shape), layout, psf_resolver)
    if is_dataarray:
        return _apply_dataarray(data, ops, has_band, backend, memory_budget)
    return _apply_array(data, ops, has_band, backend, memory_budget)
