"""The jupyter-server-proxy entry (``jupyter_serverproxy_servers``) of the Panel app."""

from __future__ import annotations

from typing import Any


def viewer() -> dict[str, Any]:
    """Run ``imagelib viewer`` on a free port and proxy it at ``{base_url}imagelib-viewer/``.

    The app sees its public prefix and the origins to accept in the environment: Bokeh needs both to
    build its resource and websocket URLs behind a proxy (local JupyterLab and JupyterHub alike)."""
    return {
        "command": ["imagelib", "viewer", "--port", "{port}"],
        "environment": {
            "IMAGELIB_VIEWER_PREFIX": "{base_url}imagelib-viewer",
            "IMAGELIB_VIEWER_ALLOW_ORIGIN": "*",
        },
        "absolute_url": True,
        "timeout": 60,
        "new_browser_tab": True,
        "launcher_entry": {"enabled": True, "title": "imagelib viewer"},
    }
