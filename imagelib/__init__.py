"""imagelib: large scientific rasters — ingest, validate, version, tile, filter, view."""

from __future__ import annotations

__version__ = "0.1.0"
