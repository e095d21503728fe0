"""``POST /v1/uploads``: a multipart upload streamed to the spool while its sha256 is computed, never held
whole in memory, then handed to the queue as an ingest job (``202 {"job": id}``).

The spool (``$IMAGELIB_HOME/uploads`` unless ``IMAGELIB_UPLOAD_DIR`` says otherwise) is shared with the
tus endpoint; each upload owns one folder, removed when the upload is refused and expired by ``imagelib gc``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from python_multipart.multipart import MultipartParser, parse_options_header

from imagelib.api.catalog import Accepted
from imagelib.api.deps import Audited, Service, audited, service
from imagelib.api.errors import responses
from imagelib.api.spool import spool_dir
from imagelib.catalog import check_name
from imagelib.config import decimal
from imagelib.errors import error

BATCH = 1024 * 1024  # bytes handed to the parser thread at a time (hashing releases the GIL)
MAX_FIELD = 1024  # text fields are names and digests: anything longer is not one of ours
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
FORM_SCHEMA = {
    "type": "object",
    "required": ["file", "namespace", "dataset"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "namespace": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
        "dataset": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
        "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
    },
}


def spool_root(svc: Service) -> Path:
    """The app's spool folder (created on first use)."""
    root = spool_dir(svc.lib.settings.home, svc.settings)
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_upload(svc: Service) -> tuple[str, Path]:
    """A fresh upload id and its own folder."""
    upload_id = uuid.uuid4().hex
    folder = spool_root(svc) / upload_id
    folder.mkdir()
    return upload_id, folder


def safe_filename(name: str | None) -> str:
    """The client's file name reduced to a harmless basename (it only ends up in the stored source key)."""
    base = SAFE_NAME.sub("_", Path((name or "").replace("\\", "/")).name).lstrip(".")
    return base[:128] or "upload"


def check_sha256(value: str | None) -> str | None:
    """A declared digest: 64 hex digits (lower-cased) or absent."""
    if value is None or value == "":
        return None
    if not SHA256.match(value):
        raise error("REQUEST_INVALID", "sha256 must be 64 hex digits", field="sha256", found=value[:80])
    return value.lower()


def submit_ingest(
    svc: Service,
    audit: Audited,
    path: Path,
    namespace: str,
    dataset: str,
    sha256: str | None,
    via: str,
    *,
    keep: bool = False,
) -> str:
    """Queue the ingest of a finished upload; unless ``keep``, its folder goes if the queue refuses it."""
    payload = {"source": str(path), "namespace": namespace, "dataset": dataset, "sha256": sha256}
    if not keep:  # the worker removes the spooled file once the job is final (stored or refused)
        payload["cleanup"] = str(path)
    try:
        job = svc.submit("ingest", payload)
    except Exception:
        if not keep:
            shutil.rmtree(path.parent, ignore_errors=True)
        audit.record("upload", namespace, dataset, outcome="queue_refused", via=via)
        raise
    audit.record("upload", namespace, dataset, job=job, via=via, bytes=path.stat().st_size)
    return job


class FormSink:
    """python-multipart callbacks: the ``file`` part goes to disk through sha256, text fields to memory."""

    def __init__(self, folder: Path, limit: int, on_field: Any) -> None:
        self.folder, self.limit, self.on_field = folder, limit, on_field
        self.fields: dict[str, str] = {}
        self.path: Path | None = None
        self.digest = hashlib.sha256()
        self.size = 0
        self.ended = False
        self._file: BinaryIO | None = None
        self._headers: dict[bytes, bytes] = {}
        self._header = b""
        self._value = b""
        self._name: str | None = None
        self._text = bytearray()

    def callbacks(self) -> dict[str, Any]:
        """The parser's callback table."""
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: setattr(self, "_header", self._header + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_value", self._value + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": lambda: setattr(self, "ended", True),
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._text = {}, None, bytearray()

    def _header_end(self) -> None:
        self._headers[self._header.strip().lower()] = self._value.strip()
        self._header = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._name = name
        if name == "file":
            if self.path is not None:
                raise error("REQUEST_INVALID", "the form holds more than one 'file' part", field="file")
            filename = options.get(b"filename", b"").decode("utf-8", "replace")
            self.path = self.folder / safe_filename(filename)
            self._file = self.path.open("wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name == "file" and self._file is not None:
            chunk = data[start:end]
            self.size += len(chunk)
            if self.size > self.limit:
                raise error("PAYLOAD_TOO_LARGE", f"the upload exceeds {self.limit} bytes", field="file")
            self.digest.update(chunk)
            self._file.write(chunk)
        elif self._name is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD:
                raise error("REQUEST_INVALID", f"form field {self._name!r} is too long", field=self._name)

    def _part_end(self) -> None:
        if self._name == "file" and self._file is not None:
            self._file.close()
            self._file = None
        elif self._name:
            value = self._text.decode("utf-8", "replace")
            self.fields[self._name] = value
            self.on_field(self._name, value)

    def close(self) -> None:
        """Close the file if a part was cut off."""
        if self._file is not None:
            self._file.close()
            self._file = None


def router(prefix: str = "/v1") -> APIRouter:
    """The multipart upload route."""
    r = APIRouter(prefix=prefix, tags=["uploads"])

    @r.post(
        "/uploads",
        status_code=202,
        response_model=Accepted,
        responses=responses(400, 401, 403, 413, 422, 503),
        openapi_extra={
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": FORM_SCHEMA}}}
        },
    )
    async def upload(
        request: Request, svc: Service = Depends(service), audit: Audited = Depends(audited)
    ) -> JSONResponse:
        """Stream ``file`` to the spool (sha256 on the way), check ``namespace``/``dataset``/``sha256``,
        queue the ingest: ``202 {"job": id}``."""
        if not any(op in ("write", "admin") for _, op in audit.who.grants):  # refuse before any byte streams
            audit.record("upload", None, None, outcome="forbidden")
            raise error("FORBIDDEN", f"{audit.who.username!r} may write in no namespace", field="namespace")
        limit = svc.settings.max_upload_bytes
        length = request.headers.get("content-length")
        if length and decimal(length) and int(length) > limit + 64 * 1024:
            raise error("PAYLOAD_TOO_LARGE", f"the upload exceeds {limit} bytes", field="file")
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise error("REQUEST_INVALID", "expected multipart/form-data with a boundary", field="body")

        def on_field(name: str, value: str) -> None:
            # Refuse as soon as the names arrive, before the file streams in when the client sends them first.
            if name in ("namespace", "dataset"):
                check_name(name, value)
            if name == "namespace":
                audit.allow(value, "write", "upload", value)

        _, folder = new_upload(svc)
        sink = FormSink(folder, limit, on_field)
        parser = MultipartParser(boundary, sink.callbacks())
        try:
            buffer = bytearray()
            async for chunk in request.stream():
                buffer += chunk
                if len(buffer) >= BATCH:
                    await anyio.to_thread.run_sync(parser.write, bytes(buffer))
                    buffer.clear()
            await anyio.to_thread.run_sync(parser.write, bytes(buffer))
            parser.finalize()
            sink.close()
            if not sink.ended:
                raise error("REQUEST_INVALID", "the multipart body is truncated", field="body")
            namespace, dataset, path = _required(sink)
            declared = check_sha256(sink.fields.get("sha256"))
            digest = sink.digest.hexdigest()
            if declared and declared != digest:
                raise error(
                    "CHECKSUM_MISMATCH",
                    "the uploaded bytes' sha256 differs from the declared one",
                    field="sha256",
                    expected=declared,
                    found=digest,
                )
            job = submit_ingest(svc, audit, path, namespace, dataset, digest, "multipart")
        except BaseException:
            sink.close()
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return JSONResponse({"job": job}, status_code=202, headers={"Location": f"/v1/jobs/{job}"})

    return r


def _required(sink: FormSink) -> tuple[str, str, Path]:
    """namespace, dataset and the file path, or REQUEST_INVALID naming what is missing."""
    missing = [n for n in ("namespace", "dataset") if n not in sink.fields] + (
        ["file"] if not sink.path else []
    )
    if missing:
        raise error("REQUEST_INVALID", f"missing form field(s): {', '.join(missing)}", field=missing[0])
    assert sink.path is not None
    return sink.fields["namespace"], sink.fields["dataset"], sink.path
