"""``DeepZoomViewer``: a stored version in an ipyleaflet map, tiles from the Jupyter server extension.

* georeferenced versions: a WebMercator map (optional basemap) with the XYZ tiles as a ``TileLayer``;
* everything else: a pixel-space map (``CRS.Simple``) over the DZI levels — Leaflet zoom ``z`` is DZI
  level ``z`` and one map unit is ``2**(levels-1)`` full-resolution pixels, so the DZI grid (254 px
  tiles) is Leaflet's tile grid. DZI tiles carry a 1 px overlap that Leaflet does not know about, so a
  tile is drawn up to 2 px squeezed into its 254 px cell (≤ 1 screen px misplacement at tile seams);
* 3D ``z,y,x`` volumes: a slider over the z slices (``?axis=z&index=`` on the tile URLs).

Tile URLs carry the canonical chain (``?chain=``): a linked :class:`FilterChainBuilder` edit sets the
layer's ``url`` trait (one comm message), the browser fetches the new chain's tiles and keeps the old
ones cached. Every failure (unknown version, a chain that fails validation, …) is shown in place as
``CODE: message``; nothing raises into the notebook.
"""

from __future__ import annotations

import html
import math
from typing import Any

import ipyleaflet as L
import ipywidgets as w

from imagelib.context import Library
from imagelib.errors import ImagelibError, UsageError, from_exception
from imagelib.widgets import urls

#: default basemap of geo maps; needs the internet in the browser, so pass ``basemap=None`` offline
DEFAULT_BASEMAP: Any = "default"
#: extra zoom levels past full resolution (pixels magnified) in pixel space
OVERZOOM = 2


def error_html(exc: BaseException) -> str:
    """``CODE: message`` in red (no traceback)."""
    coded = exc if isinstance(exc, ImagelibError) else from_exception(exc)
    return f"<span style='color:#b00'><b>{coded.code}</b>: {html.escape(str(coded))}</span>"


def nice_length(max_units: float) -> float:
    """The largest 1, 2 or 5 × 10ⁿ not above ``max_units`` (what a scale bar shows)."""
    if max_units <= 0 or not math.isfinite(max_units):
        return 0.0
    exp = math.floor(math.log10(max_units))
    for step in (5, 2, 1):
        if step * 10**exp <= max_units:
            return step * 10**exp
    return 10**exp  # pragma: no cover - 1×10ⁿ ≤ max_units by construction


def scale_bar(units_per_px: float, unit: str, max_px: int = 120) -> tuple[float, int, str]:
    """``(length, width_px, label)`` of a scale bar no wider than ``max_px`` screen pixels."""
    length = nice_length(units_per_px * max_px)
    width = round(length / units_per_px) if units_per_px else 0
    return length, width, f"{length:g} {unit}"


def _spacing(attrs: dict[str, Any]) -> tuple[float, str]:
    """Physical size of a full-resolution pixel along x and its unit; image pixels when unknown."""
    size = (attrs.get("spacing") or {}).get("x")
    if not size:
        return 1.0, "px"
    # OME's PhysicalSize unit defaults to µm; imagelib keeps no other unit yet
    return float(size), attrs.get("spacing_unit") or "µm"


def _basemap_layer(basemap: Any) -> L.Layer | None:
    if basemap is None:
        return None
    if basemap == "default":
        basemap = L.basemaps.OpenStreetMap.Mapnik
    layer = basemap if isinstance(basemap, L.Layer) else L.basemap_to_tiles(basemap)
    layer.base = True
    return layer


class DeepZoomViewer:
    """Deep-zoom view of a stored version (``.widget``); ``chain`` may be a chain or a FilterChainBuilder."""

    def __init__(
        self,
        version: str,
        chain: Any = None,
        *,
        lib: Library | None = None,
        base_url: str | None = None,
        basemap: Any = DEFAULT_BASEMAP,
        fmt: str = "png",
        height: str = "500px",
    ) -> None:
        self.version, self.lib, self.fmt = version, lib, fmt
        self.base_url = urls.tile_base_url(base_url)
        self.chain: list[dict[str, Any]] | None = None
        self.axis: str | None = None
        self.index: int | None = None
        self.map: L.Map | None = None
        self.layer: L.TileLayer | None = None
        self.geo = False
        self.error = w.HTML()
        self.controls = w.VBox()
        self.scale = w.HTML()
        self.widget = w.VBox([self.error])
        builder = chain if hasattr(chain, "on_change") else None
        try:
            self._open(chain.model.to_chain() if builder else chain, basemap, height)
        except Exception as exc:  # shown in place: a notebook user sees the code, never a traceback
            self.error.value = error_html(exc)
            return
        if builder is not None:
            self.link(builder)

    # --- construction ------------------------------------------------------------------------

    def _open(self, chain: Any, basemap: Any, height: str) -> None:
        from imagelib.stored import open_version
        from imagelib.tiling.render import canonical, renderer_for

        self.data = open_version(self.version, lib=self.lib)
        self.chain = _ops(canonical(chain)) if chain else None
        if "z" in self.data.dims:
            self.axis, self.index = "z", self.data.sizes["z"] // 2
        self.renderer = renderer_for(self.version, self.chain, lib=self.lib)
        self.geo = bool(self.data.attrs.get("georeferenced")) and self.axis is None
        self.layer = self._geo_layer() if self.geo else self._pixel_layer()
        base = _basemap_layer(basemap) if self.geo else None
        self.map = L.Map(
            layers=tuple(x for x in (base, self.layer) if x is not None),
            crs=L.projections.EPSG3857 if self.geo else L.projections.Simple,
            center=self._center,
            zoom=self._fit_zoom,
            min_zoom=self.layer.min_zoom,
            max_zoom=self.layer.max_zoom,
            scroll_wheel_zoom=True,
            layout=w.Layout(height=height),
        )
        if self.geo:
            self.map.add(L.ScaleControl(position="bottomleft", imperial=False))
        else:
            self.map.observe(lambda _: self._update_scale(), names="zoom")
            self._update_scale()
        self.opacity = w.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, description="opacity")
        w.link((self.opacity, "value"), (self.layer, "opacity"))
        rows: list[w.Widget] = [self.opacity]
        if self.axis is not None:
            rows.append(self._slice_controls())
        self.controls.children = rows
        self.widget.children = [self.error, self.controls, self.map, self.scale]

    def _geo_layer(self) -> L.TileLayer:
        grid = self.renderer.xyz_grid
        west, south, east, north = grid.lonlat
        self._center = [(south + north) / 2, (west + east) / 2]
        self._fit_zoom = min(grid.minzoom + 1, grid.maxzoom)
        return L.TileLayer(
            url=self.template(),
            min_zoom=0,
            max_zoom=grid.maxzoom + OVERZOOM,
            min_native_zoom=grid.minzoom,
            max_native_zoom=grid.maxzoom,
            bounds=[[south, west], [north, east]],
            no_wrap=True,
            name=f"imagelib {self.version[:8]}",
            attribution="imagelib",
        )

    def _pixel_layer(self) -> L.TileLayer:
        grid = self.renderer.dzi_grid()
        top = grid.levels - 1
        unit = 2**top  # full-resolution pixels per map unit, so zoom z ≡ DZI level z
        h, w_ = grid.height / unit, grid.width / unit
        self._center = [-h / 2, w_ / 2]
        # fit the longer side into ~512 screen pixels
        self._fit_zoom = max(0, top - max(0, math.ceil(math.log2(max(grid.width, grid.height) / 512))))
        return L.TileLayer(
            url=self.template(),
            tile_size=grid.tile_size,
            min_zoom=0,
            max_zoom=top + OVERZOOM,
            min_native_zoom=0,
            max_native_zoom=top,
            bounds=[[-h, 0], [0, w_]],
            no_wrap=True,
            name=f"imagelib {self.version[:8]}",
            attribution="imagelib",
        )

    def _slice_controls(self) -> w.Widget:
        self.axis_picker = w.Dropdown(options=list(self.slice_bounds), value=self.axis, description="axis")
        lo, hi = self.slice_bounds[self.axis]
        self.slider = w.IntSlider(
            value=self.index, min=lo, max=hi, description="slice", continuous_update=False
        )
        self.axis_picker.observe(lambda ch: self.set_slice(ch["new"], None), names="value")
        self.slider.observe(lambda ch: self.set_slice(self.axis, ch["new"]), names="value")
        # another axis changes the image's shape, so the map's bounds and zooms would have to be rebuilt:
        # not yet; z slices all share one shape, and the tile extension serves any of them (?axis=&index=)
        self.axis_picker.disabled = True
        note = w.HTML("<i>slices across z; xz/yz views: <code>imagelib tile --axis views</code></i>")
        return w.VBox([w.HBox([self.axis_picker, self.slider]), note])

    # --- state -----------------------------------------------------------------------------------

    @property
    def slice_bounds(self) -> dict[str, tuple[int, int]]:
        """``{axis: (first, last)}`` slice indices of a volume (empty for 2D data)."""
        if self.axis is None:
            return {}
        return {a: (0, self.data.sizes[a] - 1) for a in ("z", "y", "x")}

    @property
    def zoom_range(self) -> tuple[int, int]:
        """``(min, max)`` native zoom of the tiles (XYZ zooms, or DZI levels in pixel space)."""
        assert self.layer is not None
        return self.layer.min_native_zoom, self.layer.max_native_zoom

    def template(self) -> str:
        """The Leaflet tile URL template of the current chain (and slice)."""
        build = urls.xyz_template if self.geo else urls.dzi_template
        extra = {"axis": self.axis, "index": self.index} if self.axis is not None else {}
        return build(self.base_url, self.version, self.chain, self.fmt, **extra)

    def _refresh(self) -> None:
        if self.layer is not None:
            self.layer.url = self.template()

    def set_chain(self, chain: Any) -> bool:
        """Show the version through ``chain``; a bad chain is reported in place and the view kept."""
        if self.layer is None:
            return False
        try:
            from imagelib.tiling.render import canonical, renderer_for

            ops = _ops(canonical(chain)) if chain else None
            # the scaling runs the chain on a small level: band-count errors show now, not as broken tiles
            _ = renderer_for(self.version, ops, axis=self.axis, index=self.index, lib=self.lib).scaling
        except Exception as exc:
            self.error.value = error_html(exc)
            return False
        self.chain, self.error.value = ops, ""
        self._refresh()
        return True

    def set_slice(self, axis: str | None, index: int | None) -> None:
        """Choose the slice of a volume (``index`` None: the middle one); out of range is reported."""
        if self.axis is None or axis is None:
            return
        if axis != "z":  # other axes change the image's shape (see _slice_controls)
            bad = UsageError("the viewer shows slices across z", field="axis", expected=["z"], found=axis)
            self.error.value = error_html(bad)
            return
        lo, hi = self.slice_bounds[axis]
        index = (hi + 1) // 2 if index is None else index
        if not lo <= index <= hi:
            self.error.value = error_html(
                UsageError(f"index {index} outside {lo}..{hi} along {axis}", field="index", found=index)
            )
            return
        self.axis, self.index, self.error.value = axis, index, ""
        if hasattr(self, "slider"):
            with self.slider.hold_trait_notifications():  # min/max/value change together, valid at the end
                self.slider.min, self.slider.max, self.slider.value = lo, hi, index
        self._refresh()

    def _update_scale(self) -> None:
        """The pixel-space scale bar for the map's zoom, in the data's units."""
        if self.map is None or self.geo:
            return
        size, unit = _spacing(self.data.attrs)
        top = self.renderer.dzi_grid().levels - 1
        per_px = size * 2 ** (top - self.map.zoom)
        _, width, label = scale_bar(per_px, unit)
        self.scale.value = (
            f"<div style='display:flex;align-items:center;gap:6px'><div style='width:{width}px;"
            f"height:6px;border:2px solid #333;border-top:none'></div><span>{html.escape(label)}</span></div>"
        )

    def link(self, builder: Any) -> DeepZoomViewer:
        """Follow a FilterChainBuilder: each accepted edit re-targets the tile layer at the new chain."""
        builder.on_change(self.set_chain)
        self.set_chain(builder.model.to_chain())
        return self

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _ops(text: str | None) -> list[dict[str, Any]] | None:
    import json

    return json.loads(text) if text else None


def view(source: Any, chain: Any = None, **options: Any) -> DeepZoomViewer:
    """A :class:`DeepZoomViewer` of a version ID or of a DataArray that ``imagelib.open`` returned."""
    version = source if isinstance(source, str) else source.attrs.get("version")
    return DeepZoomViewer(version, chain, **options)
