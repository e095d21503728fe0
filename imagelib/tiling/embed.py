"""Self-contained viewers next to exported tiles: ``index.html`` + vendored OpenSeadragon (DZI) or
Leaflet (XYZ), no CDN, no XHR (the DZI descriptor is inlined), so the folder works from ``file://``,
any static host or an object-store bucket; plus the copy-paste ``<iframe>`` snippet. A packed export
(``--archive``) reads tiles out of one zip with HTTP Range requests (``static/tilearchive.js``)."""

from __future__ import annotations

import html
import json
from string import Template
from typing import Any

from imagelib.tiling.grid import DziGrid
from imagelib.tiling.sink import Sink
from imagelib.tiling.vendor import STATIC

ARCHIVE_JS = STATIC.parent / "tilearchive.js"  # ours (not vendored): reads tiles out of a packed archive
ARCHIVE_HEAD = f'\n<script src="{ARCHIVE_JS.name}"></script>'

PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>$head
<style>html,body,#viewer{margin:0;padding:0;width:100%;height:100%;background:#1b1b1b}</style>
</head><body><div id="viewer"></div>
<script>
$script
</script></body></html>
""")

OSD = Template("""OpenSeadragon({
  id: "viewer", drawer: "canvas", showNavigationControl: false, showNavigator: true,
  tileSources: $source
});""")

LEAFLET = Template("""var map = L.map("viewer",
  {minZoom: $minzoom, maxZoom: $maxzoom_view, attributionControl: false});
var bounds = L.latLngBounds([[$south, $west], [$north, $east]]);
$layer("{z}/{x}/{y}.$fmt", {minZoom: $minzoom, maxZoom: $maxzoom_view, minNativeZoom: $minzoom,
  maxNativeZoom: $maxzoom, bounds: bounds, tileSize: 256, noWrap: true}).addTo(map);
map.fitBounds(bounds);""")


def _image(grid: DziGrid, name: str, fmt: str) -> dict[str, Any]:
    """The ``.dzi`` descriptor as OpenSeadragon's inline tile source (no XHR: works from file://)."""
    return {
        "xmlns": "http://schemas.microsoft.com/deepzoom/2008",
        "Url": f"{name}_files/",
        "Format": fmt,
        "Overlap": str(grid.overlap),
        "TileSize": str(grid.tile_size),
        "Size": {"Width": str(grid.width), "Height": str(grid.height)},
    }


def dzi_page(grid: DziGrid, name: str, fmt: str, title: str, archive: str | None = None) -> str:
    """index.html showing ``<name>.dzi`` with OpenSeadragon (tiles from the packed ``archive`` if given)."""
    image = json.dumps(_image(grid, name, fmt))
    head = '\n<script src="vendor/openseadragon.min.js"></script>'
    if archive is None:
        script = OSD.substitute(source=f"{{Image: {image}}}")
    else:
        head += ARCHIVE_HEAD
        script = _from_archive(archive, OSD.substitute(source=f"archive.dziSource({image})"))
    return PAGE.substitute(title=html.escape(title), head=head, script=script)


def _from_archive(archive: str, script: str) -> str:
    """Run a viewer script once the archive's index is read (``archive`` in scope); see tilearchive.js."""
    url = json.dumps(archive).replace("</", "<\\/")
    return f"TileArchive.start({url}, function (archive) {{\n{script}\n}});"


def views_page(grids: dict[str, DziGrid], fmt: str, title: str) -> str:
    """index.html with one OpenSeadragon viewer per named DZI (``<name>.dzi``), side by side."""
    divs, scripts = [], []
    for name, grid in grids.items():
        divs.append(f'<figure><figcaption>{html.escape(name)}</figcaption><div id="v_{name}"></div></figure>')
        image = json.dumps(_image(grid, name, fmt))
        scripts.append(
            f'OpenSeadragon({{id: "v_{name}", drawer: "canvas", showNavigationControl: false, '
            f"tileSources: {{Image: {image}}}}});"
        )
    head = (
        '\n<script src="vendor/openseadragon.min.js"></script>\n<style>body{display:flex;gap:4px}'
        "figure{flex:1;margin:0;color:#ddd;font:14px sans-serif}figure div{height:90vh}</style>"
    )
    body = PAGE.substitute(title=html.escape(title), head=head, script="\n".join(scripts))
    return body.replace('<div id="viewer"></div>', "".join(divs))


def xyz_page(
    lonlat: tuple[float, float, float, float],
    zooms: tuple[int, int],
    fmt: str,
    title: str,
    archive: str | None = None,
) -> str:
    """index.html showing ``{z}/{x}/{y}.<fmt>`` with Leaflet (tiles from the packed ``archive`` if given)."""
    west, south, east, north = lonlat
    head = '\n<link rel="stylesheet" href="vendor/leaflet.css"><script src="vendor/leaflet.js"></script>'
    script = LEAFLET.substitute(
        layer="L.tileLayer" if archive is None else "archive.leafletLayer",
        minzoom=zooms[0],
        maxzoom=zooms[1],
        maxzoom_view=zooms[1] + 2,
        fmt=fmt,
        west=west,
        south=south,
        east=east,
        north=north,
    )
    if archive is not None:
        head += ARCHIVE_HEAD
        script = _from_archive(archive, script)
    return PAGE.substitute(title=html.escape(title), head=head, script=script)


def write_viewer(sink: Sink, page: str, scheme: str, archive: bool = False) -> None:
    """Write ``index.html`` and the vendored viewer files it loads (+ the archive reader)."""
    names = (
        ["openseadragon.min.js", "openseadragon.LICENSE.txt"]
        if scheme == "dzi"
        else ["leaflet.js", "leaflet.css", "leaflet.LICENSE.txt"]
    )
    for name in names:
        sink.write(f"vendor/{name}", (STATIC / name).read_bytes())
    if archive:
        sink.write(ARCHIVE_JS.name, ARCHIVE_JS.read_bytes())
    sink.write("index.html", page)


def iframe_snippet(url: str, width: str = "100%", height: str = "600") -> str:
    """Copy-paste HTML embedding an exported viewer (``url`` = the folder or its index.html)."""
    src = url if url.endswith(".html") else f"{url.rstrip('/')}/index.html"
    return (
        f'<iframe src="{html.escape(src, quote=True)}" width="{width}" height="{height}" '
        'style="border:0" loading="lazy" allowfullscreen></iframe>'
    )
