"""One error hierarchy for imagelib; every exception carries a stable, documented ``code``.

The codes are part of the public contract (CLI ``--json`` reports, HTTP error bodies); never rename one.
"""

from __future__ import annotations

from typing import Any

#: Stable error codes and what they mean. README's error table is generated from this mapping.
ERROR_CODES: dict[str, str] = {
    "FILE_NOT_FOUND": "the input path does not exist or is not readable",
    "FILE_EMPTY": "the input file has zero bytes",
    "FORMAT_UNRECOGNIZED": "the content matches no supported raster format (magic bytes, not the suffix)",
    "FORMAT_NOT_ALLOWED": "the format is recognised but the rule set does not allow it",
    "FORMAT_CORRUPT": "the file claims a supported format but its structure cannot be parsed",
    "TRUNCATED": "the file ends before the data it declares (found while reading it end to end)",
    "DATASET_AMBIGUOUS": "the container holds several arrays and none was addressed (`file#/path`)",
    "DATASET_NOT_FOUND": "the addressed array does not exist in the container",
    "DIMENSIONS_NOT_ALLOWED": "the array's dimensions do not match the allowed layouts",
    "DIMENSIONS_TOO_LARGE": "declared pixel count or side length exceeds the limit (pixel bomb guard)",
    "BAND_COUNT_NOT_ALLOWED": "the number of bands is outside the allowed range",
    "DTYPE_NOT_ALLOWED": "the data type is not in the allowed list",
    "CRS_MISSING": "a CRS is required but the dataset has none",
    "CRS_NOT_ALLOWED": "the CRS is not in the allowed list",
    "RESOLUTION_OUT_OF_RANGE": "the pixel size is outside the allowed range",
    "NODATA_MISSING": "a nodata value is required but none is declared",
    "METADATA_MISSING": "a required metadata key is absent",
    "VALUE_OUT_OF_RANGE": "pixel values fall outside the allowed range",
    "NAN_FORBIDDEN": "NaN values found where the rule set forbids them",
    "INF_FORBIDDEN": "infinite values found where the rule set forbids them",
    "CHECKSUM_MISMATCH": "the file's sha256 differs from the declared one",
    "EXTERNAL_REFERENCE": "the file points outside itself (HDF5 external link/storage/VDS, network/VSI path)",
    "RULES_INVALID": "the rule set file cannot be parsed or has unknown keys",
    "VERSION_NOT_FOUND": "no version with that ID exists in the catalog",
    "DATASET_NAME_INVALID": "namespace or dataset names must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}",
    "STORAGE_ERROR": "the object store refused or failed a read/write",
    "STORAGE_VERIFY_FAILED": "a staged object did not verify and was not published",
    "CATALOG_ERROR": "the metadata catalog refused or failed an operation",
    "USAGE": "the command was called with wrong arguments",
    "CHAIN_INVALID": "a filter chain is not a JSON array of op objects (or is too long)",
    "OP_UNKNOWN": "a filter chain names an op that does not exist",
    "PARAM_INVALID": "a filter op parameter is missing, unknown, of the wrong type or out of bounds",
    "BAND_INDEX_INVALID": "a filter op refers to a band the data does not have",
    "EXPR_INVALID": "a band_math expression uses a construct outside the arithmetic whitelist",
    "PSF_UNRESOLVED": "a deconvolution PSF refers to a version but no psf_resolver was given",
    "BACKEND_UNAVAILABLE": "the requested array backend (cupy) is not installed or has no CUDA device",
    "JOB_NOT_FOUND": "no job with that ID exists",
    "TILE_NOT_FOUND": "the requested tile (level/zoom, column, row) is outside the pyramid",
    "NOT_GEOREFERENCED": "the operation (e.g. XYZ tiles) needs a CRS and geotransform the version lacks",
}


class ImagelibError(Exception):
    """Base class: a coded, JSON-serialisable error."""

    code = "IMAGELIB_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        expected: Any = None,
        found: Any = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.field = field
        self.expected = expected
        self.found = found
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error as the report/HTTP item ``{"code","message","field","expected","found",...}``."""
        out: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.expected is not None:
            out["expected"] = self.expected
        if self.found is not None:
            out["found"] = self.found
        out.update(self.details)
        return out


class InputError(ImagelibError):
    """The input file is unreadable, unsafe or of an unknown format."""

    code = "FORMAT_CORRUPT"


class ValidationFailed(ImagelibError):
    """Validation produced errors; ``report`` holds the whole report."""

    code = "VALIDATION_FAILED"

    def __init__(self, report: dict[str, Any]) -> None:
        first = report["errors"][0] if report.get("errors") else {"code": self.code, "message": "invalid"}
        super().__init__(first["message"], code=first["code"], field=first.get("field"))
        self.report = report


class NotFound(ImagelibError):
    """A version, dataset or object that does not exist."""

    code = "VERSION_NOT_FOUND"


class StorageError(ImagelibError):
    """The object store failed."""

    code = "STORAGE_ERROR"


class CatalogError(ImagelibError):
    """The catalog failed."""

    code = "CATALOG_ERROR"


class UsageError(ImagelibError):
    """Bad arguments from a caller."""

    code = "USAGE"
