"""Notebook widgets (ipywidgets/ipyleaflet). Faces layer: may use the library verbs, imported lazily.

Light to import: importing it registers the ``.imagelib`` DataArray accessor (``imagelib.widgets.repr``)
without loading ipywidgets; the widget classes load their modules on first use.
"""

from __future__ import annotations

from typing import Any

# registers the ``.imagelib`` DataArray accessor (summary display, ``view()``); light, no ipywidgets.
# Registered here, in the faces layer, because core modules (imagelib.library) may not import a face.
from imagelib.widgets import repr as _repr  # noqa: F401

_EXPORTS = {
    "ChainModel": "imagelib.widgets.chain_model",
    "ParamSpec": "imagelib.widgets.chain_model",
    "param_specs": "imagelib.widgets.chain_model",
    "FilterChainBuilder": "imagelib.widgets.filter_chain",
    "DeepZoomViewer": "imagelib.widgets.deepzoom",
    "IngestWidget": "imagelib.widgets.ingest",
    "view": "imagelib.widgets.deepzoom",
    "summary_html": "imagelib.widgets.repr",
    "tile_base_url": "imagelib.widgets.urls",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imagelib.widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Tab completion shows the lazy names too."""
    return sorted({*globals(), *_EXPORTS})
