"""HDF5 / NetCDF4 reader on h5py: addressed datasets (``file.h5#/group/dataset``), CF georeferencing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from imagelib.errors import InputError
from imagelib.formats.detect import HDF5_MAGIC, HDF5_SUPERBLOCK_OFFSETS, has_magic
from imagelib.formats.georef import check_plausible, crs_label
from imagelib.formats.lazy import LazySource, guard_dimensions, preferred_chunks, to_dask, yx_chunks
from imagelib.formats.meta import RasterMeta

if TYPE_CHECKING:
    import h5py

IRREGULAR_TOLERANCE = 1e-3  # relative step difference above which 1-D coordinates are not an affine grid


class HDF5Reader:
    """HDF5 and NetCDF4 (``netcdf4`` when the file carries netCDF's markers)."""

    name = "hdf5"

    def guess_can_open(self, path: Path) -> bool:
        """The HDF5 superblock signature at offset 0 or after a user block."""
        return has_magic(path, (HDF5_MAGIC,), HDF5_SUPERBLOCK_OFFSETS)

    def open(self, path: Path, address: str | None) -> xr.DataArray:
        """One dataset, lazily (``address`` or the only image-like dataset)."""
        return open_hdf5(path, address)


def open_hdf5(path: Path, address: str | None) -> xr.DataArray:
    """Open one dataset of an HDF5/NetCDF4 file lazily; refuse anything pointing outside the file."""
    import h5py  # here, not at the top: a GeoTIFF ingest never loads it (~20 ms)

    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        code = (
            "TRUNCATED" if "truncated" in str(exc).lower() or "eof" in str(exc).lower() else "FORMAT_CORRUPT"
        )
        raise InputError(f"{path}: HDF5 file cannot be opened ({exc})", code=code) from exc
    with fh:
        refuse_external_links(fh, path)
        name = address or _only_candidate(fh, path)
        obj = fh.get(name)
        if not isinstance(obj, h5py.Dataset):
            raise InputError(
                f"{path}: no dataset at {name!r}; candidates: {candidate_datasets(fh)}",
                code="DATASET_NOT_FOUND",
                field="address",
                expected=candidate_datasets(fh),
                found=name,
            )
        refuse_external_storage(obj, path)
        guard_dimensions(obj.shape, obj.dtype)
        if obj.ndim not in (2, 3):
            raise InputError(
                f"{path}#{name}: {obj.ndim}-D datasets are not images (need 2-D or 3-D)",
                code="DIMENSIONS_NOT_ALLOWED",
                field="dims",
                found=list(obj.shape),
            )
        dtype, meta = _decode(fh, obj, f"{path}#{name}")
        shape, dims = tuple(obj.shape), _dims(obj)
        # a chunked dataset is read like a tiled TIFF (Z-order blocks when its chunks divide 1024)
        encoding = preferred_chunks(obj.chunks[-2:]) if obj.chunks else {}
    local = threading.local()

    def read(key: tuple[slice, ...]) -> np.ndarray:
        if getattr(local, "ds", None) is None:
            local.ds = h5py.File(path, "r")[name]
        return np.asarray(local.ds[key]).view(dtype)

    chunks = (*(1,) * (len(shape) - 2), *yx_chunks(*shape[-2:], encoding)) if encoding else None
    data = to_dask(LazySource(shape, dtype, read), chunks)
    meta.address = name
    out = xr.DataArray(data, dims=dims, attrs=meta.to_attrs())
    out.encoding.update(encoding)
    return out


def candidate_datasets(fh: h5py.File) -> list[str]:
    """Image-like datasets: numeric, 2-D or more, not a dimension scale."""
    import h5py

    found: list[str] = []

    def visit(name: str, link: Any) -> None:
        if not isinstance(link, h5py.HardLink):
            return
        obj = fh[name]
        if (
            isinstance(obj, h5py.Dataset)
            and obj.ndim >= 2
            and obj.dtype.kind in "uif"
            and obj.attrs.get("CLASS") != b"DIMENSION_SCALE"
        ):
            found.append("/" + name)

    fh.visititems_links(visit)
    return sorted(found)


def _only_candidate(fh: h5py.File, path: Path) -> str:
    names = candidate_datasets(fh)
    if len(names) == 1:
        return names[0]
    if not names:
        raise InputError(f"{path}: no 2-D/3-D numeric dataset in the file", code="DATASET_NOT_FOUND")
    raise InputError(
        f"{path} holds several datasets ({', '.join(names)}); address one as {path.name}#{names[0]}",
        code="DATASET_AMBIGUOUS",
        field="address",
        expected=names,
    )


def refuse_external_links(fh: h5py.File, path: Path) -> None:
    """External links would make h5py open other files; refuse the whole file."""
    import h5py

    bad: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            bad.append(f"/{name} -> {link.filename}:{link.path}")

    fh.visititems_links(visit)
    if bad:
        raise InputError(
            f"{path}: external links point outside the file: {', '.join(bad)}",
            code="EXTERNAL_REFERENCE",
            field="links",
            found=bad,
        )


def refuse_external_storage(ds: h5py.Dataset, path: Path) -> None:
    """External raw storage and virtual datasets sourcing other files are refused."""
    if ds.external:
        raise InputError(
            f"{path}#{ds.name}: data is stored in external files {[e[0] for e in ds.external]}",
            code="EXTERNAL_REFERENCE",
            field="storage",
        )
    if ds.is_virtual:
        sources = sorted({vs.file_name for vs in ds.virtual_sources()})
        if any(s != "." for s in sources):
            raise InputError(
                f"{path}#{ds.name}: virtual dataset maps other files {sources}",
                code="EXTERNAL_REFERENCE",
                field="storage",
                found=sources,
            )


def _text(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    return value


def _decode(fh: h5py.File, ds: h5py.Dataset, where: str) -> tuple[np.dtype, RasterMeta]:
    """CF conventions: ``_Unsigned``, ``_FillValue``, ``grid_mapping``; values stay raw (scale in attrs)."""
    dtype = ds.dtype
    if str(_text(ds.attrs.get("_Unsigned", ""))).lower() == "true" and dtype.kind == "i":
        dtype = np.dtype(f"u{dtype.itemsize}")
    fill = ds.attrs.get("_FillValue")
    meta = RasterMeta(
        format="netcdf4" if "_NCProperties" in fh.attrs or "_Netcdf4Dimid" in ds.attrs else "hdf5",
        nodata=None if fill is None else float(np.asarray(fill).astype(ds.dtype).view(dtype).ravel()[0]),
        scale_factor=_text(ds.attrs.get("scale_factor")),
        add_offset=_text(ds.attrs.get("add_offset")),
        units=_text(ds.attrs.get("units")),
        time=_text(fh.attrs.get("time_coverage_start")),
        time_end=_text(fh.attrs.get("time_coverage_end")),
    )
    _georef(fh, ds, meta, where)
    return np.dtype(dtype), meta


def _dims(ds: h5py.Dataset) -> tuple[str, ...]:
    if ds.ndim == 2:
        return ("y", "x")
    first = ""
    if len(ds.dims[0]):
        first = ds.dims[0][0].name.rsplit("/", 1)[-1].lower()
    return ("band", "y", "x") if first in ("band", "bands", "channel", "c") else ("z", "y", "x")


def _georef(fh: h5py.File, ds: h5py.Dataset, meta: RasterMeta, where: str) -> None:
    """CRS from the CF grid mapping (pyproj ``CRS.from_cf``) and an affine transform from 1-D x/y.

    A grid mapping that is missing or unparseable is ``CRS_INVALID``; coordinates impossible in the CRS are
    ``CRS_INCONSISTENT``; a valid CRS whose coordinates cannot give a transform is a ``CRS_MISSING`` warning.
    """
    gm_name = _text(ds.attrs.get("grid_mapping"))
    if not gm_name:
        return
    crs, gm = _grid_mapping(fh, ds, str(gm_name), where)
    coords = _xy_coordinates(fh, ds)
    if coords is None:
        meta.warn(
            "CRS_MISSING",
            f"{where}: grid mapping {gm_name!r} but no 1-D x/y coordinate variables; georeferencing lost",
            "crs",
            ("crs", "transform", "bounds"),
        )
        return
    # GOES-style fixed grids give x/y in radians of scan angle; metres = radians × satellite height.
    factor = (
        float(gm.get("perspective_point_height", 1.0))
        if gm.get("grid_mapping_name") == "geostationary"
        else 1.0
    )
    x, y = (_cf_values(v) * factor for v in coords)
    if len(x) < 2 or len(y) < 2 or not (_regular(x) and _regular(y)):
        meta.warn(
            "CRS_MISSING",
            f"{where}: x/y coordinates are not a regular grid; no affine transform, georeferencing lost",
            "transform",
            ("crs", "transform", "bounds"),
        )
        return
    dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
    left, top = float(x[0] - dx / 2), float(y[0] - dy / 2)
    right, bottom = left + dx * len(x), top + dy * len(y)
    bounds = [min(left, right), min(top, bottom), max(left, right), max(top, bottom)]
    check_plausible(crs, bounds, max(abs(dx), abs(dy)), where)
    meta.crs = crs_label(crs)
    meta.crs_wkt = crs.to_wkt()
    meta.transform = [dx, 0.0, left, 0.0, dy, top]
    meta.bounds = bounds
    meta.georeferenced = True


def _grid_mapping(fh: h5py.File, ds: h5py.Dataset, name: str, where: str) -> tuple[Any, dict[str, Any]]:
    """The CRS the ``grid_mapping`` attribute names; the file claims one, so failing to get it is an error."""
    from pyproj import CRS

    var = _lookup(fh, ds, name)
    if var is None:
        raise InputError(
            f"{where}: grid_mapping names {name!r}, which is not in the file",
            code="CRS_INVALID",
            field="crs",
            found=name,
        )
    gm = {k: _text(v) for k, v in var.attrs.items()}
    try:
        return CRS.from_cf(gm), gm
    except Exception as exc:  # pyproj raises CRSError, but also KeyError/ValueError on odd attributes
        raise InputError(
            f"{where}: grid mapping {name!r} cannot be parsed as a CRS ({exc})",
            code="CRS_INVALID",
            field="crs",
            found={k: v for k, v in gm.items() if isinstance(v, str | int | float)},
        ) from exc


def _lookup(fh: h5py.File, ds: h5py.Dataset, name: str) -> Any:
    """A variable by name: relative to the dataset's group, then from the root (CF allows both)."""
    for candidate in (f"{ds.parent.name.rstrip('/')}/{name}", name):
        try:
            obj = fh.get(candidate)
        except Exception:
            obj = None
        if obj is not None:
            return obj
    return None


def _xy_coordinates(fh: h5py.File, ds: h5py.Dataset) -> tuple[h5py.Dataset, h5py.Dataset] | None:
    """The x and y coordinate variables: the dataset's dimension scales, else ``x``/``y`` beside it."""
    import h5py

    scales = [ds.dims[i][0] if len(ds.dims[i]) else None for i in (ds.ndim - 1, ds.ndim - 2)]
    if all(isinstance(s, h5py.Dataset) and s.ndim == 1 and s.dtype.kind in "uif" for s in scales):
        x, y = scales
        if len(x) == ds.shape[-1] and len(y) == ds.shape[-2]:
            return x, y
    x, y = _lookup(fh, ds, "x"), _lookup(fh, ds, "y")
    if isinstance(x, h5py.Dataset) and isinstance(y, h5py.Dataset) and x.ndim == 1 and y.ndim == 1:
        return x, y
    return None


def _regular(values: np.ndarray) -> bool:
    if len(values) < 3:
        return True
    steps = np.diff(values)
    return bool(np.all(np.abs(steps - steps[0]) <= IRREGULAR_TOLERANCE * abs(steps[0])) and steps[0] != 0)


def _cf_values(var: h5py.Dataset) -> np.ndarray:
    scale = float(_text(var.attrs.get("scale_factor", 1.0)))
    offset = float(_text(var.attrs.get("add_offset", 0.0)))
    return np.asarray(var[()], dtype="float64") * scale + offset
