"""Derived versions: apply a filter chain to a stored version and store the result with lineage.

The derived ID is a function of the parent ID and the canonical chain only, so asking twice for the
same derivation returns the existing version without recomputing (idempotent, deduplicated).
"""

from __future__ import annotations

import os
from typing import Any

from imagelib.context import Library, current
from imagelib.stored import Provenance, open_version, write_version
from imagelib.versioning import check_version_id, derived_version_id


def filter_operation(chain: list[dict[str, Any]]) -> dict[str, Any]:
    """The lineage operation recorded for a filter chain (canonical form)."""
    from imagelib.filters import canonical_chain

    return {"op": "filter", "chain": canonical_chain(chain)}


def apply_version(
    version: str,
    chain: list[dict[str, Any]] | str | os.PathLike[str],
    *,
    lib: Library | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Create (or find) the version derived from ``version`` by ``chain``: ``{"version","parents","op"}``."""
    from imagelib.filters import apply_chain, load_chain

    lib = current(lib)
    ops = load_chain(chain)
    parent = lib.catalog.get_version(check_version_id(version))
    operation = filter_operation(ops)
    derived = derived_version_id([version], operation)
    result = {"version": derived, "parents": [version], "op": operation}
    if lib.catalog.has_version(derived):
        return {**result, "deduplicated": True}
    data = apply_chain(open_version(version, lib=lib), ops)
    namespace, dataset = parent["datasets"][0].split("/", 1)
    write_version(
        data,
        version=derived,
        namespace=namespace,
        dataset=dataset,
        origin=Provenance(kind="derived", parents={version: operation}),
        time_range=(parent["time_start"], parent["time_end"]),
        lib=lib,
        progress=progress,
    )
    return {**result, "deduplicated": False}
