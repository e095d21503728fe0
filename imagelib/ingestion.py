"""Ingest: source → formats → validation → versioning → storage → catalog (DESIGN.md data flow).

Each pixel is read once: the chunked read-through that validates content also writes level 0 of the
OME-Zarr multiscale, while a second thread streams the original bytes to the store and hashes them
(hashlib releases the GIL). Everything lands under a staging prefix and is published, then recorded
in the catalog in one transaction, only after it verified — a killed ingest leaves no version.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm import tqdm

from imagelib import multiscale
from imagelib.catalog import Catalog, check_name
from imagelib.errors import ImagelibError, InputError, ValidationFailed
from imagelib.formats import open_array, split_address
from imagelib.hashing import file_sha256, jsonable
from imagelib.jobs import create_job, update_job
from imagelib.storage import Store
from imagelib.validation import build_report, checksum_issue, describe, load_rules
from imagelib.validation.content import ContentStats, read_through
from imagelib.validation.rules import RuleSet
from imagelib.validation.schema import check_schema
from imagelib.versioning import root_version_id

STATS_LEVEL_SIDE = 2048  # percentiles come from the first level no larger than this


def ingest(
    source: str | os.PathLike[str],
    namespace: str,
    dataset: str,
    *,
    rules: RuleSet | str | Path | None = None,
    sha256: str | None = None,
    store: Store | None = None,
    catalog: Catalog | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Ingest a file (``path`` or ``path#/address``) as a version of ``namespace/dataset``.

    Returns the summary ``{"version","namespace","dataset","shape","dtype","crs","bounds","checksum",...}``;
    raises :class:`ValidationFailed` (with ``.report``) for invalid input, nothing published.
    """
    check_name("namespace", namespace)
    check_name("dataset", dataset)
    ruleset = rules if isinstance(rules, RuleSet) else load_rules(rules)
    catalog = catalog or Catalog()
    store = store or Store()
    text, address = split_address(source)
    path = Path(text)
    info: dict[str, Any] = {"path": os.fspath(source)}
    try:
        data = open_array(source)
    except ImagelibError as exc:
        raise ValidationFailed(build_report([exc.to_dict()], [], info)) from exc
    info.update(describe(data))
    errors = check_schema(data, ruleset)
    if errors:
        raise ValidationFailed(build_report(errors, [], info))
    size = _source_size(path)
    known = _known_version(catalog, path, size, address, namespace, dataset, sha256)
    if known:
        return summary(catalog.get_version(known), namespace, dataset, deduplicated=True)
    job = create_job(
        catalog,
        "ingest",
        {"source": os.fspath(source), "namespace": namespace, "dataset": dataset},
        state="running",
    )
    try:
        result = _ingest_new(
            data, path, size, address, namespace, dataset, ruleset, sha256, store, catalog, progress, info
        )
    except ImagelibError as exc:
        report = exc.report if isinstance(exc, ValidationFailed) else build_report([exc.to_dict()], [], info)
        update_job(catalog, job, state="failed", error=exc.to_dict(), report=report)
        raise
    except BaseException as exc:
        update_job(catalog, job, state="failed", error={"code": "INTERNAL", "message": repr(exc)})
        raise
    update_job(catalog, job, state="succeeded", progress=1.0, version_id=result["version"])
    return result


def _source_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _known_version(
    catalog: Catalog,
    path: Path,
    size: int,
    address: str | None,
    namespace: str,
    dataset: str,
    declared: str | None,
) -> str | None:
    """Re-ingest shortcut: only when a same-size source exists in the dataset do we hash first."""
    if not catalog.same_size_versions(namespace, dataset, size, address):
        return None
    digest = file_sha256(path)
    version = root_version_id(digest, address)
    if (declared is None or declared.lower() == digest) and catalog.has_version(version):
        catalog.link_version(version, namespace, dataset)
        return version
    return None


def _ingest_new(
    data: xr.DataArray,
    path: Path,
    size: int,
    address: str | None,
    namespace: str,
    dataset: str,
    rules: RuleSet,
    declared: str | None,
    store: Store,
    catalog: Catalog,
    progress: bool,
    info: dict[str, Any],
) -> dict[str, Any]:
    staging = store.new_staging()
    try:
        attrs = {**data.attrs, "name": f"{namespace}/{dataset}", "dims": list(data.dims)}
        with ThreadPoolExecutor(1) as pool, _bars(progress, size, total_rows(data)) as (bytes_bar, rows_bar):
            copied = pool.submit(store.put_file, path, f"{staging}/source/{path.name}", bytes_bar.update)
            try:
                group, stats = write_levels(store, staging, data, attrs, rows_bar.update)
            except InputError as exc:  # undecodable pixels: the input is invalid, not the system broken
                raise ValidationFailed(build_report([exc.to_dict()], [], info)) from exc
            digest = copied.result()
        errors = stats.issues(rules) + checksum_issue(declared, digest)
        if errors:
            raise ValidationFailed(build_report(errors, [], {**info, "sha256": digest}))
        version = root_version_id(digest, address)
        if catalog.has_version(version):  # same bytes ingested meanwhile (or into another dataset)
            store.remove(staging)
            catalog.link_version(version, namespace, dataset)
            return summary(catalog.get_version(version), namespace, dataset, deduplicated=True)
        full_stats = store_stats(group, data, {**attrs, "version": version, "sha256": digest}, stats)
        if not path.is_dir():
            store.verify_size(f"{staging}/source/{path.name}", size)
        store.publish(staging, f"versions/{version}")
    except BaseException:
        store.remove(staging)
        raise
    row = version_row(
        version,
        "root",
        data,
        store.key_url(f"versions/{version}"),
        full_stats,
        checksum=digest,
        size=size,
        address=address,
    )
    catalog.add_version(row, namespace, dataset)
    return summary(catalog.get_version(version), namespace, dataset)


def write_levels(
    store: Store, staging: str, data: xr.DataArray, attrs: dict[str, Any], on_rows: Any = None
) -> tuple[Any, ContentStats]:
    """Create the multiscale group under ``staging`` and fill every level while reading data once.

    Returns the group and the content totals gathered on the way (see :func:`store_stats`).
    """
    group = multiscale.create(store.zarr_store(f"{staging}/image.zarr"), data, attrs)
    with multiscale.PyramidWriter(group, data.dims, data.attrs.get("nodata")) as pyramid:

        def write(index: tuple[slice, ...], block: np.ndarray) -> None:
            pyramid.write(index, block)
            if on_rows:
                on_rows((index[-1].stop - index[-1].start) * _planes(index, data))

        stats = read_through(data, on_block=write)
        pyramid.close()
    return group, stats


def store_stats(group: Any, data: xr.DataArray, attrs: dict[str, Any], stats: ContentStats) -> dict[str, Any]:
    """Compute view percentiles from a small level and store all statistics in the group attrs."""
    full_stats = {**stats.summary(), **percentiles(group, data)}
    group.attrs["imagelib"] = jsonable({**attrs, "stats": full_stats})
    return full_stats


def total_rows(data: xr.DataArray) -> int:
    """Rows a full read-through covers (y × z planes): the progress bar's total."""
    return data.shape[-2] * (data.shape[0] if data.dims[0] == "z" else 1)


def _planes(index: tuple[slice, ...], data: xr.DataArray) -> int:
    """How many z planes a block covers (1 for 2-D and banded data)."""
    return index[0].stop - index[0].start if data.ndim == 3 and data.dims[0] == "z" else 1


class _bars:
    """Two tqdm bars on stderr (bytes hashed/copied, rows validated/written); silent unless asked."""

    def __init__(self, enabled: bool, size: int, rows: int):
        self.enabled, self.size, self.rows = enabled, size, rows

    def __enter__(self) -> tuple[tqdm, tqdm]:
        opts = {"disable": not self.enabled, "file": sys.stderr, "leave": False}
        self.bars = (
            tqdm(total=self.size, unit="B", unit_scale=True, desc="hash+store", **opts),
            tqdm(total=self.rows, unit="row", desc="validate+write", **opts),
        )
        return self.bars

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars:
            bar.close()


def percentiles(group: Any, data: xr.DataArray) -> dict[str, Any]:
    """Per-band 2nd/98th percentiles of valid pixels, from a small pyramid level (view-time scaling)."""
    level = next(
        (k for k in range(len(group)) if max(group[str(k)].shape[-2:]) <= STATS_LEVEL_SIDE), len(group) - 1
    )
    arr = np.asarray(group[str(level)][...])
    planes = arr if data.dims[0] == "band" else arr[None]
    nodata = data.attrs.get("nodata")
    p2, p98 = [], []
    for plane in planes:
        values = plane.astype("float64").ravel()
        valid = np.isfinite(values)
        if nodata is not None and not np.isnan(nodata):
            valid &= values != nodata
        lo, hi = np.percentile(values[valid], [2, 98]) if valid.any() else (None, None)
        p2.append(lo)
        p98.append(hi)
    return {"p2": p2, "p98": p98, "stats_level": level}


def version_row(
    version: str,
    kind: str,
    data: xr.DataArray,
    storage_url: str,
    stats: dict[str, Any],
    *,
    checksum: str | None = None,
    size: int | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """The catalog row of a version (native and EPSG:4326 bounds, time range)."""
    attrs = data.attrs
    west_south_east_north = geographic_bounds(attrs.get("crs_wkt") or attrs.get("crs"), attrs.get("bounds"))
    start, end = parse_time(attrs.get("time")), parse_time(attrs.get("time_end"))
    return jsonable(
        {
            "id": version,
            "kind": kind,
            "format": attrs.get("format"),
            "dims": list(data.dims),
            "shape": list(data.shape),
            "dtype": str(data.dtype),
            "crs": attrs.get("crs"),
            "bounds": attrs.get("bounds"),
            "checksum": checksum,
            "address": address,
            "size_bytes": size,
            "storage_url": storage_url,
            "stats": stats,
            "attrs": {k: v for k, v in attrs.items() if k != "crs_wkt"},
            **dict(
                zip(("west", "south", "east", "north"), west_south_east_north or (None,) * 4, strict=True)
            ),
        }
    ) | {"time_start": start, "time_end": end or start}


def geographic_bounds(
    crs: str | None, bounds: list[float] | None
) -> tuple[float, float, float, float] | None:
    """Bounds reprojected to EPSG:4326 (densified edges); None without CRS or bounds."""
    if not crs or not bounds:
        return None
    from pyproj import CRS, Transformer

    try:
        transformer = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)
        left, bottom, right, top = bounds
        w, s, e, n = transformer.transform_bounds(
            min(left, right), min(bottom, top), max(left, right), max(bottom, top), densify_pts=21
        )
    except Exception:
        return None
    values = (w, s, e, n)
    return values if all(np.isfinite(values)) else None


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 or TIFF ``YYYY:MM:DD HH:MM:SS`` → aware UTC datetime; anything else → None."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) >= 19 and text[4] == ":" and text[7] == ":":
        text = text[:4] + "-" + text[5:7] + "-" + text[8:]
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def summary(row: dict[str, Any], namespace: str, dataset: str, deduplicated: bool = False) -> dict[str, Any]:
    """The CLI/API ingest result."""
    return jsonable(
        {
            "version": row["id"],
            "namespace": namespace,
            "dataset": dataset,
            "shape": row["shape"],
            "dtype": row["dtype"],
            "crs": row["crs"],
            "bounds": row["bounds"],
            "checksum": row["checksum"],
            "dims": row["dims"],
            "format": row["format"],
            "source_shape": (row["attrs"] or {}).get("source_shape"),
            "storage_url": row["storage_url"],
            "bounds_4326": [row["west"], row["south"], row["east"], row["north"]]
            if row["west"] is not None
            else None,
            "deduplicated": deduplicated,
        }
    )
