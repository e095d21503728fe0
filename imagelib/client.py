"""The HTTP client of ``imagelib serve``: uploads, jobs, versions, lineage, search/STAC, derive, tiles.

The bearer token is asked for before every request (an explicit string, a callable, or by default
:func:`imagelib.auth.current_token`, which inside a hub kernel fetches the user's current token from the
hub), so a kernel left open for hours keeps working after the first token expired. After a 401 the token
is fetched afresh and the request retried once. Every error answer of the API comes back as the coded
:mod:`imagelib.errors` exception its ``{"error": {"code","message","details"}}`` body names.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

from imagelib.errors import TABLE, ImagelibError, ValidationFailed, error

#: where the API is when neither ``base_url`` nor ``$IMAGELIB_API_URL`` says
DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "IMAGELIB_API_URL"
#: statuses → the code used when an answer carries no (known) coded body (a proxy's 502 page, say)
STATUS_CODES = {
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "ROUTE_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    422: "REQUEST_INVALID",
    502: "API_UNAVAILABLE",
    503: "API_UNAVAILABLE",
    504: "API_UNAVAILABLE",
}
TERMINAL = ("succeeded", "failed")

Token = str | Callable[[], str | None] | None


class Client:
    """A connection to one imagelib API (``base_url``, default ``$IMAGELIB_API_URL`` or loopback :8000).

    ``token``: a string (sent as is), a callable returning the current token (asked before every
    request), or None: :func:`imagelib.auth.current_token` (the hub's current token inside a hub kernel,
    else ``$IMAGELIB_TOKEN``, else no token: enough for an API without an issuer on loopback).
    """

    def __init__(self, base_url: str | None = None, token: Token = None, *, timeout: float = 60.0) -> None:
        self.base_url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self._token = token
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    # -- plumbing -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    def token(self, fresh: bool = False) -> str | None:
        """The token to send now; ``fresh`` drops the default provider's cache first (after a 401)."""
        if isinstance(self._token, str):
            return self._token
        if callable(self._token):
            return self._token()
        # imported here: the auth package pulls in JWT verification, which most clients never need
        from imagelib.auth import current_token, forget_token

        if fresh:
            forget_token()
        return current_token()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API request (path under the base URL) with the current token; coded error unless 2xx/304.

        On a 401 the token is fetched afresh and the request sent once more (not for a fixed string token:
        the same string would be refused again)."""
        response = self._send(method, path, self.token(), **kwargs)
        if response.status_code == 401 and not isinstance(self._token, str):
            response.close()
            response = self._send(method, path, self.token(fresh=True), **kwargs)
        if response.status_code >= 400:
            raise coded_error(response)
        return response

    def _send(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise error(
                "API_UNAVAILABLE", f"the imagelib API at {self.base_url} did not answer in time", field="url"
            ) from None
        except httpx.TransportError as exc:
            raise error(
                "API_UNAVAILABLE",
                f"cannot reach the imagelib API at {self.base_url} ({type(exc).__name__}); check ${URL_ENV}",
                field="url",
            ) from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -- health ---------------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Liveness: ``{"status": "ok", ...}``."""
        return self._json("GET", "/v1/health")

    def ready(self) -> dict[str, Any]:
        """Readiness of each component (``db``, ``queue``, ``store``, ``gpu``), also when not ready."""
        try:
            return self._json("GET", "/v1/health/ready")
        except ImagelibError as exc:
            if exc.details.get("http_status") == 503 and isinstance(exc.details.get("body"), dict):
                return exc.details["body"]
            raise

    # -- uploads and jobs -----------------------------------------------------------------------------------
    def upload(
        self,
        path: str | Path,
        namespace: str,
        dataset: str,
        *,
        sha256: str | None = None,
        progress: bool = True,
    ) -> str:
        """Stream a file to ``POST /v1/uploads`` (progress bar on stderr); the ingest job's ID."""
        path = Path(path)
        if not path.is_file():
            raise error("FILE_NOT_FOUND", f"{path} does not exist or is not a file", field="path")
        fields = {"namespace": namespace, "dataset": dataset, **({"sha256": sha256} if sha256 else {})}
        with path.open("rb") as raw, _progress(path, progress) as bar:
            # the form fields go first: the API refuses a forbidden namespace before the file streams
            files = {"file": (path.name, _Counting(raw, bar), "application/octet-stream")}
            answer = self._json("POST", "/v1/uploads", data=fields, files=files)
        return str(answer["job"])

    def job(self, job_id: str) -> dict[str, Any]:
        """A job: ``{"job","kind","state","progress","version","report","error"}``."""
        return self._json("GET", f"/v1/jobs/{job_id}")

    def wait(
        self, job_id: str, *, timeout: float = 600.0, poll: float = 0.5, check: bool = True
    ) -> dict[str, Any]:
        """Poll a job until it succeeded or failed; with ``check`` a failed job raises its coded error."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.job(job_id)
            if state["state"] in TERMINAL:
                break
            if time.monotonic() >= deadline:
                raise error(
                    "JOB_WAIT_TIMEOUT",
                    f"job {job_id} is still {state['state']} after {timeout:g} s",
                    field="job",
                    found=state["state"],
                )
            time.sleep(poll)
        if check and state["state"] == "failed":
            raise job_error(state)
        return state

    def ingest(self, path: str | Path, namespace: str, dataset: str, **kwargs: Any) -> dict[str, Any]:
        """Upload and wait: the finished job (its ``version`` is the new version's ID)."""
        return self.wait(self.upload(path, namespace, dataset, **kwargs))

    def derive(self, version: str, chain: Sequence[dict[str, Any]]) -> str:
        """Queue ``chain`` applied to ``version`` (``POST /v1/versions/{id}/derive``); the job's ID."""
        return str(self._json("POST", f"/v1/versions/{version}/derive", json={"chain": list(chain)})["job"])

    # -- catalog --------------------------------------------------------------------------------------------
    def datasets(self) -> list[dict[str, Any]]:
        """Datasets of the namespaces the caller may read."""
        return self._json("GET", "/v1/datasets")

    def versions(self, namespace: str, dataset: str) -> list[dict[str, Any]]:
        """Versions of one dataset, oldest first."""
        return self._json("GET", f"/v1/datasets/{namespace}/{dataset}/versions")

    def version(self, version: str) -> dict[str, Any]:
        """One version (shape, dtype, CRS, bounds, checksum, datasets)."""
        return self._json("GET", f"/v1/versions/{version}")

    def lineage(self, version: str) -> dict[str, Any]:
        """Ancestors and descendants of a version with the operation of each edge."""
        return self._json("GET", f"/v1/versions/{version}/lineage")

    def search(
        self,
        bbox: Sequence[float] | None = None,
        datetime: str | None = None,
        *,
        namespace: str | None = None,
        dtype: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Versions intersecting ``bbox`` (west, south, east, north in EPSG:4326) and a time range."""
        params = {
            "bbox": ",".join(str(v) for v in bbox) if bbox is not None else None,
            "datetime": datetime,
            "namespace": namespace,
            "dtype": dtype,
            "limit": limit,
        }
        return self._json("GET", "/v1/search", params={k: v for k, v in params.items() if v is not None})

    def stac_search(
        self,
        bbox: Sequence[float] | None = None,
        datetime: str | None = None,
        *,
        collections: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        max_items: int | None = None,
        page_size: int = 100,
    ) -> list[dict[str, Any]]:
        """STAC items (``POST /v1/stac/search``), following ``next`` pages up to ``max_items``."""
        body: dict[str, Any] = {"limit": page_size}
        wanted = {"bbox": bbox, "datetime": datetime, "collections": collections, "ids": ids}
        for key, value in wanted.items():
            if value is not None:
                body[key] = value if isinstance(value, str) else list(value)
        items: list[dict[str, Any]] = []
        while True:
            page = self._json("POST", "/v1/stac/search", json=body)
            items += page.get("features", [])
            following = next((link for link in page.get("links", []) if link.get("rel") == "next"), None)
            if following is None or (max_items is not None and len(items) >= max_items):
                return items[:max_items] if max_items is not None else items
            # the link's href names the server's own view of its URL (wrong behind a proxy): keep ours
            body = following.get("body") or {**body, "token": httpx.URL(following["href"]).params["token"]}

    # -- tiles ----------------------------------------------------------------------------------------------
    def dzi(self, version: str, *, chain: Sequence[dict[str, Any]] | None = None, fmt: str = "jpg") -> str:
        """The Deep Zoom descriptor (XML) of a version."""
        return self.request("GET", f"/v1/tiles/{version}.dzi", params=_tile_params(chain, format=fmt)).text

    def tile(
        self,
        version: str,
        level: int,
        col: int,
        row: int,
        *,
        fmt: str = "jpg",
        chain: Sequence[dict[str, Any]] | None = None,
    ) -> bytes:
        """One Deep Zoom tile's encoded bytes."""
        path = f"/v1/tiles/{version}_files/{level}/{col}_{row}.{fmt}"
        return self.request("GET", path, params=_tile_params(chain)).content

    def xyz_tile(
        self,
        version: str,
        z: int,
        x: int,
        y: int,
        *,
        fmt: str = "png",
        chain: Sequence[dict[str, Any]] | None = None,
    ) -> bytes:
        """One WebMercatorQuad tile's encoded bytes (georeferenced versions)."""
        path = f"/v1/tiles/{version}/{z}/{x}/{y}.{fmt}"
        return self.request("GET", path, params=_tile_params(chain)).content


def _tile_params(chain: Sequence[dict[str, Any]] | None, **extra: str) -> dict[str, str]:
    params = dict(extra)
    if chain:
        params["chain"] = json.dumps(list(chain), separators=(",", ":"))
    return params


def coded_error(response: httpx.Response) -> ImagelibError:
    """The coded exception of an error answer: the body's code, else one chosen by the HTTP status."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    item = body.get("error") if isinstance(body, dict) else None
    fallback = STATUS_CODES.get(status, "INTERNAL" if status >= 500 else "USAGE")
    if not isinstance(item, dict) or not isinstance(item.get("code"), str):
        text = response.text.strip().replace("\n", " ")[:200]
        details = {"http_status": status, **({"body": body} if body is not None else {})}
        return error(fallback, f"the API answered {status} at {response.request.url.path}: {text}", **details)
    code = item["code"]
    message = str(item.get("message") or code)
    details = dict(item.get("details") or {})
    details["http_status"] = status
    if response.headers.get("x-request-id"):
        details["request_id"] = response.headers["x-request-id"]
    report = details.pop("report", None)
    if isinstance(report, dict) and report.get("errors"):
        exc: ImagelibError = ValidationFailed(report)
        exc.details.update(details)
        return exc
    if code in TABLE:
        return error(code, message, **details)
    # a code this client does not know (a newer server): keep it, raise the status's class
    return TABLE[fallback].cls(message, code=code, **details)


def job_error(state: dict[str, Any]) -> ImagelibError:
    """The coded exception of a failed job (its validation report, else its error record)."""
    report = state.get("report")
    if isinstance(report, dict) and report.get("errors"):
        return ValidationFailed(report)
    record = dict(state.get("error") or {})
    code = record.pop("code", "INTERNAL")
    message = str(record.pop("message", f"job {state.get('job')} failed"))
    record["job"] = state.get("job")
    return error(code if code in TABLE else "INTERNAL", message, **record)


class _Counting:
    """A binary file that reports each chunk read to a progress bar (rewound on a retry)."""

    def __init__(self, raw: IO[bytes], bar: Any) -> None:
        self.raw, self.bar = raw, bar

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.bar.update(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        if offset == 0 and whence == 0:
            self.bar.reset()
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def fileno(self) -> int:
        # httpx sizes the body from the file (a Content-Length instead of a chunked upload)
        return self.raw.fileno()


@contextmanager
def _progress(path: Path, enabled: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    size = path.stat().st_size
    with tqdm(
        total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name, disable=not enabled
    ) as bar:
        yield bar
