"""Tile URLs of the Jupyter server extension as the widgets use them: where the server is (the base-URL
rule) and the Leaflet URL templates, which carry the canonical chain so each chain has its own tiles in
the browser cache.

The base-URL rule, first match wins:

1. the ``base_url`` argument (a path such as ``/user/ana/`` or a full ``http://host:port/prefix/``);
2. ``$JUPYTERHUB_SERVICE_PREFIX`` — set by JupyterHub in the single-user server and its kernels;
3. the running Jupyter server of this kernel (``jupyter_server.serverapp.list_running_servers()``: the
   one whose root folder holds the working directory, else the first listed) — its ``base_url``;
4. ``/``.

A path (no scheme/host) is resolved by the browser against the page's own origin, which is the Jupyter
server itself, so the same URLs work locally and behind the hub proxy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from imagelib.tiling.http import query_pairs
from imagelib.tiling.scale import Style


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _server_base_url() -> str | None:
    """The ``base_url`` of the Jupyter server this kernel most likely runs under, if one is running."""
    try:
        from jupyter_server.serverapp import list_running_servers

        servers = list(list_running_servers())
    except Exception:  # no runtime dir, unreadable files: no server to learn from, fall through
        return None
    if not servers:
        return None
    cwd = Path.cwd().resolve()

    def holds_cwd(info: dict[str, Any]) -> bool:
        root = info.get("root_dir") or info.get("notebook_dir")
        return bool(root) and Path(root).resolve() in (cwd, *cwd.parents)

    chosen = next((s for s in servers if holds_cwd(s)), servers[0])
    return chosen.get("base_url") or "/"


def tile_base_url(base_url: str | None = None) -> str:
    """The URL prefix under which ``imagelib/tiles/…`` is served (see the module docstring for the rule)."""
    for candidate in (base_url, os.environ.get("JUPYTERHUB_SERVICE_PREFIX"), _server_base_url()):
        if candidate:
            return _slash(candidate)
    return "/"


def query(
    chain: Any = None,
    style: Style | None = None,
    axis: str | None = None,
    index: int | None = None,
    **extra: Any,
) -> str:
    """The tile grammar's canonical query (:func:`imagelib.tiling.http.query_pairs`: chain, bands,
    rescale, colormap, axis, index) plus ``extra`` ('' when empty); braces are encoded, so the string
    never holds a ``{…}`` that Leaflet would take for a template placeholder."""
    pairs = query_pairs(chain, style, axis, index)
    pairs += [(k, str(v)) for k, v in extra.items() if v is not None]
    return "?" + urlencode(pairs, quote_via=quote, safe="") if pairs else ""


def descriptor_url(base: str, version: str, chain: Any = None, fmt: str = "png", **kw: Any) -> str:
    """The ``.dzi`` descriptor URL (``kw``: style, axis, index)."""
    return f"{base}imagelib/tiles/{version}.dzi" + query(chain, format=fmt, **kw)


def dzi_template(base: str, version: str, chain: Any = None, fmt: str = "png", **kw: Any) -> str:
    """Leaflet template of the DZI tiles (``{z}`` = DZI level, ``{x}_{y}`` = column_row; ``kw``: style,
    axis, index)."""
    return f"{base}imagelib/tiles/{version}_files/{{z}}/{{x}}_{{y}}.{fmt}" + query(chain, **kw)


def xyz_template(base: str, version: str, chain: Any = None, fmt: str = "png", **kw: Any) -> str:
    """Leaflet template of the WebMercatorQuad tiles (``kw``: style, axis, index)."""
    return f"{base}imagelib/tiles/{version}/{{z}}/{{x}}/{{y}}.{fmt}" + query(chain, **kw)


def fill(template: str, z: int, x: int, y: int) -> str:
    """A template with its placeholders filled, as Leaflet does."""
    return template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
