"""Validate untrusted raster files: schema rules on metadata, then content rules on every pixel.

``validate(...)`` returns ``{"valid", "errors", "warnings", "info"}``; every error carries a stable code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import xarray as xr

from imagelib.errors import ImagelibError
from imagelib.formats import open_array, source_path
from imagelib.hashing import file_sha256, jsonable
from imagelib.validation.content import ContentStats, read_through
from imagelib.validation.rules import RuleSet, load_rules
from imagelib.validation.schema import check_schema, split_reader_warnings

__all__ = ["ContentStats", "RuleSet", "build_report", "describe", "load_rules", "read_through", "validate"]


def describe(data: xr.DataArray) -> dict[str, Any]:
    """The facts a report and a catalog row share: format, dims, shape, dtype, CRS, bounds, nodata."""
    keys = ("format", "crs", "bounds", "nodata", "transform", "address", "time", "band_names", "source_shape")
    return {
        "dims": list(data.dims),
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        **{k: data.attrs.get(k) for k in keys},
    }


def build_report(
    errors: list[dict[str, Any]], warnings: list[dict[str, Any]], info: dict[str, Any]
) -> dict[str, Any]:
    """Assemble the DESIGN.md report shape (strict JSON)."""
    return jsonable({"valid": not errors, "errors": errors, "warnings": warnings, "info": info})


def checksum_issue(declared: str | None, actual: str) -> list[dict[str, Any]]:
    """CHECKSUM_MISMATCH when a declared sha256 differs from the bytes."""
    if declared and declared.lower() != actual:
        return [
            {
                "code": "CHECKSUM_MISMATCH",
                "message": "sha256 of the file differs from the declared one",
                "field": "sha256",
                "expected": declared.lower(),
                "found": actual,
            }
        ]
    return []


def validate(
    source: str | os.PathLike[str],
    rules: RuleSet | str | Path | None = None,
    sha256: str | None = None,
) -> dict[str, Any]:
    """Validate a file (``path`` or ``path#/address``) against a rule set; never raises for bad input."""
    ruleset = rules if isinstance(rules, RuleSet) else load_rules(rules)
    info: dict[str, Any] = {"path": os.fspath(source)}
    try:
        data = open_array(source)
        info.update(describe(data))
        errors = check_schema(data, ruleset)
        warnings = _warnings(data, ruleset)
        if not errors and ruleset.read_through:
            stats = read_through(data)
            errors += stats.issues(ruleset)
            info["stats"] = stats.summary()
        info["sha256"] = file_sha256(source_path(source))
        errors += checksum_issue(sha256, info["sha256"])
    except ImagelibError as exc:
        return build_report([exc.to_dict()], [], info)
    return build_report(errors, warnings, info)


def _warnings(data: xr.DataArray, rules: RuleSet) -> list[dict[str, Any]]:
    """Coded warnings: the reader's (metadata lost, pixels usable) not required by a rule, and CRS_MISSING."""
    out = split_reader_warnings(data, rules)[1]
    lost_crs = data.attrs.get("georeferenced") and data.attrs.get("crs") is None
    if lost_crs and not any(item["code"] == "CRS_MISSING" for item in out):
        out.append(
            {
                "code": "CRS_MISSING",
                "message": "geotransform without CRS: bounds are in pixel-like units",
                "field": "crs",
            }
        )
    return out
