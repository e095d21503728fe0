"""One error hierarchy and one error table for imagelib.

Every error carries a stable ``code``. :data:`TABLE` is the single source that says, for each code, which
exception class it raises as, its HTTP status, its CLI exit code and its one-line meaning; the HTTP API,
the CLI, the job records and README's error table all read it. Codes are part of the public contract
(CLI ``--json`` reports, HTTP error bodies): never rename one.

Exception classes also subclass the matching built-in (``LookupError``, ``ValueError``, ``OSError``,
``PermissionError``, ...) so ``except ValueError`` works for callers who do not know imagelib. Building
any imagelib exception with ``code=`` yields the class the table names for that code, so
``InputError("...", code="FILE_NOT_FOUND")`` is also a ``FileNotFoundError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: CLI exit codes (DESIGN.md): 0 ok/valid, 1 invalid input or failed, 2 usage error.
EXIT_FAILED = 1
EXIT_USAGE = 2


class ImagelibError(Exception):
    """Base class: a coded, JSON-serialisable error (code ``INTERNAL`` unless a subclass says otherwise)."""

    code = "INTERNAL"

    def __new__(cls, *args: Any, code: str | None = None, **kwargs: Any) -> ImagelibError:
        # The code decides the class: a caller asking for a broader class gets the table's subclass.
        spec = TABLE.get(code) if code else None
        target = spec.cls if spec is not None and issubclass(spec.cls, cls) else cls
        return _builtin_new(target, *args)

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

    def __str__(self) -> str:
        return self.message

    @property
    def spec(self) -> ErrorSpec:
        """This error's row of :data:`TABLE` (``INTERNAL``'s for an unknown code)."""
        return spec_for(self.code)

    def to_dict(self) -> dict[str, Any]:
        """The error as the report/HTTP item ``{"code","message","field","expected","found",...}``."""
        out: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.expected is not None:
            out["expected"] = self.expected
        if self.found is not None:
            out["found"] = self.found
        out.update(self.details)
        return out


def _builtin_new(cls: type[ImagelibError], *args: Any) -> Any:
    """Allocate through the built-in base's ``__new__`` (OSError subclasses insist on their own)."""
    builtin = [b for b in cls.__mro__ if b.__module__ == "builtins"]
    base = next((b for b in builtin if issubclass(b, OSError)), builtin[0])
    return base.__new__(cls, *args)


class InputError(ImagelibError, ValueError):
    """The input file is unreadable, unsafe, of an unknown format or breaks a validation rule."""

    code = "FORMAT_CORRUPT"


class SourceNotFound(InputError, FileNotFoundError):
    """The input path does not exist."""

    code = "FILE_NOT_FOUND"


class ValidationFailed(InputError):
    """Validation produced errors; ``report`` holds the whole report, the first error gives the code."""

    code = "VALIDATION_FAILED"

    def __new__(cls, report: dict[str, Any]) -> ValidationFailed:
        return _builtin_new(cls, report)

    def __init__(self, report: dict[str, Any]) -> None:
        first = report["errors"][0] if report.get("errors") else {"code": self.code, "message": "invalid"}
        super().__init__(first["message"], code=first["code"], field=first.get("field"))
        self.report = report


class UsageError(ImagelibError, ValueError):
    """Bad arguments from a caller (a wrong name, a malformed ID, an unknown option value)."""

    code = "USAGE"


class ChainError(UsageError):
    """A filter chain (or one of its ops) is invalid."""

    code = "CHAIN_INVALID"


class NotFound(ImagelibError, LookupError):
    """A version, job, tile or other resource that does not exist."""

    code = "VERSION_NOT_FOUND"


class StorageError(ImagelibError, OSError):
    """The object store refused or failed a read or write."""

    code = "STORAGE_ERROR"


class CatalogError(ImagelibError, RuntimeError):
    """The catalog failed (``CATALOG_UNAVAILABLE`` when it cannot be reached at all)."""

    code = "CATALOG_ERROR"


class Unavailable(ImagelibError, RuntimeError):
    """A component (GPU backend, queue) is not available right now."""

    code = "BACKEND_UNAVAILABLE"


class AuthError(ImagelibError, PermissionError):
    """The caller is not authenticated (401) or not allowed (403)."""

    code = "UNAUTHENTICATED"


@dataclass(frozen=True)
class ErrorSpec:
    """One row of the error table."""

    code: str
    cls: type[ImagelibError]
    http: int
    exit: int
    meaning: str


def _rows(cls: type[ImagelibError], http: int, exit: int, **meanings: str) -> list[ErrorSpec]:
    return [ErrorSpec(code, cls, http, exit, meaning) for code, meaning in meanings.items()]


_SPECS: list[ErrorSpec] = [
    *_rows(
        SourceNotFound, 404, EXIT_FAILED, FILE_NOT_FOUND="the input path does not exist or is not readable"
    ),
    *_rows(
        InputError,
        422,
        EXIT_FAILED,
        FILE_EMPTY="the input file has zero bytes",
        FORMAT_UNRECOGNIZED="the content matches no supported raster format (magic bytes, not the suffix)",
        FORMAT_NOT_ALLOWED="the format is recognised but the rule set does not allow it",
        FORMAT_CORRUPT="the file claims a supported format but its structure cannot be parsed",
        TRUNCATED="the file ends before the data it declares (found while reading it end to end)",
        DATASET_AMBIGUOUS="the container holds several arrays and none was addressed (`file#/path`)",
        DATASET_NOT_FOUND="the addressed array does not exist in the container",
        DIMENSIONS_NOT_ALLOWED="the array's dimensions do not match the allowed layouts",
        DIMENSIONS_TOO_LARGE="declared pixel count or side length exceeds the limit (pixel bomb guard)",
        BAND_COUNT_NOT_ALLOWED="the number of bands is outside the allowed range",
        DTYPE_NOT_ALLOWED="the data type is not in the allowed list",
        CRS_MISSING="a CRS is required but the dataset has none (a warning when only the CRS is lost)",
        CRS_NOT_ALLOWED="the CRS is not in the allowed list",
        CRS_INVALID="the file names a CRS that does not exist or cannot be parsed",
        CRS_INCONSISTENT="the file's coordinates are impossible in the CRS it names",
        METADATA_INVALID="metadata the file carries cannot be parsed (e.g. broken OME-XML); pixels usable",
        SERIES_IGNORED="the TIFF holds several image series; only series 0 is read (a warning)",
        RESOLUTION_OUT_OF_RANGE="the pixel size is outside the allowed range",
        NODATA_MISSING="a nodata value is required but none is declared",
        METADATA_MISSING="a required metadata key is absent",
        VALUE_OUT_OF_RANGE="pixel values fall outside the allowed range",
        NAN_FORBIDDEN="NaN values found where the rule set forbids them",
        INF_FORBIDDEN="infinite values found where the rule set forbids them",
        CHECKSUM_MISMATCH="the file's sha256 differs from the declared one",
        EXTERNAL_REFERENCE="the file points outside itself (HDF5 external link/storage/VDS, VSI/URL path)",
        STITCH_NO_OVERLAP="no neighbouring tiles overlap: nominal positions are used (a warning)",
    ),
    *_rows(
        InputError,
        400,
        EXIT_FAILED,
        STITCH_INCOMPATIBLE_TILES="tiles to stitch differ in ndim, dtype or band count",
        STITCH_LAYOUT_MISMATCH="the stitching layout does not match the tiles (count, dims, duplicates)",
    ),
    *_rows(InputError, 422, EXIT_FAILED, VALIDATION_FAILED="validation failed (the report lists why)"),
    *_rows(
        UsageError,
        400,
        EXIT_USAGE,
        USAGE="the command or request was called with wrong arguments",
        RULES_INVALID="the rule set file cannot be parsed or has unknown keys",
        DATASET_NAME_INVALID="namespace or dataset names must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}",
        NOT_GEOREFERENCED="the operation (e.g. XYZ tiles) needs a CRS and geotransform the version lacks",
    ),
    *_rows(
        ChainError,
        400,
        EXIT_USAGE,
        CHAIN_INVALID="a filter chain is not a JSON array of op objects (or is too long)",
        OP_UNKNOWN="a filter chain names an op that does not exist",
        PARAM_INVALID="a filter op parameter is missing, unknown, of the wrong type or out of bounds",
        BAND_INDEX_INVALID="a filter op refers to a band the data does not have",
        EXPR_INVALID="a band_math expression uses a construct outside the arithmetic whitelist",
        PSF_UNRESOLVED="a deconvolution PSF refers to a version but no psf_resolver was given",
    ),
    *_rows(
        NotFound,
        404,
        EXIT_FAILED,
        VERSION_NOT_FOUND="no version with that ID exists in the catalog",
        JOB_NOT_FOUND="no job with that ID exists",
        TILE_NOT_FOUND="the requested tile (level/zoom, column, row) is outside the pyramid",
    ),
    *_rows(StorageError, 503, EXIT_FAILED, STORAGE_ERROR="the object store refused or failed a read/write"),
    *_rows(
        StorageError,
        500,
        EXIT_FAILED,
        STORAGE_VERIFY_FAILED="a staged object did not verify and was not published",
    ),
    *_rows(
        CatalogError, 500, EXIT_FAILED, CATALOG_ERROR="the metadata catalog refused or failed an operation"
    ),
    *_rows(
        CatalogError,
        503,
        EXIT_FAILED,
        CATALOG_UNAVAILABLE="the metadata catalog cannot be reached (retried briefly before giving up)",
    ),
    *_rows(
        Unavailable,
        503,
        EXIT_FAILED,
        BACKEND_UNAVAILABLE="the requested array backend (cupy) is not installed or has no CUDA device",
    ),
    *_rows(
        Unavailable,
        503,
        EXIT_FAILED,
        QUEUE_UNAVAILABLE="the job queue (RabbitMQ) cannot be reached; nothing was accepted",
    ),
    *_rows(
        Unavailable,
        503,
        EXIT_FAILED,
        IDP_UNAVAILABLE="the identity provider's discovery document or JWKS cannot be fetched",
    ),
    *_rows(
        Unavailable,
        503,
        EXIT_FAILED,
        HUB_UNAVAILABLE="JupyterHub's API cannot be reached to fetch the user's current access token",
    ),
    *_rows(
        Unavailable,
        503,
        EXIT_FAILED,
        API_UNAVAILABLE="the imagelib API cannot be reached or a proxy in front of it failed (client side)",
        JOB_WAIT_TIMEOUT="a job did not finish within the time the client was told to wait (client side)",
    ),
    *_rows(
        AuthError, 401, EXIT_FAILED, UNAUTHENTICATED="no valid bearer token (missing, expired, bad signature)"
    ),
    *_rows(
        AuthError,
        403,
        EXIT_FAILED,
        FORBIDDEN="the token's roles do not allow this operation on this namespace",
    ),
    *_rows(
        UsageError,
        413,
        EXIT_USAGE,
        PAYLOAD_TOO_LARGE="the upload (or a request parameter such as ?chain=) exceeds the configured limit",
    ),
    *_rows(
        UsageError, 422, EXIT_USAGE, REQUEST_INVALID="the request's parameters or body do not match the API"
    ),
    *_rows(NotFound, 404, EXIT_FAILED, ROUTE_NOT_FOUND="no such endpoint", UPLOAD_NOT_FOUND="no such upload"),
    *_rows(UsageError, 405, EXIT_USAGE, METHOD_NOT_ALLOWED="the endpoint does not accept this HTTP method"),
    *_rows(
        UsageError, 409, EXIT_USAGE, UPLOAD_OFFSET_MISMATCH="the tus Upload-Offset differs from the server's"
    ),
    *_rows(
        UsageError, 412, EXIT_USAGE, TUS_VERSION_UNSUPPORTED="the client's Tus-Resumable version is not 1.0.0"
    ),
    *_rows(InputError, 460, EXIT_FAILED, UPLOAD_CHECKSUM_MISMATCH="a tus chunk's Upload-Checksum differs"),
    *_rows(ImagelibError, 500, EXIT_FAILED, INTERNAL="an unexpected failure (a bug); the message says where"),
]

#: code → :class:`ErrorSpec`; the single source for classes, HTTP statuses, exit codes and meanings.
TABLE: dict[str, ErrorSpec] = {spec.code: spec for spec in _SPECS}

#: code → meaning (kept for callers of the first release).
ERROR_CODES: dict[str, str] = {code: spec.meaning for code, spec in TABLE.items()}


def spec_for(code: str) -> ErrorSpec:
    """The table row of ``code``; unknown codes are reported as ``INTERNAL``."""
    return TABLE.get(code) or TABLE["INTERNAL"]


def error(code: str, message: str, **fields: Any) -> ImagelibError:
    """An exception of the class the table names for ``code``."""
    if code not in TABLE:
        raise KeyError(f"error code {code!r} is not in imagelib.errors.TABLE")
    return TABLE[code].cls(message, code=code, **fields)


def from_exception(exc: BaseException) -> ImagelibError:
    """Any exception as a coded error: imagelib's own as they are, anything else as ``INTERNAL``."""
    if isinstance(exc, ImagelibError):
        return exc
    return ImagelibError(f"{type(exc).__name__}: {exc}", code="INTERNAL")


def error_body(exc: ImagelibError) -> dict[str, Any]:
    """The HTTP body of a coded error: ``{"error": {"code","message","details"}}`` (details: field, expected,
    found, the validation report, …; strict JSON)."""
    from imagelib.hashing import jsonable

    item = exc.to_dict()
    details = {k: v for k, v in item.items() if k not in ("code", "message") and v is not None}
    if isinstance(exc, ValidationFailed):
        details["report"] = exc.report
    return jsonable({"error": {"code": exc.code, "message": exc.message, "details": details}})


def markdown_table() -> str:
    """README's error table, generated from :data:`TABLE`."""
    lines = ["| code | HTTP | exit | meaning |", "|---|---|---|---|"]
    lines += [f"| `{s.code}` | {s.http} | {s.exit} | {s.meaning} |" for s in TABLE.values()]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m imagelib.errors: README's error table
    print(markdown_table())
