"""intake 2 catalogs of the metadata catalog's versions (``imagelib catalog export``).

Each entry is an :class:`ImagelibReader`: reading it returns the lazy ``xarray.DataArray`` that
``imagelib.open(version)`` returns, CRS and attrs intact. Version IDs are content-addressed, so a catalog
written without a location opens against any library that holds the same versions (the reader uses the
environment's ``IMAGELIB_HOME``/``IMAGELIB_STORE``/``IMAGELIB_CATALOG``); ``location=True`` pins the
exporting library's store and catalog URLs into every entry instead. Needs ``intake`` (``imagelib[catalog]``).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import xarray as xr
from intake.readers import BaseReader
from intake.readers.entry import Catalog

from imagelib._version import __version__
from imagelib.context import Library, connect, current
from imagelib.errors import UsageError
from imagelib.hashing import jsonable

#: version row fields copied into each entry's metadata (shown without reading)
META_FIELDS = (
    "kind",
    "format",
    "dims",
    "shape",
    "dtype",
    "crs",
    "bounds",
    "checksum",
    "time_start",
    "time_end",
)


class ImagelibReader(BaseReader):
    """One stored version as the lazy DataArray of ``imagelib.open`` (kwargs: version, level, store,
    catalog; no store/catalog: the environment's library)."""

    imports: ClassVar[set[str]] = {"imagelib", "xarray"}
    output_instance = "xarray:DataArray"
    func = "imagelib:open"

    def _read(
        self,
        version: str,
        level: int = 0,
        store: str | None = None,
        catalog: str | None = None,
        **_: Any,
    ) -> xr.DataArray:
        from imagelib.stored import open_version

        lib = connect(store_url=store, catalog_url=catalog) if store or catalog else current()
        return open_version(version, level, lib=lib)


def build_catalog(
    namespace: str | None = None, *, location: bool = False, lib: Library | None = None
) -> tuple[Catalog, list[dict[str, Any]]]:
    """The intake catalog of every version (of one namespace) and the rows it was made from.

    Entries are named by version ID; each dataset ``namespace/dataset`` is also an alias of its newest
    version."""
    lib = current(lib)
    where: dict[str, str] = {}
    if location:
        where = {"store": lib.settings.store, "catalog": _shareable(lib.settings.catalog)}
    cat = Catalog(
        metadata={
            "description": f"imagelib versions{f' of namespace {namespace}' if namespace else ''}",
            "generator": f"imagelib {__version__} (imagelib catalog export)",
            **({"namespace": namespace} if namespace else {}),
        }
    )
    rows: dict[str, dict[str, Any]] = {}
    for item in lib.catalog.datasets():
        if namespace and item["namespace"] != namespace:
            continue
        versions = lib.catalog.versions(item["namespace"], item["dataset"])
        for row in versions:
            if row["id"] not in rows:
                rows[row["id"]] = {**row, "datasets": []}
                reader = ImagelibReader(version=row["id"], **where, metadata=_metadata(row))
                cat.add_entry(reader, name=row["id"])
            rows[row["id"]]["datasets"].append(f"{item['namespace']}/{item['dataset']}")
            cat.entries[row["id"]].metadata["datasets"] = rows[row["id"]]["datasets"]
        if versions:
            cat.aliases[f"{item['namespace']}/{item['dataset']}"] = versions[-1]["id"]
    return cat, list(rows.values())


def export_catalog(
    out: str | os.PathLike[str],
    namespace: str | None = None,
    *,
    location: bool = False,
    lib: Library | None = None,
) -> dict[str, Any]:
    """Write the intake catalog YAML to ``out``; returns ``{"path","entries","aliases","namespace"}``."""
    cat, rows = build_catalog(namespace, location=location, lib=lib)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    cat.to_yaml_file(str(path))
    return {"path": str(path), "entries": len(rows), "aliases": len(cat.aliases), "namespace": namespace}


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    meta = {k: row.get(k) for k in META_FIELDS}
    has_box = row.get("west") is not None
    meta["bounds_4326"] = [row["west"], row["south"], row["east"], row["north"]] if has_box else None
    for key in ("time_start", "time_end"):
        if isinstance(meta[key], datetime):
            meta[key] = meta[key].isoformat()
    meta["version"] = row["id"]
    return jsonable(meta)


def _shareable(url: str) -> str:
    """A catalog URL that may be written into a file: never one carrying a password."""
    if urlsplit(url).password:
        raise UsageError(
            "the catalog URL holds a password; export without --location (readers then use their own "
            "IMAGELIB_CATALOG)",
            field="location",
        )
    return url
