"""``imagelib serve``: the app on uvicorn, refusing a non-loopback address when no issuer is configured."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from imagelib.auth.loopback import is_loopback
from imagelib.context import current
from imagelib.errors import UsageError
from imagelib.observability import configure_logging

if TYPE_CHECKING:
    from fastapi import FastAPI


def app_from_env() -> FastAPI:
    """The app of one worker process, built from the environment (uvicorn's factory for ``--workers``)."""
    from imagelib.api.app import create_app

    configure_logging()  # a spawned worker starts with a bare logging setup
    return create_app()


def serve(host: str = "127.0.0.1", port: int = 8000, *, workers: int = 1, log_level: str = "warning") -> None:
    """Serve ``/v1`` until interrupted (uvicorn; the app writes its own JSON access log).

    ``workers`` > 1 runs that many processes on the one port: tile rendering holds the GIL for much of
    its time, so a process per core is what uses the cores, and each process accepts connections only
    while it is among the least busy (:mod:`imagelib.api.workers`). Each process has its own caches and
    its own ``/metrics`` (a scrape sees one of them); the audit chain, tus uploads and jobs live in the
    catalog and the spool, so they are shared."""
    import uvicorn

    from imagelib.api.app import create_app

    lib = current()
    if not lib.settings.oidc_issuer and not is_loopback(host):
        raise UsageError(
            f"refusing to serve on {host}: without IMAGELIB_OIDC_ISSUER every caller is the local user "
            "(bind 127.0.0.1, or configure an issuer)",
            field="host",
        )
    if workers < 1:
        raise UsageError("workers must be at least 1", field="workers", found=workers)
    from imagelib.api.settings import ApiSettings

    settings = ApiSettings.from_env()  # a malformed IMAGELIB_* limit fails here, coded, not in every process
    configure_logging()  # the process is ours: JSON lines on stderr (an embedding app configures its own)
    options = dict(host=host, port=port, log_level=log_level, access_log=False, server_header=False)
    sys.stderr.write(f"imagelib API on http://{host}:{port}/v1 (docs: /v1/docs), {workers} process(es)\n")
    if workers == 1:
        uvicorn.run(create_app(lib, settings=settings), **options)
    else:
        from imagelib.api import workers as balanced

        config = uvicorn.Config("imagelib.api.serve:app_from_env", factory=True, workers=workers, **options)
        if status := balanced.run(config, workers):
            sys.exit(status)
