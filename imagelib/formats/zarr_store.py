"""Zarr v2/v3 and OME-Zarr (NGFF) reader: level 0 of a multiscale group, or a plain array."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import xarray as xr

from imagelib.errors import InputError
from imagelib.formats.lazy import guard_dimensions, preferred_chunks
from imagelib.formats.meta import RasterMeta

if TYPE_CHECKING:  # zarr-python costs ~0.15 s to import; only Zarr inputs need it
    import zarr

NGFF_AXES = {"t": "t", "c": "band", "z": "z", "y": "y", "x": "x"}
ZARR_MARKERS = (".zgroup", ".zarray", "zarr.json")


class ZarrReader:
    """Zarr v2/v3 directory stores and OME-Zarr (NGFF) multiscales."""

    name = "zarr"

    def guess_can_open(self, path: Path) -> bool:
        """A directory holding Zarr v2 or v3 metadata at its root."""
        return path.is_dir() and any((path / marker).exists() for marker in ZARR_MARKERS)

    def open(self, path: Path, address: str | None) -> xr.DataArray:
        """The addressed array, or level 0 of the NGFF multiscale."""
        return open_zarr(path, address)


def refuse_outside_paths(path: Path, address: str | None) -> None:
    """Symlinks leaving the store, and ``..`` in an address or NGFF dataset path, point outside it."""
    root = path.resolve()
    for item in path.rglob("*"):
        if item.is_symlink() and not item.resolve().is_relative_to(root):
            raise InputError(
                f"{path}: {item.relative_to(path)} links outside the store to {item.resolve()}",
                code="EXTERNAL_REFERENCE",
                field="links",
            )
    if address and any(part in (".", "..") for part in address.strip("/").split("/")):
        raise InputError(
            f"{path}: array path {address!r} leaves the store", code="EXTERNAL_REFERENCE", field="address"
        )


def open_zarr(path: Path, address: str | None) -> xr.DataArray:
    """Open a Zarr array (``store.zarr#/path`` or the NGFF level 0) lazily."""
    import zarr

    refuse_outside_paths(path, address)
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path}: Zarr metadata is unreadable ({exc})", code="FORMAT_CORRUPT") from exc
    meta = RasterMeta(format="zarr")
    axes: list[str] | None = None
    if isinstance(node, zarr.Group):
        ome = dict(node.attrs).get("ome", node.attrs)  # NGFF 0.5 nests under "ome"
        multiscales = ome.get("multiscales") if hasattr(ome, "get") else None
        if address is None and multiscales:
            ms = multiscales[0]
            address = ms["datasets"][0]["path"]
            refuse_outside_paths(path, address)
            axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])] or None
            meta.format, meta.spacing = "ome-zarr", _spacing(ms, axes)
        if address is None:
            names = sorted(k for k, _ in node.arrays())
            raise InputError(
                f"{path}: Zarr group with several arrays {names}; address one as {path.name}#/<array>",
                code="DATASET_AMBIGUOUS",
                field="address",
                expected=names,
            )
        try:
            node = node[address.strip("/")]
        except KeyError as exc:
            raise InputError(
                f"{path}: no array {address!r}", code="DATASET_NOT_FOUND", field="address"
            ) from exc
    if not isinstance(node, zarr.Array):
        raise InputError(f"{path}#{address}: not an array", code="DATASET_NOT_FOUND", field="address")
    guard_dimensions(node.shape, node.dtype)
    return _to_dataarray(node, axes, meta, address)


def _spacing(ms: dict[str, Any], axes: list[str] | None) -> dict[str, float] | None:
    for transform in ms["datasets"][0].get("coordinateTransformations", []):
        if transform.get("type") == "scale" and axes:
            return {NGFF_AXES.get(a, a): float(s) for a, s in zip(axes, transform["scale"], strict=False)}
    return None


def _to_dataarray(
    arr: zarr.Array, axes: list[str] | None, meta: RasterMeta, address: str | None
) -> xr.DataArray:
    names = [NGFF_AXES.get(a, a) for a in axes] if axes else _default_axes(arr.ndim)
    data = da.from_zarr(arr)
    keep = [n in ("y", "x") or size > 1 for n, size in zip(names, arr.shape, strict=True)]
    index = tuple(slice(None) if k else 0 for k in keep)
    dims = [n for n, k in zip(names, keep, strict=True) if k]
    if dims and dims[0] == "t":
        dims[0] = "z"
    if len(dims) > 3:
        raise InputError(
            f"Zarr array {arr.shape} has more than 3 non-singleton axes", code="DIMENSIONS_NOT_ALLOWED"
        )
    fill = arr.fill_value
    meta.address = address
    meta.source_shape = list(arr.shape)
    meta.fill_value = None if fill is None else float(fill)
    out = xr.DataArray(data[index], dims=tuple(dims), attrs=meta.to_attrs())
    out.encoding.update(preferred_chunks(arr.chunks[-2:]))  # y, x are the last axes (NGFF and default)
    return out


def _default_axes(ndim: int) -> list[str]:
    return {
        2: ["y", "x"],
        3: ["z", "y", "x"],
        4: ["band", "z", "y", "x"],
        5: ["t", "band", "z", "y", "x"],
    }.get(ndim, [f"d{i}" for i in range(ndim)])
