"""One place that turns exceptions into HTTP answers, driven by :data:`imagelib.errors.TABLE`.

Every error body is ``{"error": {"code", "message", "details"}}`` — imagelib's coded errors, the
framework's own 404/405/422 and anything unexpected (``INTERNAL``, 500) alike.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagelib.errors import ImagelibError, error, error_body, from_exception

#: framework statuses (Starlette's own HTTPExceptions) → table codes
FRAMEWORK_CODES = {
    400: "USAGE",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "ROUTE_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    422: "REQUEST_INVALID",
}


class ErrorDetail(BaseModel):
    """The ``error`` member of every error body."""

    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code","message","details"}}``."""

    error: ErrorDetail


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    """The HTTP answer of any exception: status from the table, coded body."""
    coded = from_exception(exc)
    headers = dict(headers or {})
    if coded.code == "UNAUTHENTICATED":
        headers.setdefault("WWW-Authenticate", 'Bearer realm="imagelib"')
    return JSONResponse(error_body(coded), status_code=coded.spec.http, headers=headers)


async def _coded(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, getattr(exc, "headers", None))


async def _framework(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = FRAMEWORK_CODES.get(exc.status_code, "INTERNAL" if exc.status_code >= 500 else "USAGE")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if code == "ROUTE_NOT_FOUND":
        message = f"no endpoint at {request.url.path}"
    elif code == "METHOD_NOT_ALLOWED":
        message = f"{request.method} is not allowed on {request.url.path}"
    coded = error(code, message)
    response = error_response(coded, dict(exc.headers or {}))
    response.status_code = exc.status_code if exc.status_code in FRAMEWORK_CODES else coded.spec.http
    return response


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"loc": [str(part) for part in e.get("loc", ())], "type": e.get("type"), "msg": e.get("msg")}
        for e in exc.errors()
    ]
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    message = f"{'.'.join(first['loc'])}: {first['msg']}" if first["loc"] else str(first["msg"])
    name = first["loc"][-1] if first["loc"] else None
    if name in ("namespace", "dataset") and first.get("type") == "string_pattern_mismatch":
        # the names' own code, whether the name came in a path, a query or a form
        return error_response(error("DATASET_NAME_INVALID", message, field=name))
    return error_response(error("REQUEST_INVALID", message, field=".".join(first["loc"]), errors=problems))


def install(app: FastAPI) -> None:
    """Register the handlers on ``app`` (anything unhandled becomes INTERNAL in the middleware)."""
    app.add_exception_handler(ImagelibError, _coded)
    app.add_exception_handler(StarletteHTTPException, _framework)
    app.add_exception_handler(RequestValidationError, _invalid)


#: OpenAPI ``responses=`` for a route that can fail with these statuses
def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Document error answers (all share :class:`ErrorBody`)."""
    return {status: {"model": ErrorBody, "description": "coded error"} for status in statuses}
