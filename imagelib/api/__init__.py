"""The HTTP service (a face): FastAPI app factory, routers, uploads (multipart + tus), STAC, tiles.

Core modules never import this package. ``create_app`` is light to import; the routers load on first call.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from imagelib.api.app import create_app

        return create_app
    if name == "ApiSettings":
        from imagelib.api.settings import ApiSettings

        return ApiSettings
    raise AttributeError(f"module 'imagelib.api' has no attribute {name!r}")
