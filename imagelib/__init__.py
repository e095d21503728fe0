"""imagelib: large scientific rasters — ingest, validate, version, tile, filter, view.

``import imagelib`` stays light: the verbs below load their modules on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_VERBS = ("ingest", "open", "versions", "lineage", "apply", "search")
__all__ = ["__version__", *_VERBS, "validate"]


def __getattr__(name: str) -> Any:
    if name in _VERBS:
        from imagelib import library

        return getattr(library, name)
    if name == "validate":
        from imagelib.validation import validate

        return validate
    raise AttributeError(f"module 'imagelib' has no attribute {name!r}")
