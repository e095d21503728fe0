"""``imagelib viewer``: the Panel app and its tile routes on one loopback Bokeh/tornado server, honouring
``$IMAGELIB_VIEWER_PREFIX`` (behind jupyter-server-proxy or a hub) and ``$IMAGELIB_VIEWER_ALLOW_ORIGIN``."""

from __future__ import annotations

import sys

from imagelib.auth.loopback import is_loopback
from imagelib.errors import UsageError
from imagelib.viewer.app import build, env_prefix
from imagelib.viewer.tiles import allow_origin, routes


def url(host: str, port: int, prefix: str | None = None) -> str:
    """The app's URL on this machine."""
    return f"http://{host}:{port}{env_prefix() if prefix is None else prefix}/"


def serve(port: int = 5006, host: str = "127.0.0.1", show: bool = False, query: str = "") -> None:
    """Serve until interrupted; the URL (with ``query``, a view to open) goes to stdout."""
    import panel as pn

    if not is_loopback(host):
        raise UsageError(
            f"refusing to serve the viewer on {host}: it has no login of its own (bind 127.0.0.1; behind "
            "JupyterHub, jupyter-server-proxy serves it under the user's server)",
            field="host",
        )
    origin = allow_origin()
    origins = ["*"] if origin == "*" else [f"{host}:{port}", f"localhost:{port}"]
    if origin and origin != "*":
        origins.append(origin.split("://", 1)[-1])
    prefix = env_prefix()
    # OpenSeadragon in the page's head downloads alongside Bokeh's bundles, instead of the map's component
    # fetching it only once Bokeh has rendered it (one round trip and a parse off the first tile's path)
    pn.config.js_files = {
        **pn.config.js_files,
        "openseadragon": f"{prefix}/viewer-static/openseadragon.min.js",
    }
    server = pn.serve(
        build,
        port=port,
        address=host,
        prefix=prefix.lstrip("/"),
        extra_patterns=routes(),
        websocket_origin=origins,
        show=False,
        start=False,
        verbose=False,  # stdout carries only our URL line
        title="imagelib viewer",
    )
    sys.stdout.write(url(host, port) + query + "\n")
    sys.stdout.flush()
    if show:
        import webbrowser

        webbrowser.open(url(host, port) + query)
    server.start()
    server.io_loop.start()
