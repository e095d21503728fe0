"""``imagelib tile``: a stored version (or one slice of a volume) → DZI or XYZ pyramid in a folder or
bucket, optionally with an embeddable viewer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imagelib.context import Library
from imagelib.errors import UsageError
from imagelib.tiling.archive import SUFFIX, tile_writer
from imagelib.tiling.embed import dzi_page, iframe_snippet, views_page, write_viewer, xyz_page
from imagelib.tiling.encode import normalize_format
from imagelib.tiling.pyramid import write_dzi, write_xyz
from imagelib.tiling.render import Chain, renderer_for
from imagelib.tiling.scale import Style
from imagelib.tiling.sink import Sink
from imagelib.tiling.volume import AXES, VIEWS


def tile_version(
    version: str,
    scheme: str = "dzi",
    out: str | os.PathLike[str] = ".",
    *,
    fmt: str | None = None,
    tile_size: int = 254,
    overlap: int = 1,
    embed: bool = False,
    axis: str | None = None,
    index: int | None = None,
    chain: Chain | str | os.PathLike[str] | None = None,
    style: Style | None = None,
    name: str | None = None,
    progress: bool = False,
    archive: bool = False,
    workers: int | None = None,
    lib: Library | None = None,
) -> dict[str, Any]:
    """Write a pyramid of ``version``; return ``{"scheme","out","format","tiles",...}`` (+ viewer info).

    ``archive``: all tiles (and the ``.dzi``) go into one packed ``<name>.zip`` under ``out`` instead of
    one file each; ``workers``: render threads (default one per core)."""
    if scheme not in ("dzi", "xyz"):
        raise UsageError(f"unknown scheme {scheme!r}", field="scheme", expected=["dzi", "xyz"], found=scheme)
    fmt = normalize_format(fmt or ("jpg" if scheme == "dzi" else "png"))
    renderer = renderer_for(version, chain, axis=axis, index=index, style=style, lib=lib)
    sink = Sink(out)
    title = str(renderer.plane.attrs.get("name") or version)
    result: dict[str, Any] = {"version": version, "scheme": scheme, "out": sink.url, "format": fmt}
    slice_tag = f"_{axis or 'z'}{'' if index is None else index}"
    name = name or (version if axis is None and index is None else version + slice_tag)
    packed = f"{name}{SUFFIX}" if archive else None
    with tile_writer(sink, packed) as writer:
        if scheme == "dzi":
            grid = write_dzi(renderer, writer, name, fmt, tile_size, overlap, progress, workers)
        else:
            zooms = write_xyz(renderer, writer, fmt, progress, workers)
    if packed:
        result["archive"] = packed
    if scheme == "dzi":
        result.update(
            name=name,
            dzi=f"{name}.dzi",
            levels=grid.levels,
            tiles=grid.total_tiles(),
            width=grid.width,
            height=grid.height,
        )
        page = dzi_page(grid, name, fmt, title, packed)
    else:
        result.update(minzoom=zooms[0], maxzoom=zooms[1], tiles=renderer.xyz_grid.total_tiles())
        page = xyz_page(renderer.xyz_grid.lonlat, zooms, fmt, title, packed)
    if embed:
        write_viewer(sink, page, scheme, archive)
        result.update(index_html=f"{sink.url}/index.html", iframe=iframe_snippet(sink.url))
    return result


def orthogonal_views(
    version: str,
    out: str | os.PathLike[str],
    point: tuple[int, int, int] | None = None,
    *,
    fmt: str = "png",
    embed: bool = False,
    style: Style | None = None,
    progress: bool = False,
    lib: Library | None = None,
) -> dict[str, Any]:
    """The xy, xz and yz views of a volume through ``point`` (z, y, x; default centre) as three DZIs
    (``xy.dzi``, ``xz.dzi``, ``yz.dzi``), each resampled to square physical pixels."""
    fmt, sink = normalize_format(fmt), Sink(out)
    grids = {}
    for view, axis in VIEWS.items():
        index = None if point is None else point[AXES.index(axis)]
        renderer = renderer_for(version, axis=axis, index=index, style=style, lib=lib)
        grids[view] = write_dzi(renderer, sink, view, fmt, progress=progress)
    result: dict[str, Any] = {
        "version": version,
        "out": sink.url,
        "format": fmt,
        "views": {v: {"width": g.width, "height": g.height} for v, g in grids.items()},
    }
    if embed:
        write_viewer(sink, views_page(grids, fmt, version), "dzi")
        result.update(index_html=f"{sink.url}/index.html", iframe=iframe_snippet(sink.url))
    return result


def export_embed(version: str, out: str | Path, scheme: str = "dzi", **options: Any) -> str:
    """Tiles + index.html + vendored viewer for ``version`` in ``out``; return the folder URL or path."""
    result = tile_version(version, scheme, out, embed=True, **options)
    return str(out) if "://" not in str(out) else result["out"]
