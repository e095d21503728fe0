"""Tiling: DZI and XYZ (WebMercatorQuad) pyramids cut from the stored OME-Zarr multiscale, on-the-fly
tiles with filter chains and caching, 3D slices and orthogonal views, embeddable static viewers.

Light to import: the heavy parts (rasterio, imagecodecs, filters) load on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "render_tile": "imagelib.tiling.render",
    "renderer_for": "imagelib.tiling.render",
    "Renderer": "imagelib.tiling.render",
    "tile_version": "imagelib.tiling.export",
    "orthogonal_views": "imagelib.tiling.export",
    "iframe_snippet": "imagelib.tiling.embed",
    "Style": "imagelib.tiling.scale",
    "Encoding": "imagelib.tiling.encode",
    "TileCache": "imagelib.tiling.cache",
    "DziGrid": "imagelib.tiling.grid",
    "XyzGrid": "imagelib.tiling.xyz",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imagelib.tiling' has no attribute {name!r}")
