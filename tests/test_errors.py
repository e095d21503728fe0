"""The error table is the single source: every code the package raises or reports is in it, each row names
a class that also subclasses the matching built-in, and README's table is generated from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import imagelib
from imagelib.errors import (
    TABLE,
    AuthError,
    ChainError,
    ImagelibError,
    InputError,
    NotFound,
    SourceNotFound,
    StorageError,
    UsageError,
    ValidationFailed,
    error,
    from_exception,
    markdown_table,
)

PACKAGE = Path(imagelib.__file__).parent
README = PACKAGE.parent / "README.md"
CODE = re.compile(r"^[A-Z][A-Z0-9_]+$")


def codes_in_source() -> dict[str, list[str]]:
    """Every string given as ``code=`` (call keyword) or as a ``"code": …`` dict value in the package."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            values: list[ast.AST] = []
            if isinstance(node, ast.Call):
                values += [kw.value for kw in node.keywords if kw.arg == "code"]
            if isinstance(node, ast.Dict):
                values += [v for k, v in zip(node.keys, node.values, strict=True) if _is_code_key(k)]
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.setdefault(value.value, []).append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


def _is_code_key(key: ast.AST | None) -> bool:
    return isinstance(key, ast.Constant) and key.value == "code"


def test_every_code_used_in_the_package_is_in_the_table() -> None:
    """A code raised or reported anywhere but missing from TABLE fails here, naming where it is used."""
    used = codes_in_source()
    assert len(used) > 30  # the walk does find the codes
    missing = {code: where for code, where in used.items() if code not in TABLE}
    assert not missing, f"codes used but not in imagelib.errors.TABLE: {missing}"


def test_class_attribute_codes_are_in_the_table() -> None:
    """Default codes of the exception classes are table rows too."""
    for cls in (
        ImagelibError,
        InputError,
        SourceNotFound,
        UsageError,
        ChainError,
        NotFound,
        StorageError,
        AuthError,
    ):
        assert cls.code in TABLE, cls


@pytest.mark.parametrize("code", sorted(TABLE))
def test_each_code_builds_its_class_status_and_exit(code: str) -> None:
    """Building any imagelib error with a code yields the table's class; statuses and exits are sane."""
    spec = TABLE[code]
    exc = ImagelibError("message", code=code)
    assert type(exc) is spec.cls and exc.code == code and str(exc) == "message"
    assert type(error(code, "m")) is spec.cls
    assert 400 <= spec.http <= 599 and spec.exit in (1, 2) and spec.meaning
    assert exc.to_dict()["code"] == code


def test_builtin_bases_let_plain_python_callers_catch_them() -> None:
    """``except ValueError`` / ``LookupError`` / ``OSError`` / ``PermissionError`` work for callers."""
    expectations = {
        "FORMAT_CORRUPT": ValueError,
        "FILE_NOT_FOUND": FileNotFoundError,
        "VERSION_NOT_FOUND": LookupError,
        "TILE_NOT_FOUND": LookupError,
        "OP_UNKNOWN": ValueError,
        "USAGE": ValueError,
        "STORAGE_ERROR": OSError,
        "FORBIDDEN": PermissionError,
        "UNAUTHENTICATED": PermissionError,
    }
    for code, builtin in expectations.items():
        with pytest.raises(builtin):
            raise InputError("x", code=code) if issubclass(TABLE[code].cls, InputError) else error(code, "x")


def test_validation_failed_takes_the_first_errors_code() -> None:
    """A ValidationFailed carries its report and reports the first error's code (HTTP 422, exit 1)."""
    exc = ValidationFailed({"valid": False, "errors": [{"code": "TRUNCATED", "message": "cut"}]})
    assert exc.code == "TRUNCATED" and exc.spec.http == 422 and exc.spec.exit == 1 and exc.report["errors"]
    assert isinstance(exc, ValueError)


def test_unexpected_exceptions_become_internal() -> None:
    """from_exception never loses the coded error of imagelib's own exceptions."""
    assert from_exception(KeyError("k")).code == "INTERNAL"
    coded = NotFound("nope", code="JOB_NOT_FOUND")
    assert from_exception(coded) is coded
    with pytest.raises(KeyError):
        error("NOT_A_CODE", "x")


def test_readme_error_table_is_generated_from_the_table() -> None:
    """README's error table is ``markdown_table()`` (regenerate: ``python -m imagelib.errors``)."""
    text = README.read_text()
    start, end = "<!-- error-table:start -->", "<!-- error-table:end -->"
    assert start in text and end in text
    table = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == markdown_table()
