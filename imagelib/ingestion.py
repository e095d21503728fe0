"""Ingest: source → formats → validation → versioning → storage → catalog (DESIGN.md data flow).

Each pixel is read once: the chunked read-through that validates content also writes level 0 of the
OME-Zarr multiscale, while a second thread streams the original bytes to the store and hashes them
(hashlib releases the GIL). Everything lands under a staging prefix and is published, then recorded
in the catalog in one transaction, only after it verified — a killed ingest leaves no version.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr
from tqdm import tqdm

from imagelib.catalog import Catalog, check_name
from imagelib.context import Library, current
from imagelib.errors import ImagelibError, InputError, UsageError, ValidationFailed, from_exception
from imagelib.formats import open_array, split_address
from imagelib.hashing import file_sha256, jsonable
from imagelib.jobs import create_job, update_job
from imagelib.stored import Provenance, Staging, record, store_stats, total_pixels, version_row
from imagelib.validation import build_report, checksum_issue, describe, load_rules
from imagelib.validation.rules import RuleSet
from imagelib.validation.schema import check_schema
from imagelib.versioning import root_version_id


@dataclass
class IngestRequest:
    """One ingest: the opened source and what was asked of it."""

    data: xr.DataArray
    path: Path
    address: str | None
    namespace: str
    dataset: str
    rules: RuleSet
    declared_sha256: str | None
    info: dict[str, Any]
    size: int = 0
    progress: bool = False

    def report(self, errors: list[dict[str, Any]], **info: Any) -> dict[str, Any]:
        """The validation report of this source with ``errors``."""
        return build_report(errors, [], {**self.info, **info})


def ingest(
    source: str | os.PathLike[str],
    namespace: str,
    dataset: str,
    *,
    rules: RuleSet | str | Path | None = None,
    sha256: str | None = None,
    lib: Library | None = None,
    progress: bool = False,
    record_job: bool = True,
    tiles: TileRequest | str | None = None,
) -> dict[str, Any]:
    """Ingest a file (``path`` or ``path#/address``) as a version of ``namespace/dataset``.

    Returns the summary ``{"version","namespace","dataset","shape","dtype","crs","bounds","checksum",...}``;
    raises :class:`ValidationFailed` (with ``.report``) for invalid input, nothing published. A caller that
    owns a job record already (the queue) passes ``record_job=False`` so each ingest is one job row.
    With ``tiles`` (``"dzi"`` or ``"xyz"``: into the current folder, or a :class:`TileRequest`) the pyramid
    is cut from the levels just written (the source is read once) and the summary gets ``"tiles"``: the
    :func:`imagelib.tiling.export.tile_version` result. XYZ needs a georeferenced source, checked before
    any byte is stored.
    """
    check_name("namespace", namespace)
    check_name("dataset", dataset)
    if isinstance(tiles, str):
        tiles = TileRequest(scheme=tiles)
    if tiles is not None:
        tiles.check()  # a bad tile option fails before any byte is read or stored
    ruleset = rules if isinstance(rules, RuleSet) else load_rules(rules)
    lib = current(lib)
    result = _ingest(source, namespace, dataset, ruleset, sha256, lib, progress, record_job, tiles)
    if tiles is not None:
        result["tiles"] = tiles.cut(result["version"], lib, progress)
    return result


@dataclass(frozen=True)
class TileRequest:
    """``ingest --tiles dzi|xyz``: the pyramid to write once the version is stored (``fmt`` None: JPEG
    for DZI, PNG for XYZ, as ``imagelib tile``; tile size and overlap are DZI's)."""

    out: str | os.PathLike[str] = "."
    fmt: str | None = None
    tile_size: int = 254
    overlap: int = 1
    scheme: str = "dzi"

    def check(self) -> None:
        """Coded UsageError for an unknown scheme, format or a tile geometry vips would refuse."""
        from imagelib.tiling.encode import normalize_format

        if self.scheme not in ("dzi", "xyz"):
            raise UsageError(
                f"--tiles {self.scheme!r} is not supported",
                field="tiles",
                expected=["dzi", "xyz"],
                found=self.scheme,
            )
        if self.fmt is not None:
            normalize_format(self.fmt)
        if self.scheme == "dzi" and (self.tile_size < 1 or not 0 <= self.overlap < self.tile_size):
            raise UsageError(
                "tile size must be ≥ 1 and overlap in [0, tile size)",
                field="tile_size",
                found=[self.tile_size, self.overlap],
            )

    def check_source(self, data: xr.DataArray) -> None:
        """XYZ tiles need a CRS and a geotransform: NOT_GEOREFERENCED before anything is stored."""
        from imagelib.tiling.xyz import has_georeference

        if self.scheme == "xyz" and not has_georeference(data.attrs):
            raise ImagelibError(
                "--tiles xyz needs a georeferenced source (CRS + transform); use --tiles dzi",
                code="NOT_GEOREFERENCED",
                field="tiles",
            )

    def cut(self, version: str, lib: Library, progress: bool) -> dict[str, Any]:
        """Write the pyramid of ``version`` — the same call, so the same bytes, as ``imagelib tile``."""
        from imagelib.tiling.export import tile_version

        return tile_version(
            version,
            self.scheme,
            self.out,
            fmt=self.fmt,
            tile_size=self.tile_size,
            overlap=self.overlap,
            progress=progress,
            lib=lib,
        )


def _ingest(
    source: str | os.PathLike[str],
    namespace: str,
    dataset: str,
    ruleset: RuleSet,
    sha256: str | None,
    lib: Library,
    progress: bool,
    record_job: bool,
    tiles: TileRequest | None = None,
) -> dict[str, Any]:
    """The ingest proper: dedup shortcut, job record, validate + store + publish."""
    request = _open(source, namespace, dataset, ruleset, sha256, progress)
    if tiles is not None:
        tiles.check_source(request.data)
    catalog = lib.catalog
    known = _known_version(catalog, request)
    if known:
        return summary(catalog.get_version(known), namespace, dataset, deduplicated=True)
    if not record_job:
        return _ingest_new(request, lib)
    job = create_job(
        catalog,
        "ingest",
        {"source": os.fspath(source), "namespace": namespace, "dataset": dataset},
        state="running",
    )
    try:
        result = _ingest_new(request, lib)
    except BaseException as exc:
        coded = from_exception(exc)
        report = coded.report if isinstance(coded, ValidationFailed) else request.report([coded.to_dict()])
        update_job(catalog, job, state="failed", error=coded.to_dict(), report=report)
        raise
    update_job(catalog, job, state="succeeded", progress=1.0, version_id=result["version"])
    return result


def _open(
    source: str | os.PathLike[str],
    namespace: str,
    dataset: str,
    rules: RuleSet,
    declared: str | None,
    progress: bool,
) -> IngestRequest:
    """Open the source and check its schema rules (ValidationFailed before any byte is stored)."""
    text, address = split_address(source)
    info: dict[str, Any] = {"path": os.fspath(source)}
    try:
        data = open_array(source)
    except ImagelibError as exc:
        raise ValidationFailed(build_report([exc.to_dict()], [], info)) from exc
    info.update(describe(data))
    request = IngestRequest(data, Path(text), address, namespace, dataset, rules, declared, info)
    request.progress = progress
    errors = check_schema(data, rules)
    if errors:
        raise ValidationFailed(request.report(errors))
    request.size = _source_size(request.path)
    return request


def _source_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _known_version(catalog: Catalog, request: IngestRequest) -> str | None:
    """Re-ingest shortcut: only when a same-size source exists in the dataset do we hash first."""
    namespace, dataset = request.namespace, request.dataset
    if not catalog.same_size_versions(namespace, dataset, request.size, request.address):
        return None
    digest = file_sha256(request.path)
    version = root_version_id(digest, request.address)
    declared = request.declared_sha256
    if (declared is None or declared.lower() == digest) and catalog.has_version(version):
        catalog.link_version(version, namespace, dataset)
        return version
    return None


def _ingest_new(request: IngestRequest, lib: Library) -> dict[str, Any]:
    """Copy + hash the source while validating and writing the pyramid; publish; record."""
    data, store, catalog = request.data, lib.store, lib.catalog
    namespace, dataset = request.namespace, request.dataset
    with Staging(store) as staging, SourceCopy(staging, request.path, request.size, request.progress) as copy:
        attrs = {**data.attrs, "name": f"{namespace}/{dataset}", "dims": list(data.dims)}
        with progress_bar(request.progress, total_pixels(data), "px", "validate+write") as pixels_bar:
            try:
                group, stats = staging.write_levels(data, attrs, pixels_bar.update)
            except InputError as exc:  # undecodable pixels: the input is invalid, not the system broken
                raise ValidationFailed(request.report([exc.to_dict()])) from exc
        digest = copy.digest()
        errors = stats.issues(request.rules) + checksum_issue(request.declared_sha256, digest)
        if errors:
            raise ValidationFailed(request.report(errors, sha256=digest))
        version = root_version_id(digest, request.address)
        if catalog.has_version(version):  # same bytes ingested meanwhile (or into another dataset)
            store.remove(staging.key)
            catalog.link_version(version, namespace, dataset)
            return summary(catalog.get_version(version), namespace, dataset, deduplicated=True)
        full_stats = store_stats(group, data, {**attrs, "version": version, "sha256": digest}, stats)
        store.verify_size(copy.key, request.size)
        staging.publish(version)
    origin = Provenance(checksum=digest, size=request.size, address=request.address)
    row = version_row(version, data, store.key_url(f"versions/{version}"), full_stats, origin)
    record(lib, row, namespace, dataset, origin)
    return summary(catalog.get_version(version), namespace, dataset)


class CopyCancelled(Exception):
    """Raised inside the copy thread to stop it: the ingest it served has failed."""


class SourceCopy:
    """The original's bytes stored under ``<staging>/source/<name>`` and hashed on a background thread
    (``sendfile`` and hashlib release the GIL) while the pixels are validated and written. Leaving the
    block on an error stops the copy at its next block and waits for it, so a failed ingest of a large
    file does not wait for the whole copy, and the staging prefix (removed by :class:`Staging`, which
    is left after this) has nobody writing into it."""

    def __init__(self, staging: Staging, path: Path, size: int, progress: bool) -> None:
        self.key = f"{staging.key}/source/{path.name}"
        self._stop = threading.Event()
        self._bar = progress_bar(progress, size, "B", "hash+store")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="source-copy")
        self._future = self._pool.submit(staging.store.put_file, path, self.key, self._on_bytes)

    def digest(self) -> str:
        """sha256 of the stored bytes, once the copy is complete (its errors raised here)."""
        return self._future.result()

    def _on_bytes(self, count: int) -> None:
        if self._stop.is_set():
            raise CopyCancelled
        self._bar.update(count)

    def __enter__(self) -> SourceCopy:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self._stop.set()
        self._pool.shutdown(wait=True)  # never leave a thread writing into staging behind
        self._bar.close()


def progress_bar(enabled: bool, total: int, unit: str, desc: str) -> tqdm:
    """A tqdm bar on stderr that leaves no line behind; silent unless asked."""
    return tqdm(
        total=total, unit=unit, unit_scale=True, desc=desc, disable=not enabled, file=sys.stderr, leave=False
    )


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
