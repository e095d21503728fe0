"""Derived versions: apply a filter chain to a stored version and store the result with lineage.

The derived ID is a function of the parent ID and the canonical chain only, so asking twice for the
same derivation returns the existing version without recomputing (idempotent, deduplicated).
"""

from __future__ import annotations

import sys
from typing import Any

import xarray as xr
from tqdm import tqdm

from imagelib.catalog import Catalog
from imagelib.ingestion import store_stats, total_rows, version_row, write_levels
from imagelib.multiscale import read_level
from imagelib.storage import Store
from imagelib.versioning import check_version_id, derived_version_id


def open_version(
    version: str, level: int = 0, *, store: Store | None = None, catalog: Catalog | None = None
) -> xr.DataArray:
    """A stored version (one pyramid level) as a lazy DataArray; NotFound when unknown."""
    check_version_id(version)
    catalog = catalog or Catalog()
    row = catalog.get_version(version)
    store = store or Store(_store_url(row["storage_url"], version))
    group = store.open_group(f"versions/{version}/image.zarr")
    data = read_level(group, level)
    data.attrs["version"] = version
    return data


def _store_url(storage_url: str, version: str) -> str:
    """The store root a version was written to (its URL minus ``/versions/<id>``)."""
    return storage_url[: -len(f"/versions/{version}")]


def filter_operation(chain: list[dict[str, Any]]) -> dict[str, Any]:
    """The lineage operation recorded for a filter chain (canonical form)."""
    from imagelib.filters import canonical_chain

    return {"op": "filter", "chain": canonical_chain(chain)}


def apply_version(
    version: str,
    chain: list[dict[str, Any]],
    *,
    store: Store | None = None,
    catalog: Catalog | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Create (or find) the version derived from ``version`` by ``chain``: ``{"version","parents","op"}``."""
    from imagelib.filters import apply_chain

    catalog = catalog or Catalog()
    parent = catalog.get_version(check_version_id(version))
    operation = filter_operation(chain)
    derived = derived_version_id([version], operation)
    result = {"version": derived, "parents": [version], "op": operation}
    if catalog.has_version(derived):
        return {**result, "deduplicated": True}
    store = store or Store(_store_url(parent["storage_url"], version))
    source = open_version(version, store=store, catalog=catalog)
    data = apply_chain(source, chain)
    namespace, dataset = parent["datasets"][0].split("/", 1)
    attrs = {
        **data.attrs,
        "name": f"{namespace}/{dataset}",
        "dims": list(data.dims),
        "version": derived,
        "parents": [version],
        "operation": operation,
    }
    staging = store.new_staging()
    try:
        bar = tqdm(total=total_rows(data), unit="row", desc="filter", disable=not progress, file=sys.stderr)
        with bar:
            group, stats = write_levels(store, staging, data, attrs, bar.update)
        full_stats = store_stats(group, data, attrs, stats)
        store.publish(staging, f"versions/{derived}")
    except BaseException:
        store.remove(staging)
        raise
    row = version_row(derived, "derived", data, store.key_url(f"versions/{derived}"), full_stats)
    row["time_start"], row["time_end"] = parent["time_start"], parent["time_end"]
    catalog.add_version(row, namespace, dataset, parents={version: operation})
    return {**result, "deduplicated": False}
