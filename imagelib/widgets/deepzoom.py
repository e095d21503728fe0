"""``DeepZoomViewer``: a stored version in an ipyleaflet map, tiles from the Jupyter server extension.

* georeferenced versions: a WebMercator map (optional basemap) with the XYZ tiles as a ``TileLayer``;
* everything else: a pixel-space map (``CRS.Simple``) over the DZI levels — Leaflet zoom ``z`` is DZI
  level ``z`` and one map unit is ``2**(levels-1)`` full-resolution pixels, so the DZI grid (254 px
  tiles) is Leaflet's tile grid. DZI tiles carry a 1 px overlap that Leaflet does not know about, so a
  tile is drawn up to 2 px squeezed into its 254 px cell (≤ 1 screen px misplacement at tile seams);
* 3D ``z,y,x`` volumes: an axis choice (z / y / x) and a slider over that axis's slices
  (``?axis=…&index=`` on the tile URLs). A y or x slice is an image of another shape ((z, x) or (z, y),
  resampled to square pixels like the tile servers do), so choosing an axis rebuilds the tile layer with
  that slice's bounds, zoom range and scale.

Tile URLs carry the canonical chain and display style (``?chain=…&bands=…&rescale=…&colormap=…``, the
tile grammar of :mod:`imagelib.tiling.http`): a linked :class:`FilterChainBuilder` edit, or a band /
colormap / stretch control, sets the layer's ``url`` trait (one comm message), the browser fetches the
new tiles and keeps the old ones cached. Every failure (unknown version, a chain that fails validation,
a band the data lacks, …) is shown in place as ``CODE: message``; nothing raises into the notebook.
What a chain only approximates at the current zoom (``X-Imagelib-Approximate`` of the tiles) is shown
under the map.
"""

from __future__ import annotations

import html
import math
from typing import Any

import ipyleaflet as L
import ipywidgets as w

from imagelib.context import Library
from imagelib.errors import ImagelibError, UsageError, from_exception
from imagelib.tiling.colormap import ANCHORS
from imagelib.tiling.scale import Style
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


def _spacing(attrs: dict[str, Any], axis: str | None = None) -> tuple[float, str]:
    """Physical size of a full-resolution pixel of the shown plane (a volume's slice across ``axis``) and
    its unit; image pixels when unknown."""
    given = attrs.get("spacing") or {}
    if axis is not None and given:
        from imagelib.tiling.volume import AXES, spacing

        # the renderer resamples a slice to the finer of its two in-plane sizes (unknown ones count as 1)
        sp = spacing(attrs)
        return min(sp[a] for a in AXES if a != axis), attrs.get("spacing_unit") or "µm"
    size = given.get("x")
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
    """Deep-zoom view of a stored version (``.widget``); ``chain`` may be a chain or a FilterChainBuilder,
    ``style`` the initial bands / stretch / colormap."""

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
        style: Style | None = None,
    ) -> None:
        self.version, self.lib, self.fmt = version, lib, fmt
        self.base_url = urls.tile_base_url(base_url)
        self.chain: list[dict[str, Any]] | None = None
        self.style = style or Style()
        self.notes = w.HTML()
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
        self.renderer = renderer_for(self.version, self.chain, axis=self.axis, index=self.index, lib=self.lib)
        _ = self._renderer(self.chain, self.style).scaling  # a bad band or range is reported now
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
        self.map.observe(lambda _: self._update_notes(), names="zoom")
        self._update_notes()
        self.opacity = w.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, description="opacity")
        self._opacity_link = w.link((self.opacity, "value"), (self.layer, "opacity"))
        rows: list[w.Widget] = [w.HBox([self.opacity]), self._style_controls()]
        if self.axis is not None:
            rows.append(self._slice_controls())
        self.controls.children = rows
        self.widget.children = [self.error, self.controls, self.map, self.scale, self.notes]

    def _style_controls(self) -> w.Widget:
        """Bands (``4,3,2`` or ``1``), stretch (``lo,hi`` or one per band, ``;``-separated; empty: the
        statistics) and colormap (single band): each change re-templates the tile layer."""
        query = dict(urls.query_pairs(style=self.style))
        self.bands = w.Text(
            value=query.get("bands", ""),
            placeholder="e.g. 4,3,2 or 1",
            description="bands",
            continuous_update=False,
        )
        self.stretch = w.Text(
            value=query.get("rescale", ""),
            placeholder="auto (p2,p98)",
            description="stretch",
            continuous_update=False,
        )
        self.colormap = w.Dropdown(
            options=[("none", ""), *((name, name) for name in sorted(ANCHORS))],
            value=query.get("colormap", ""),
            description="colormap",
        )
        for control in (self.bands, self.stretch, self.colormap):
            control.observe(lambda _: self._style_changed(), names="value")
        return w.HBox([self.bands, self.stretch, self.colormap])

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
        return w.HBox([self.axis_picker, self.slider])

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
        """The Leaflet tile URL template of the current chain, style (and slice)."""
        build = urls.xyz_template if self.geo else urls.dzi_template
        extra = {"axis": self.axis, "index": self.index} if self.axis is not None else {}
        return build(self.base_url, self.version, self.chain, self.fmt, style=self.style, **extra)

    def _renderer(self, chain: Any, style: Style) -> Any:
        from imagelib.tiling.render import renderer_for

        return renderer_for(self.version, chain, axis=self.axis, index=self.index, style=style, lib=self.lib)

    def set_style(self, style: Style) -> bool:
        """Show the version with ``style`` (bands, stretch, colormap); a band the data (or the chain's
        output) lacks is reported in place and the view kept."""
        if self.layer is None:
            return False
        try:
            urls.query_pairs(style=style)  # only what a tile URL can carry (named colormaps)
            _ = self._renderer(self.chain, style).scaling
        except Exception as exc:
            self.error.value = error_html(exc)
            return False
        self.style, self.error.value = style, ""
        self._refresh()
        return True

    def _style_changed(self) -> None:
        """The controls' text → a :class:`Style` through the tile grammar's parser (same checks, codes)."""
        from imagelib.tiling.http import parse_tile_query

        given = {"bands": self.bands.value.strip(), "rescale": self.stretch.value.strip()}
        given["colormap"] = self.colormap.value
        try:
            style = parse_tile_query(lambda name: given.get(name) or None, 1).style
        except Exception as exc:
            self.error.value = error_html(exc)
            return
        self.set_style(style)

    def _update_notes(self) -> None:
        """What the chain only approximates at the map's zoom (what the tiles' header says)."""
        if self.map is None or not self.chain:
            self.notes.value = ""
            return
        plane = self.renderer.plane
        if self.geo:
            level = self.renderer.xyz_grid.source_level(int(self.map.zoom), plane.levels)
        else:
            level = max(0, plane.levels - 1 - int(self.map.zoom))  # pixel space: zoom z is DZI level z
        notes = self._renderer(self.chain, self.style).notes(min(level, plane.levels - 1))
        self.notes.value = (
            "<span style='color:#8a6d00'>approximate at this zoom: "
            + html.escape("; ".join(notes))
            + "</span>"
            if notes
            else ""
        )

    def _refresh(self) -> None:
        if self.layer is not None:
            self.layer.url = self.template()
            self._update_notes()

    def set_chain(self, chain: Any) -> bool:
        """Show the version through ``chain``; a bad chain is reported in place and the view kept."""
        if self.layer is None:
            return False
        try:
            from imagelib.tiling.render import canonical, renderer_for

            ops = _ops(canonical(chain)) if chain else None
            # the scaling runs the chain on a small level: band-count errors show now, not as broken tiles
            _ = renderer_for(
                self.version, ops, axis=self.axis, index=self.index, style=self.style, lib=self.lib
            ).scaling
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
        bounds = self.slice_bounds
        if axis not in bounds:
            bad = UsageError(
                f"axis must be one of {list(bounds)}", field="axis", expected=list(bounds), found=axis
            )
            self.error.value = error_html(bad)
            self._show_axis()
            return
        lo, hi = bounds[axis]
        index = (hi + 1) // 2 if index is None else index
        if not lo <= index <= hi:
            self.error.value = error_html(
                UsageError(f"index {index} outside {lo}..{hi} along {axis}", field="index", found=index)
            )
            return
        if axis != self.axis:
            try:
                self._retarget(axis, index)
            except Exception as exc:  # the view stays on the old slice and says why
                self.error.value = error_html(exc)
                self._show_axis()
                return
        self.axis, self.index, self.error.value = axis, index, ""
        self._show_axis()
        if hasattr(self, "slider"):
            with self.slider.hold_trait_notifications():  # min/max/value change together, valid at the end
                self.slider.min, self.slider.max, self.slider.value = lo, hi, index
        self._refresh()

    def _show_axis(self) -> None:
        """The axis picker shows the axis actually displayed (after a refused choice too)."""
        if hasattr(self, "axis_picker") and self.axis_picker.value != self.axis:
            self.axis_picker.value = self.axis

    def _retarget(self, axis: str, index: int) -> None:
        """Rebuild the tile layer for a slice across another axis: its image has another shape, so the
        layer's bounds, the map's zoom range and centre, and the scale bar all change."""
        from imagelib.tiling.render import renderer_for

        renderer = renderer_for(self.version, self.chain, axis=axis, index=index, lib=self.lib)
        # a slice the chain or style cannot render is reported before anything changes
        styled = renderer_for(
            self.version, self.chain, axis=axis, index=index, style=self.style, lib=self.lib
        )
        _ = renderer.dzi_grid(), styled.scaling
        old, self.renderer, self.axis, self.index = self.layer, renderer, axis, index
        self.layer = self._pixel_layer()
        assert self.map is not None and old is not None
        self._opacity_link.unlink()
        self.layer.opacity = self.opacity.value
        self._opacity_link = w.link((self.opacity, "value"), (self.layer, "opacity"))
        with self.map.hold_trait_notifications():
            self.map.substitute(old, self.layer)
            self.map.min_zoom, self.map.max_zoom = self.layer.min_zoom, self.layer.max_zoom
            self.map.center, self.map.zoom = self._center, self._fit_zoom
        self._update_scale()

    def _update_scale(self) -> None:
        """The pixel-space scale bar for the map's zoom, in the data's units."""
        if self.map is None or self.geo:
            return
        size, unit = _spacing(self.data.attrs, self.axis)
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
