"""``imagelib serve``: the app on uvicorn, refusing a non-loopback address when no issuer is configured."""

from __future__ import annotations

import sys

from imagelib.auth.loopback import is_loopback
from imagelib.context import current
from imagelib.errors import UsageError
from imagelib.observability import configure_logging


def serve(host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "warning") -> None:
    """Serve ``/v1`` until interrupted (uvicorn; the app writes its own JSON access log)."""
    import uvicorn

    from imagelib.api.app import create_app

    lib = current()
    if not lib.settings.oidc_issuer and not is_loopback(host):
        raise UsageError(
            f"refusing to serve on {host}: without IMAGELIB_OIDC_ISSUER every caller is the local user "
            "(bind 127.0.0.1, or configure an issuer)",
            field="host",
        )
    configure_logging()  # the process is ours: JSON lines on stderr (an embedding app configures its own)
    app = create_app(lib)
    sys.stderr.write(f"imagelib API on http://{host}:{port}/v1 (docs: /v1/docs)\n")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, server_header=False)
