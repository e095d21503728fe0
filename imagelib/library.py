"""The notebook-facing Python API: a few verbs over a library context (``lib=``, default :func:`current`)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import xarray as xr

from imagelib.context import Library, current
from imagelib.derive import apply_version
from imagelib.hashing import jsonable
from imagelib.ingestion import ingest  # re-exported: imagelib.ingest keeps its full signature
from imagelib.stored import open_version
from imagelib.versioning import check_version_id

__all__ = ["apply", "ingest", "lineage", "open", "search", "versions"]


def open(version: str, level: int = 0, *, lib: Library | None = None) -> xr.DataArray:
    """A stored version as a lazy DataArray (``level`` picks a pyramid level, 0 = full resolution)."""
    return open_version(version, level, lib=lib)


def versions(namespace: str, dataset: str, *, lib: Library | None = None) -> list[dict[str, Any]]:
    """Versions of ``namespace/dataset``, oldest first."""
    return [public_row(r) for r in current(lib).catalog.versions(namespace, dataset)]


def lineage(version: str, *, lib: Library | None = None) -> dict[str, Any]:
    """Ancestors and descendants of a version with the operation on each edge.

    A stitched mosaic also gets ``stitch``: its solved tile positions and a summary of its report.
    """
    catalog = current(lib).catalog
    out = catalog.lineage(check_version_id(version))
    saved = (catalog.get_version(version).get("attrs") or {}).get("stitch")
    if saved:
        from imagelib.stitching.summary import lineage_record

        out["stitch"] = lineage_record(saved)
    return jsonable(out)


def apply(
    version: str,
    chain: list[dict[str, Any]] | str | os.PathLike[str],
    *,
    lib: Library | None = None,
    progress: bool = False,
) -> str:
    """Apply a chain (a list, JSON text or a JSON file) to a version; return the derived version's ID."""
    return apply_version(version, chain, lib=lib, progress=progress)["version"]


def search(
    bbox: tuple[float, float, float, float] | None = None,
    time: tuple[datetime | None, datetime | None] | None = None,
    namespace: str | None = None,
    dtype: str | None = None,
    *,
    lib: Library | None = None,
) -> list[dict[str, Any]]:
    """Versions intersecting an EPSG:4326 bbox / time range, optionally in one namespace or dtype."""
    rows = current(lib).catalog.search(bbox=bbox, time=time, namespace=namespace, dtype=dtype)
    return [public_row(r) for r in rows]


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A catalog row as users see it (strict JSON, EPSG:4326 bbox grouped)."""
    out = {k: v for k, v in row.items() if k not in ("west", "south", "east", "north", "attrs")}
    out["bounds_4326"] = (
        [row["west"], row["south"], row["east"], row["north"]] if row.get("west") is not None else None
    )
    out["version"] = row["id"]
    for key in ("created_at", "added_at", "time_start", "time_end"):
        if isinstance(out.get(key), datetime):
            out[key] = out[key].isoformat()
    return jsonable(out)
