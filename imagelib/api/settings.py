"""Settings of the HTTP face, read from ``IMAGELIB_*`` variables with embedded defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imagelib.config import env_int


@dataclass(frozen=True)
class ApiSettings:
    """What the app needs beyond the library context (limits, CORS, upload spool)."""

    #: allowed CORS origins (``IMAGELIB_CORS_ORIGINS``, comma separated; ``*`` = any)
    cors_origins: tuple[str, ...] = ("*",)
    #: largest accepted upload in bytes (multipart and tus ``Upload-Length``)
    max_upload_bytes: int = 64 * 1024**3
    #: largest ``?chain=`` query value in bytes
    max_chain_bytes: int = 8192
    #: where uploads are spooled before the ingest job reads them (default ``$IMAGELIB_HOME/uploads``)
    upload_dir: Path | None = None
    #: abandoned tus uploads older than this are removed by ``imagelib gc``
    upload_expiry_s: int = 24 * 3600
    #: JWT clock-skew leeway in seconds
    auth_leeway: int = 30
    #: write one JSON log line per request
    access_log: bool = True
    #: the job queue name on the broker (``IMAGELIB_QUEUE_NAME``, as for ``imagelib worker``)
    queue_name: str = "imagelib.jobs"

    @classmethod
    def from_env(cls) -> ApiSettings:
        """The settings the environment describes."""
        origins = os.environ.get("IMAGELIB_CORS_ORIGINS", "*")
        spool = os.environ.get("IMAGELIB_UPLOAD_DIR")
        return cls(
            cors_origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            max_upload_bytes=env_int("IMAGELIB_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_chain_bytes=env_int("IMAGELIB_MAX_CHAIN_BYTES", cls.max_chain_bytes),
            upload_dir=Path(spool) if spool else None,
            upload_expiry_s=env_int("IMAGELIB_UPLOAD_EXPIRY_S", cls.upload_expiry_s),
            queue_name=os.environ.get("IMAGELIB_QUEUE_NAME", cls.queue_name),
        )
