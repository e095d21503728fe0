"""Resumable uploads with the tus 1.0 protocol under ``/v1/tus/`` (core, creation, termination, checksum).

Existing tus clients work unchanged (PyPI ``tuspy``, ``tus-js-client``/Uppy). ``namespace``, ``dataset``,
``filename`` and an optional ``sha256`` travel in ``Upload-Metadata``. Each upload is one spool folder
holding ``info.json`` and the bytes; the offset is the file's size, so a PATCH cut off half-way keeps what
arrived (or, when the chunk carried an ``Upload-Checksum``, drops the unverifiable partial chunk) and the
client resumes from ``HEAD``'s ``Upload-Offset``. The finished upload becomes an ingest job exactly like a
multipart one; its id is in the ``Imagelib-Job`` header of the last PATCH and of later HEADs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Header, Request, Response
from filelock import FileLock, Timeout
from starlette.requests import ClientDisconnect

from imagelib.api.deps import Audited, Service, audited, service
from imagelib.api.errors import error_response, responses
from imagelib.api.uploads import check_sha256, new_upload, safe_filename, spool_root, submit_ingest
from imagelib.catalog import check_name
from imagelib.config import decimal
from imagelib.errors import ImagelibError, error

VERSION = "1.0.0"
EXTENSIONS = "creation,termination,checksum"
ALGORITHMS: dict[str, Callable[[], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
OFFSET_TYPE = "application/offset+octet-stream"
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
INFO = "info.json"


def tus_headers(**extra: str) -> dict[str, str]:
    """Headers every tus answer carries."""
    return {"Tus-Resumable": VERSION, "Cache-Control": "no-store", **extra}


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (value optional)."""
    out: dict[str, str] = {}
    for pair in (header or "").split(","):
        if not pair.strip():
            continue
        key, _, value = pair.strip().partition(" ")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise error(
                "REQUEST_INVALID", f"Upload-Metadata value of {key!r} is not base64", field=key
            ) from None
    return out


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>`` → (algorithm, digest)."""
    if not header:
        return None
    name, _, value = header.strip().partition(" ")
    if name not in ALGORITHMS:
        raise error(
            "REQUEST_INVALID",
            f"checksum algorithm {name!r} is not supported",
            field="Upload-Checksum",
            expected=sorted(ALGORITHMS),
        )
    try:
        return name, base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise error(
            "REQUEST_INVALID", "Upload-Checksum digest is not base64", field="Upload-Checksum"
        ) from None


class Upload:
    """One tus upload's folder: ``info.json`` + the data file (its size is the offset)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.info: dict[str, Any] = json.loads((folder / INFO).read_text())

    @classmethod
    def find(cls, svc: Service, upload_id: str) -> Upload:
        """The upload with this id, UPLOAD_NOT_FOUND otherwise (also for ids that are not ours)."""
        folder = spool_root(svc) / upload_id
        if not UPLOAD_ID.match(upload_id) or not (folder / INFO).is_file():
            raise error("UPLOAD_NOT_FOUND", f"no upload {upload_id[:64]!r}", field="upload")
        return cls(folder)

    @property
    def path(self) -> Path:
        return self.folder / self.info["filename"]

    @property
    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def save(self) -> None:
        """Write ``info.json`` atomically."""
        tmp = self.folder / f"{INFO}.tmp"
        tmp.write_text(json.dumps(self.info))
        os.replace(tmp, self.folder / INFO)

    def lock(self) -> FileLock:
        """One PATCH at a time per upload, across processes."""
        return FileLock(str(self.folder / ".lock"), timeout=0)


def _require_version(tus_resumable: str | None) -> None:
    if tus_resumable != VERSION:
        raise error(
            "TUS_VERSION_UNSUPPORTED",
            f"Tus-Resumable must be {VERSION}",
            field="Tus-Resumable",
            expected=VERSION,
            found=tus_resumable,
        )


def _opened(svc: Service, audit: Audited, upload_id: str, action: str) -> Upload:
    """An existing upload, once the caller may write into its namespace (the opening of every request on
    one upload, after the protocol version check)."""
    upload = Upload.find(svc, upload_id)
    audit.allow(upload.info["namespace"], "write", action, upload_id)
    return upload


def _answer(run: Callable[[], Any]) -> Any:
    """Coded errors as tus answers (they carry Tus-Resumable/Tus-Version too)."""

    async def wrapped() -> Response:
        try:
            return await run()
        except ImagelibError as exc:
            return error_response(exc, tus_headers(**{"Tus-Version": VERSION}))

    return wrapped


async def _receive(request: Request, upload: Upload, offset: int, checksum: tuple[str, bytes] | None) -> int:
    """Append the PATCH body at ``offset``; return the new offset (what survived a cut connection)."""
    length = upload.info["length"]
    digest = ALGORITHMS[checksum[0]]() if checksum else None
    written = 0
    with upload.path.open("r+b" if upload.path.exists() else "wb") as f:
        f.seek(offset)
        f.truncate()
        try:
            async for chunk in request.stream():
                if offset + written + len(chunk) > length:
                    f.truncate(offset)
                    raise error("PAYLOAD_TOO_LARGE", "the PATCH body runs past Upload-Length", field="body")
                await anyio.to_thread.run_sync(f.write, chunk)
                if digest is not None:
                    digest.update(chunk)
                written += len(chunk)
        except ClientDisconnect:
            if checksum:  # a partial chunk cannot be verified: the client resends it whole
                f.truncate(offset)
                return offset
            return offset + written
        if checksum and digest is not None and digest.digest() != checksum[1]:
            f.truncate(offset)
            raise error(
                "UPLOAD_CHECKSUM_MISMATCH", "the chunk does not match its Upload-Checksum", field="body"
            )
    return offset + written


def _finish(svc: Service, audit: Audited, upload: Upload) -> str:
    """Queue the ingest of a complete upload once (a later PATCH/HEAD retries if the queue refused)."""
    if not upload.info.get("job"):
        info = upload.info
        upload.info["job"] = submit_ingest(
            svc, audit, upload.path, info["namespace"], info["dataset"], info.get("sha256"), "tus", keep=True
        )
        upload.save()
    return upload.info["job"]


def router(prefix: str = "/v1") -> APIRouter:
    """The tus routes."""
    r = APIRouter(
        prefix=f"{prefix}/tus", tags=["uploads"], responses=responses(400, 401, 403, 404, 409, 412, 413)
    )

    @r.options("/", status_code=204, response_class=Response)
    def capabilities(svc: Service = Depends(service)) -> Response:
        """Server capabilities (no Tus-Resumable needed)."""
        return Response(
            status_code=204,
            headers=tus_headers(
                **{
                    "Tus-Version": VERSION,
                    "Tus-Extension": EXTENSIONS,
                    "Tus-Max-Size": str(svc.settings.max_upload_bytes),
                    "Tus-Checksum-Algorithm": ",".join(ALGORITHMS),
                }
            ),
        )

    @r.post("/", status_code=201, response_class=Response)
    async def create(
        upload_length: str | None = Header(None),
        upload_metadata: str | None = Header(None),
        upload_defer_length: str | None = Header(None),
        tus_resumable: str | None = Header(None),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> Response:
        """Create an upload (``Upload-Length`` + ``Upload-Metadata``); ``Location`` names it."""

        async def run() -> Response:
            _require_version(tus_resumable)
            if upload_defer_length is not None:
                raise error(
                    "REQUEST_INVALID", "Upload-Defer-Length is not supported", field="Upload-Defer-Length"
                )
            if not upload_length or not decimal(upload_length) or len(upload_length) > 20:
                raise error(
                    "REQUEST_INVALID", "Upload-Length must be a non-negative integer", field="Upload-Length"
                )
            length = int(upload_length)
            if length > svc.settings.max_upload_bytes:
                raise error(
                    "PAYLOAD_TOO_LARGE",
                    f"Upload-Length exceeds {svc.settings.max_upload_bytes} bytes",
                    field="Upload-Length",
                )
            meta = parse_metadata(upload_metadata)
            for name in ("namespace", "dataset"):
                if name not in meta:
                    raise error("REQUEST_INVALID", f"Upload-Metadata lacks {name!r}", field=name)
                check_name(name, meta[name])
            audit.allow(meta["namespace"], "write", "upload", meta["namespace"])
            upload_id, folder = new_upload(svc)
            info = {
                "length": length,
                "namespace": meta["namespace"],
                "dataset": meta["dataset"],
                "filename": safe_filename(meta.get("filename") or meta.get("name")),
                "sha256": check_sha256(meta.get("sha256")),
                "metadata": upload_metadata or "",
                "user": audit.who.username,
                "job": None,
            }
            if info["filename"] == INFO:
                info["filename"] = "upload"
            (folder / INFO).write_text(json.dumps(info))
            (folder / info["filename"]).touch()
            audit.record("upload.create", meta["namespace"], meta["dataset"], upload=upload_id, length=length)
            return Response(status_code=201, headers=tus_headers(Location=f"{prefix}/tus/{upload_id}"))

        return await _answer(run)()

    @r.head("/{upload_id}", response_class=Response)
    async def head(
        upload_id: str,
        tus_resumable: str | None = Header(None),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> Response:
        """The server's offset (where a client resumes)."""

        async def run() -> Response:
            _require_version(tus_resumable)
            upload = _opened(svc, audit, upload_id, "upload.head")
            headers = {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.info["length"])}
            if upload.info["metadata"]:
                headers["Upload-Metadata"] = upload.info["metadata"]
            if upload.offset == upload.info["length"]:
                headers["Imagelib-Job"] = _finish(svc, audit, upload)
            return Response(status_code=200, headers=tus_headers(**headers))

        return await _answer(run)()

    @r.patch("/{upload_id}", status_code=204, response_class=Response)
    async def patch(
        request: Request,
        upload_id: str,
        upload_offset: str | None = Header(None),
        upload_checksum: str | None = Header(None),
        content_type: str | None = Header(None),
        tus_resumable: str | None = Header(None),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> Response:
        """Append bytes at ``Upload-Offset`` (409 when it is not the server's offset)."""

        async def run() -> Response:
            _require_version(tus_resumable)
            if (content_type or "").split(";")[0].strip() != OFFSET_TYPE:
                raise error("REQUEST_INVALID", f"Content-Type must be {OFFSET_TYPE}", field="Content-Type")
            upload = _opened(svc, audit, upload_id, "upload.patch")
            checksum = parse_checksum(upload_checksum)
            try:
                with upload.lock():
                    server = upload.offset
                    if upload_offset is None or not decimal(upload_offset) or int(upload_offset) != server:
                        raise error(
                            "UPLOAD_OFFSET_MISMATCH",
                            f"Upload-Offset {upload_offset} differs from the server's {server}",
                            field="Upload-Offset",
                            expected=server,
                            found=upload_offset,
                        )
                    offset = await _receive(request, upload, server, checksum)
            except Timeout:
                raise error(
                    "UPLOAD_OFFSET_MISMATCH",
                    "another PATCH of this upload is in progress",
                    field="Upload-Offset",
                ) from None
            headers = {"Upload-Offset": str(offset)}
            if offset == upload.info["length"]:
                headers["Imagelib-Job"] = _finish(svc, audit, upload)
            return Response(status_code=204, headers=tus_headers(**headers))

        return await _answer(run)()

    @r.delete("/{upload_id}", status_code=204, response_class=Response)
    async def terminate(
        upload_id: str,
        tus_resumable: str | None = Header(None),
        svc: Service = Depends(service),
        audit: Audited = Depends(audited),
    ) -> Response:
        """Termination: drop the upload and its bytes."""

        async def run() -> Response:
            _require_version(tus_resumable)
            upload = _opened(svc, audit, upload_id, "upload.delete")
            if not upload.info.get("job"):  # queued ingests still read the file
                shutil.rmtree(upload.folder, ignore_errors=True)
            audit.record("upload.delete", upload.info["namespace"], upload_id)
            return Response(status_code=204, headers=tus_headers())

        return await _answer(run)()

    return r
