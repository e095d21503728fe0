"""The Panel app: dataset browser → version → deep-zoom view with chain and style controls, histogram,
lineage, coded errors in place, and a share link (the page URL's query) kept in sync with the view."""

from __future__ import annotations

import html
import json
import os
from dataclasses import replace
from typing import Any

import panel as pn

from imagelib.context import Library, current
from imagelib.errors import from_exception
from imagelib.tiling.colormap import ANCHORS
from imagelib.tiling.http import parse_tile_query
from imagelib.viewer import pieces
from imagelib.viewer.deepzoom import DeepZoom
from imagelib.viewer.state import MAX_CHAIN_BYTES, ViewState, from_params
from imagelib.widgets.chain_model import ChainModel

#: how long a served share link's side panels and plots wait for the map's first draw at most
FALLBACK_MS = 8000


def env_prefix() -> str:
    """``$IMAGELIB_VIEWER_PREFIX`` without a trailing slash ('' when served at the root)."""
    prefix = os.environ.get("IMAGELIB_VIEWER_PREFIX", "").strip().rstrip("/")
    return "/" + prefix.lstrip("/") if prefix else ""


def coded_text(exc: BaseException) -> str:
    """``[CODE] message`` of any exception (never a traceback)."""
    coded = from_exception(exc)
    return f"[{coded.code}] {coded.message}"


class ViewerApp:
    """One session's app; ``params`` (a share link's decoded query) restores a view."""

    def __init__(
        self,
        params: dict[str, str] | None = None,
        *,
        prefix: str | None = None,
        lib: Library | None = None,
        defer: bool = False,
    ) -> None:
        """``defer``: draw the HoloViews plots only after the map's first tiles (served pages), so the
        map is not queued behind plot rendering on the server's one event loop."""
        self.lib = current(lib)
        self.prefix = env_prefix() if prefix is None else prefix.rstrip("/")
        self.state = ViewState()
        self._busy = False  # set while Python updates widgets, so their watchers do not echo back
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["imagelib-error"])
        self.view = DeepZoom(
            script_url=f"{self.prefix}/viewer-static/openseadragon.min.js", sizing_mode="stretch_width"
        )
        self.view.param.watch(self._on_viewport, ["x", "y", "zoom"])
        self._browser()
        self._controls()
        self.share = pn.widgets.TextInput(label="share link", css_classes=["imagelib-share"])
        self.embed = pn.widgets.TextAreaInput(label="embed", height=70, css_classes=["imagelib-embed"])
        self.histogram = pn.pane.HoloViews(None, sizing_mode="stretch_width", height=230)
        self.lineage = pn.pane.HoloViews(None, sizing_mode="stretch_width", height=230)
        self._tap: Any = None
        self._pending: str | None = None  # a version whose plots wait for the map's first draw
        self._deferred = defer
        self._later: list[tuple[pn.Column, list[Any]]] = []  # side panels waiting for the map's first draw
        self.view.param.watch(lambda _e: self.draw_plots(), "drawn")
        if not defer:
            self.draw_plots()
        self.search()
        if params:
            self.restore(params)

    # ---- building ---------------------------------------------------------------------------------

    def _browser(self) -> None:
        rows = pieces.find(lib=self.lib)
        menus = pieces.choices(lib=self.lib)
        self.namespace = pn.widgets.Select(label="namespace", options=["", *menus["namespace"]])
        self.dataset = pn.widgets.Select(label="dataset", options=["", *menus["dataset"]])
        self.dtype = pn.widgets.Select(label="dtype", options=["", *menus["dtype"]])
        self.start = pn.widgets.TextInput(label="from (ISO date)", placeholder="2020-01-01")
        self.end = pn.widgets.TextInput(label="to (ISO date)", placeholder="2030-01-01")
        self.bbox = pn.widgets.TextInput(label="bbox (W,S,E,N)", placeholder="draw on the map below")
        self.results = pn.widgets.Select(
            label="versions", options={}, size=6, css_classes=["imagelib-results"]
        )
        for w in (self.namespace, self.dataset, self.dtype, self.start, self.end, self.bbox):
            w.param.watch(lambda _e: self.search(), "value")
        self.results.param.watch(self._on_result, "value")
        self._rows = rows
        self.footprints = pn.pane.HoloViews(None, height=220, sizing_mode="stretch_width")

    def _footprint_map(self, rows: list[dict[str, Any]]) -> Any:
        """Footprints of the geo versions on a basemap-less lon/lat plot; a drawn box sets the bbox."""
        hv = pieces.holoviews_bokeh()
        boxes = [tuple(r["bounds_4326"]) for r in rows if r.get("bounds_4326")]
        footprints = hv.Rectangles(boxes or [(0, 0, 0, 0)]).opts(fill_alpha=0.1, line_color="#1f77b4")
        drawn = hv.Rectangles([]).opts(fill_alpha=0.2, fill_color="#ff7f0e", line_color="#ff7f0e")
        self._draw = hv.streams.BoxEdit(source=drawn, num_objects=1)
        self._draw.add_subscriber(self._on_draw)
        return (footprints * drawn).opts(
            title="draw a box (shift-drag) to filter by bbox", xlabel="lon", ylabel="lat", responsive=True
        )

    def _controls(self) -> None:
        self.op = pn.widgets.Select(label="add step", options=ChainModel.op_names(), width=160)
        self.add = pn.widgets.Button(label="add", width=60)
        self.chain = pn.widgets.TextAreaInput(label="chain (JSON)", height=90, css_classes=["imagelib-chain"])
        self.apply = pn.widgets.Button(
            label="apply chain", button_type="primary", css_classes=["imagelib-apply"]
        )
        self.bands = pn.widgets.TextInput(label="bands", placeholder="1 or 1,2,3")
        self.colormap = pn.widgets.Select(label="colormap", options=["", *sorted(ANCHORS)])
        self.rescale = pn.widgets.TextInput(label="rescale (lo,hi)", placeholder="auto")
        self.axis = pn.widgets.Select(
            label="slice axis", options=["z", "y", "x"], visible=False, css_classes=["imagelib-axis"]
        )
        self.index = pn.widgets.IntSlider(label="slice", start=0, end=1, visible=False)
        self.add.on_click(lambda _e: self._add_step())
        self.apply.on_click(lambda _e: self._edit())
        for w in (self.bands, self.colormap, self.rescale, self.index):
            w.param.watch(lambda _e: self._edit(), "value")
        self.axis.param.watch(self._on_axis, "value")

    def layout(self) -> pn.template.BaseTemplate | pn.Row:
        """The page."""
        sidebar = pn.Column(
            "### Datasets",
            self.namespace,
            self.dataset,
            self.dtype,
            pn.Row(self.start, self.end),
            self.bbox,
            self.footprints,
            self.results,
            width=360,
        )
        controls = pn.Column(
            "### Filter chain",
            pn.Row(self.op, self.add),
            self.chain,
            self.apply,
            "### Display",
            pn.Row(self.bands, self.colormap, self.rescale),
            pn.Row(self.axis, self.index),
            self.share,
            self.embed,
            width=420,
        )
        main = pn.Column(
            self.error,
            self.view,
            pn.Row(self.histogram, self.lineage, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        if self._deferred and self.view.descriptor:
            # a share link: the first page carries the map alone, so the server builds and the browser
            # renders ~40 fewer models before OpenSeadragon starts; the side panels fill in after the
            # map's first draw, into their fixed-width columns so the map's width (and the zoom the link
            # restored) does not change
            self._later = [(sidebar, sidebar.objects), (controls, controls.objects)]
            sidebar.objects, controls.objects = [], []
        return pn.Row(sidebar, main, controls, sizing_mode="stretch_width")

    # ---- browser ----------------------------------------------------------------------------------

    def search(self) -> list[dict[str, Any]]:
        """Run the browser's filters; fills the version list (errors shown in place)."""
        try:
            rows = pieces.find(
                self.namespace.value,
                self.dataset.value,
                self.dtype.value,
                self.start.value,
                self.end.value,
                self.bbox.value,
                lib=self.lib,
            )
        except Exception as exc:
            self.show_error(exc)
            return []
        self.clear_error()
        self._busy = True
        try:
            # a placeholder first: a bare <select> would pick (and open) the first version by itself
            options = {
                f"— {len(rows)} version(s): choose one —": "",
                **{pieces.label(r): r["version"] for r in rows},
            }
            self.results.options = options
            self.results.value = self.state.version if self.state.version in options.values() else ""
        finally:
            self._busy = False
        return rows

    def _on_draw(self, data: dict[str, list[float]]) -> None:
        if data and data.get("x0"):
            box = (data["x0"][0], data["y0"][0], data["x1"][0], data["y1"][0])
            west, east = sorted((box[0], box[2]))
            south, north = sorted((box[1], box[3]))
            self.bbox.value = ",".join(f"{v:.6g}" for v in (west, south, east, north))

    def _on_result(self, event: Any) -> None:
        if not self._busy and event.new:
            self.open(event.new)

    # ---- view -------------------------------------------------------------------------------------

    def open(self, version: str) -> bool:
        """Show a version from its default view (whole image, no chain, default style)."""
        return self.show(ViewState(version))

    def restore(self, params: dict[str, str]) -> bool:
        """Show the view a share link's query names; a bad link shows its coded error."""
        try:
            state = from_params(params)
        except Exception as exc:
            self.show_error(exc)
            return False
        return self.show(state)

    def descriptor(self, state: ViewState) -> str:
        """The ``.dzi`` URL of a view after checking it renders (version, chain, bands: coded errors)."""
        from imagelib.tiling import renderer_for

        renderer = renderer_for(
            state.version, state.chain, axis=state.axis, index=state.index, style=state.style, lib=self.lib
        )
        renderer.dzi_grid()
        _ = renderer.scaling  # resolves bands/rescale against the data: BAND_INDEX_INVALID here, not in tiles
        return f"{self.prefix}/tiles/{state.version}.dzi" + state.tile_query()

    def show(self, state: ViewState) -> bool:
        """Make ``state`` the view (widgets, map, histogram, lineage, share link); False on a coded error,
        which is shown in place while the previous view stays."""
        if state.version is None:
            return False
        try:
            row = self.lib.catalog.get_version(state.version)
            state = self._slice(state, row)
            url = self.descriptor(state)
        except Exception as exc:
            self.show_error(exc)
            return False
        changed = state.version != self.state.version
        self.state = state
        self._busy = True
        try:
            self._sync_widgets(state, row)
            self.view.param.update(x=state.x, y=state.y, zoom=state.zoom, descriptor=url)
        finally:
            self._busy = False
        self.clear_error()
        if changed:
            self._pending = state.version
            if not self._deferred:
                self.draw_plots()
        self.publish()
        return True

    def _slice(self, state: ViewState, row: dict[str, Any]) -> ViewState:
        """A volume shows one slice: default the z axis, and the middle index of the chosen axis."""
        dims = tuple(row.get("dims") or ())
        if "z" not in dims:
            return replace(state, axis=None, index=None)
        axis = state.axis or "z"
        if state.index is None:
            # a link (or an axis change) may name the axis alone: the renderer's default, made explicit
            shape = dict(zip(dims, row.get("shape") or (), strict=False))
            return replace(state, axis=axis, index=int(shape[axis]) // 2)
        return replace(state, axis=axis)

    def _sync_widgets(self, state: ViewState, row: dict[str, Any]) -> None:
        self.chain.value = json.dumps(state.chain, indent=1) if state.chain else ""
        style = state.style
        self.bands.value = ",".join(str(b) for b in style.bands) if style.bands else ""
        self.colormap.value = style.colormap if isinstance(style.colormap, str) else ""
        pairs = dict(state.to_params())
        self.rescale.value = pairs.get("rescale", "")
        volume = state.axis is not None
        self.axis.visible = self.index.visible = volume
        if volume:
            shape = dict(zip(row["dims"], row["shape"], strict=False))
            self.axis.value = state.axis
            self.index.end = max(int(shape[state.axis]) - 1, 1)
            self.index.value = int(state.index or 0)
        if state.version in self.results.values:
            self.results.value = state.version

    def _add_step(self) -> None:
        try:
            model = ChainModel(self.chain.value or None)
            model.add(self.op.value)
        except Exception as exc:
            self.show_error(exc)
            return
        self.chain.value = json.dumps(model.to_chain(), indent=1)
        self._edit()

    def _on_axis(self, event: Any) -> None:
        """Another slice axis: its middle slice, whole; the axis picker goes back if it cannot be shown."""
        if self._busy or self.state.version is None:
            return
        if not self._edit(reslice=True):
            self._busy = True
            try:
                self.axis.value = event.old
            finally:
                self._busy = False

    def _edit(self, reslice: bool = False) -> bool:
        """Apply the chain/style/slice widgets to the current view (viewport kept, except on another
        slice axis, whose image has another shape); ``reslice``: the axis changed, so its middle slice."""
        if self._busy or self.state.version is None:
            return False
        values = {
            "chain": self.chain.value.strip(),
            "bands": self.bands.value.strip(),
            "rescale": self.rescale.value.strip(),
            "colormap": self.colormap.value or "",
        }
        if self.axis.visible:
            values.update(axis=self.axis.value, index="" if reslice else str(self.index.value))
        try:
            if values["chain"]:
                values["chain"] = json.dumps(json.loads(values["chain"]), separators=(",", ":"))
            query = parse_tile_query(lambda name: values.get(name) or None, MAX_CHAIN_BYTES)
        except json.JSONDecodeError as exc:
            from imagelib.errors import ChainError

            self.show_error(ChainError(f"chain is not valid JSON: {exc}", field="chain"))
            return False
        except Exception as exc:
            self.show_error(exc)
            return False
        state = replace(self.state, chain=query.chain, style=query.style, axis=query.axis, index=query.index)
        if state.axis != self.state.axis:  # the old viewport is in the other slice's image-width units
            state = replace(state, x=None, y=None, zoom=None)
        return self.show(state)

    def _on_viewport(self, *_events: Any) -> None:
        if self._busy or self.state.version is None or self.view.zoom is None:
            return
        self.state = self.state.with_viewport(self.view.x, self.view.y, self.view.zoom)
        self.publish()

    def draw_plots(self) -> None:
        """Fill the side panels held back for the map, then draw the footprint map once and the chosen
        version's histogram and lineage."""
        later, self._later = self._later, []
        for column, objects in later:
            column.objects = objects
        if self.footprints.object is None:
            self.footprints.object = self._footprint_map(self._rows)
        if self._pending:
            version, self._pending = self._pending, None
            self._insight(version)

    def _insight(self, version: str) -> None:
        """Histogram and lineage of the chosen version (their own errors shown in place)."""
        try:
            self.histogram.object = pieces.histogram_plot(pieces.histogram(version, lib=self.lib))
            plot, points = pieces.lineage_plot(pieces.lineage_graph(version, lib=self.lib))
        except Exception as exc:
            self.show_error(exc)
            return
        hv = pieces.holoviews_bokeh()
        self._nodes = [v for v in points.data["name"]]
        self._graph = pieces.lineage_graph(version, lib=self.lib)
        self._tap = hv.streams.Selection1D(source=points)
        self._tap.add_subscriber(self._on_node)
        self.lineage.object = plot

    def _on_node(self, index: list[int]) -> None:
        if index:
            node = self._graph["nodes"][index[0]]["version"]
            if node != self.state.version:
                self.open(node)

    # ---- share link and errors --------------------------------------------------------------------

    def base_url(self) -> str:
        """The page's URL without its query (the browser's when known, else the prefix)."""
        loc = pn.state.location
        href = getattr(loc, "href", "") if loc is not None else ""
        if href:
            return href.split("#", 1)[0].split("?", 1)[0]
        return f"{self.prefix}/"

    def share_link(self) -> str:
        """The URL that reopens exactly this view."""
        return self.base_url() + self.state.to_query()

    def embed_snippet(self) -> str:
        """An iframe showing this view."""
        return (
            f'<iframe src="{html.escape(self.share_link(), quote=True)}" width="100%" height="720" '
            'style="border:0" title="imagelib viewer"></iframe>'
        )

    def publish(self) -> None:
        """Write the view into the page URL (replaceState: no history spam), the share box and embed."""
        loc = pn.state.location
        if loc is not None:
            loc.search = self.state.to_query()
        self.share.value = self.share_link()
        self.embed.value = self.embed_snippet()

    def show_error(self, exc: BaseException) -> None:
        """The coded error above the map (the map keeps the last good view, or says why it is empty)."""
        text = coded_text(exc)
        self.error.object = text
        self.error.visible = True
        if not self.view.descriptor:
            self.view.message = text

    def clear_error(self) -> None:
        """Hide the error box."""
        self.error.object, self.error.visible = "", False
        self.view.message = ""


def session_params() -> dict[str, str]:
    """The current Bokeh session's request query (first value of each), decoded."""
    args = pn.state.session_args or {}
    return {k: (v[0].decode() if isinstance(v[0], bytes) else str(v[0])) for k, v in args.items() if v}


def build(params: dict[str, str] | None = None) -> pn.viewable.Viewable:
    """The app for one session (``panel serve`` and ``imagelib viewer`` call this per page load)."""
    pn.extension()
    try:
        app = ViewerApp(session_params() if params is None else params, defer=True)
    except Exception as exc:  # e.g. the catalog is unreachable: say so, never a traceback
        return pn.pane.Alert(coded_text(exc), alert_type="danger", css_classes=["imagelib-error"])
    page = app.layout()
    if not app.state.version:  # no map to wait for
        pn.state.onload(app.draw_plots)
    else:  # a map that never draws (its tiles fail) must not hold back the panels and plots for good
        pn.state.onload(lambda: pn.state.add_periodic_callback(app.draw_plots, period=FALLBACK_MS, count=1))
    return page
