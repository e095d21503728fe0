"""Schema rules: checks on the declared metadata of an opened array (no pixel is read)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import xarray as xr

from imagelib.validation.rules import RuleSet

Issue = dict[str, Any]


def _issue(code: str, message: str, field: str, expected: Any = None, found: Any = None) -> Issue:
    return {"code": code, "message": message, "field": field, "expected": expected, "found": found}


def check_format(data: xr.DataArray, rules: RuleSet) -> list[Issue]:
    """The format must be in the allowed list."""
    fmt = data.attrs.get("format")
    if rules.formats and fmt not in rules.formats:
        return [_issue("FORMAT_NOT_ALLOWED", f"format {fmt} is not allowed", "format", rules.formats, fmt)]
    return []


def check_dims(data: xr.DataArray, rules: RuleSet) -> list[Issue]:
    """Layout and band count."""
    out: list[Issue] = []
    if rules.dims and list(data.dims) not in rules.dims:
        out.append(
            _issue(
                "DIMENSIONS_NOT_ALLOWED",
                f"dims {list(data.dims)} not allowed",
                "dims",
                rules.dims,
                list(data.dims),
            )
        )
    bands = data.sizes.get("band", 1)
    lo, hi = rules.min_bands or 1, rules.max_bands or math.inf
    if not lo <= bands <= hi:
        expected = [rules.min_bands, rules.max_bands]
        out.append(
            _issue(
                "BAND_COUNT_NOT_ALLOWED", f"{bands} bands outside {expected}", "band_count", expected, bands
            )
        )
    return out


def check_size(data: xr.DataArray, rules: RuleSet) -> list[Issue]:
    """Pixel-bomb guard from a rule set (stricter than the global limit applied when opening)."""
    if rules.max_pixels and data.size > rules.max_pixels:
        return [
            _issue(
                "DIMENSIONS_TOO_LARGE",
                f"{data.size} elements > {rules.max_pixels}",
                "shape",
                rules.max_pixels,
                list(data.shape),
            )
        ]
    return []


def check_dtype(data: xr.DataArray, rules: RuleSet) -> list[Issue]:
    """Data type in the allowed list."""
    if rules.dtypes and str(data.dtype) not in rules.dtypes:
        return [
            _issue(
                "DTYPE_NOT_ALLOWED",
                f"dtype {data.dtype} is not allowed",
                "dtype",
                rules.dtypes,
                str(data.dtype),
            )
        ]
    return []


def check_crs(data: xr.DataArray, rules: RuleSet) -> list[Issue]:
    """CRS presence and allow-list (compared as AUTHORITY:CODE or equivalent CRS)."""
    crs = data.attrs.get("crs")
    if crs is None:
        if rules.crs_required or rules.allowed_crs:
            return [
                _issue("CRS_MISSING", "the dataset has no CRS", "crs", rules.allowed_crs or "any CRS", None)
            ]
        return []
    if rules.allowed_crs and not any(_same_crs(crs, allowed) for allowed in rules.allowed_crs):
        return [_issue("CRS_NOT_ALLOWED", f"CRS {crs} is not allowed", "crs", rules.allowed_crs, crs)]
    return []


def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    from pyproj import CRS

    try:
        return CRS.from_user_input(a).equals(CRS.from_user_input(b))
    except Exception:
        return False


def check_resolution(data: xr.DataArray, rules: RuleSet) -> list[Issue]:
    """Pixel size (from the affine transform) within [min_resolution, max_resolution]."""
    transform = data.attrs.get("transform")
    if not (rules.min_resolution or rules.max_resolution):
        return []
    if not transform:
        return [
            _issue(
                "RESOLUTION_OUT_OF_RANGE",
                "no transform: resolution unknown",
                "resolution",
                [rules.min_resolution, rules.max_resolution],
                None,
            )
        ]
    a, b, _, d, e, _ = transform
    res = [math.hypot(a, d), math.hypot(b, e)]
    lo, hi = rules.min_resolution or 0.0, rules.max_resolution or math.inf
    if not all(lo <= r <= hi for r in res):
        return [
            _issue(
                "RESOLUTION_OUT_OF_RANGE",
                f"pixel size {res} outside [{lo}, {hi}]",
                "resolution",
                [rules.min_resolution, rules.max_resolution],
                res,
            )
        ]
    return []


def check_metadata(data: xr.DataArray, rules: RuleSet) -> list[Issue]:
    """Nodata and required metadata keys are present."""
    out: list[Issue] = []
    if rules.nodata_required and data.attrs.get("nodata") is None:
        out.append(_issue("NODATA_MISSING", "a nodata value is required", "nodata", "a value", None))
    for key in rules.required_metadata:
        if data.attrs.get(key) in (None, "", []):
            out.append(_issue("METADATA_MISSING", f"required metadata {key!r} is missing", key, "set", None))
    return out


def required_keys(rules: RuleSet) -> set[str]:
    """Attrs keys the rule set depends on: a reader warning that lost one of them becomes an error."""
    keys = set(rules.required_metadata)
    if rules.crs_required or rules.allowed_crs:
        keys.add("crs")
    if rules.min_resolution or rules.max_resolution:
        keys.add("transform")
    if rules.formats and "ome-tiff" in rules.formats and "tiff" not in rules.formats:
        keys |= {"spacing", "band_names"}  # an OME-only rule asks for what OME-XML carries
    return keys


def split_reader_warnings(data: xr.DataArray, rules: RuleSet) -> tuple[list[Issue], list[Issue]]:
    """The reader's coded warnings (``attrs["warnings"]``) as (errors the rules require, warnings)."""
    needed = required_keys(rules)
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for item in data.attrs.get("warnings") or []:
        lost = list(item.get("lost") or [])
        issue = {
            "code": item["code"],
            "message": item.get("message", ""),
            "field": item.get("field"),
            "lost": lost,
        }
        if needed.intersection(lost):
            required = sorted(needed.intersection(lost))
            errors.append(
                {**issue, "message": f"{issue['message']} (the rule set requires {', '.join(required)})"}
            )
        else:
            warnings.append(issue)
    return errors, warnings


SCHEMA_CHECKS: tuple[Callable[[xr.DataArray, RuleSet], list[Issue]], ...] = (
    check_format,
    check_dims,
    check_size,
    check_dtype,
    check_crs,
    check_resolution,
    check_metadata,
)


def check_schema(data: xr.DataArray, rules: RuleSet) -> list[Issue]:
    """Run every schema rule, then make errors of reader warnings that lost what a rule needs."""
    issues = [issue for check in SCHEMA_CHECKS for issue in check(data, rules)]
    seen = {(issue["code"], issue["field"]) for issue in issues}
    promoted = split_reader_warnings(data, rules)[0]
    return issues + [issue for issue in promoted if (issue["code"], issue["field"]) not in seen]
