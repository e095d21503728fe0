"""imagelib: large scientific rasters — ingest, validate, version, tile, filter, view.

``import imagelib`` stays light: the verbs below load their modules on first use.
"""

from __future__ import annotations

from typing import Any

from imagelib._version import __version__

#: lazily imported public names → the module that defines them
_LAZY = {
    "ingest": "imagelib.library",
    "open": "imagelib.library",
    "versions": "imagelib.library",
    "lineage": "imagelib.library",
    "apply": "imagelib.library",
    "search": "imagelib.library",
    "validate": "imagelib.validation",
    "Library": "imagelib.context",
    "connect": "imagelib.context",
    "current": "imagelib.context",
    "using": "imagelib.context",
    "Client": "imagelib.client",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imagelib' has no attribute {name!r}")


def __dir__() -> list[str]:
    """Tab completion and ``dir(imagelib)`` show the lazy verbs too."""
    return sorted({*globals(), *_LAZY})
