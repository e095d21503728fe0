"""imagelib's Jupyter server extension: the store's tiles under ``{base_url}imagelib/tiles/…`` (DZI and
XYZ, ``?chain=`` on the fly, ETag/304, immutable caching) behind the server's own authentication, and a
jupyter-server-proxy entry that runs the Panel app (``imagelib viewer``) inside the user's server.

Enabled by ``etc/jupyter/jupyter_server_config.d/imagelib.json``, which the package install ships, so no
``jupyter server extension enable`` step is needed. Configure with traitlets, e.g. in
``jupyter_server_config.py``: ``c.ImagelibTiles.home = "/data/imagelib"``.
"""

from __future__ import annotations

from typing import Any

from traitlets import Integer, Unicode
from traitlets.config import Configurable

__all__ = ["ImagelibTiles"]


class ImagelibTiles(Configurable):
    """Settings of the tile handlers."""

    home = Unicode(
        None,
        allow_none=True,
        config=True,
        help="IMAGELIB_HOME of the library to serve; unset: the server's environment (IMAGELIB_HOME, "
        "IMAGELIB_STORE, IMAGELIB_CATALOG), read at each request.",
    )
    cache_control = Unicode(
        "private, max-age=31536000, immutable",
        config=True,
        help="Cache-Control of tiles and descriptors. Versions never change, so browsers may keep them "
        "forever; 'private' because the answers sit behind the user's login (and jupyter_server may set "
        "cookies on them), so shared caches between the browser and the hub must not store them.",
    )
    max_chain_bytes = Integer(
        8192, config=True, help="Longest ?chain= accepted (bytes, URL-decoded); longer is PAYLOAD_TOO_LARGE."
    )


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """jupyter_server's discovery hook: this module is the extension."""
    return [{"module": "imagelib_jupyter"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the tile handlers under the server's ``base_url``."""
    from imagelib_jupyter.handlers import routes

    settings = ImagelibTiles(parent=serverapp)
    lib = None
    if settings.home:
        from imagelib.context import connect

        lib = connect(settings.home)
    web_app, base_url = serverapp.web_app, serverapp.web_app.settings["base_url"]
    web_app.add_handlers(".*$", routes(base_url, lib, settings.max_chain_bytes, settings.cache_control))
    serverapp.log.info("imagelib tiles at %simagelib/tiles/", base_url)
