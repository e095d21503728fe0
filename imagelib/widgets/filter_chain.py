"""``FilterChainBuilder``: build a filter chain in a notebook with a live preview, then apply it.

The view (ipywidgets) only renders :class:`ChainModel` and forwards edits to it; all chain logic lives
in the model so it is tested without a browser.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from imagelib.errors import ImagelibError
from imagelib.filters.chain import split_dims
from imagelib.widgets.chain_model import ChainModel, ParamSpec, param_specs
from imagelib.widgets.preview import default_region, png_bytes, region_result, to_display

ApplyCallback = Callable[[list[dict[str, Any]]], Any]


def default_on_apply(version: str | None) -> ApplyCallback:
    """A callback deriving a new version with ``imagelib.apply(version, chain)``."""

    def on_apply(chain: list[dict[str, Any]]) -> str:
        if version is None:
            raise ImagelibError("no source version to apply the chain to", code="USAGE", field="version")
        import imagelib  # lazily: widgets sit above the library verbs (DESIGN.md, dependency direction)

        return imagelib.apply(version, chain)

    return on_apply


def _source(source: Any) -> tuple[Any, str | None]:
    """``(DataArray, version id or None)`` for a version ID, a DataArray or a bare array."""
    if isinstance(source, str):
        import imagelib

        return imagelib.open(source), source
    if hasattr(source, "dims") and hasattr(source, "attrs"):
        return source, source.attrs.get("version")
    import xarray as xr

    from imagelib.filters.chain import default_dims

    return xr.DataArray(source, dims=default_dims(source.ndim)), None


def _control(spec: ParamSpec, value: Any) -> w.Widget:
    """An input widget for one parameter; structured values are edited as JSON text."""
    common = {"description": spec.name, "tooltip": spec.description or None}
    if spec.kind == "enum":
        return w.Dropdown(options=spec.choices, value=value, **common)
    if spec.kind == "bool":
        return w.Checkbox(value=bool(value), **common)
    if spec.kind in ("float", "int") and value is not None:
        cls = w.FloatText if spec.kind == "float" else w.IntText
        return cls(value=value, **common)
    if spec.kind == "text":
        return w.Text(value=value or "", continuous_update=False, **common)
    return w.Text(value=json.dumps(value), continuous_update=False, **common)


def _parse(spec: ParamSpec, raw: Any) -> Any:
    """A control's value as the parameter value (JSON text parsed; empty → default)."""
    if spec.kind not in ("json", "text") or not isinstance(raw, str):
        return raw
    if spec.kind == "text":
        return raw
    return None if raw.strip() == "" else json.loads(raw)


class FilterChainBuilder:
    """Notebook widget: add/remove/reorder ops, edit typed parameters, preview a region, apply."""

    def __init__(
        self,
        source: Any,
        *,
        chain: list[dict[str, Any]] | str | None = None,
        on_apply: ApplyCallback | None = None,
        region: tuple[slice, slice] | None = None,
        debounce_s: float = 0.3,
    ) -> None:
        self.data, self.version = _source(source)
        has_band, ndim = split_dims(self.data.dims)
        self.model = ChainModel(chain, n_bands=self.data.shape[0] if has_band else 1, ndim=ndim)
        self.region = region or default_region(self.data.shape)
        self.on_apply = on_apply or default_on_apply(self.version)
        self.debounce_s = debounce_s
        self.result: Any = None
        self._listeners: list[Callable[[list[dict[str, Any]]], Any]] = []
        self._timer: threading.Timer | None = None
        self._build()
        self._rebuild_ops()
        self.refresh_preview()

    # --- view construction -------------------------------------------------------------------

    def _build(self) -> None:
        self.op_picker = w.Dropdown(options=self.model.op_names(), description="op")
        add = w.Button(description="add", icon="plus")
        add.on_click(lambda _: self.add(self.op_picker.value))
        self.ops_box = w.VBox()
        self.chain_text = w.Textarea(layout=w.Layout(width="100%", height="8em"), description="chain")
        load = w.Button(description="load JSON", tooltip="replace the chain by the JSON above")
        load.on_click(lambda _: self._guard(lambda: self.model.load(self.chain_text.value), structural=True))
        self.status = w.HTML()
        self.preview = w.Image(format="png")
        self.apply_button = w.Button(description="apply", button_style="primary", icon="play")
        self.apply_button.on_click(
            lambda _: threading.Thread(target=self._apply_quietly, daemon=True).start()
        )
        self.progress = w.IntProgress(min=0, max=1, value=0, description="apply")
        self.widget = w.HBox(
            [
                w.VBox([w.HBox([self.op_picker, add]), self.ops_box, self.chain_text, load, self.status]),
                w.VBox([self.preview, w.HBox([self.apply_button, self.progress])]),
            ]
        )

    def _op_row(self, index: int, op: dict[str, Any]) -> w.Widget:
        buttons = []
        for icon, action in (("arrow-up", -1), ("arrow-down", 1)):
            b = w.Button(icon=icon, layout=w.Layout(width="2.5em"))
            b.on_click(lambda _, a=action: self.move(index, index + a))
            buttons.append(b)
        remove = w.Button(icon="trash", layout=w.Layout(width="2.5em"), button_style="danger")
        remove.on_click(lambda _: self.remove(index))
        controls = []
        for spec in param_specs(op["op"]):
            control = _control(spec, op.get(spec.name))
            control.observe(lambda ch, s=spec: self.set_param(index, s, ch["new"]), names="value")
            controls.append(control)
        header = w.HBox([w.HTML(f"<b>{index + 1}. {op['op']}</b>"), *buttons, remove])
        return w.VBox([header, *controls], layout=w.Layout(border="1px solid #ccc", padding="4px"))

    def _rebuild_ops(self) -> None:
        self.ops_box.children = [self._op_row(i, op) for i, op in enumerate(self.model.ops)]
        self.chain_text.value = json.dumps(self.model.to_chain(), indent=1)

    # --- actions (also usable from code) -------------------------------------------------------

    def _guard(self, action: Callable[[], Any], *, structural: bool = False) -> None:
        """Run a model edit; show a coded error instead of raising, then refresh the view."""
        try:
            action()
        except (ImagelibError, ValueError) as exc:
            code = getattr(exc, "code", "PARAM_INVALID")
            self.status.value = f"<span style='color:#b00'>{code}: {exc}</span>"
            return
        self.status.value = ""
        if structural:
            self._rebuild_ops()
        else:
            self.chain_text.value = json.dumps(self.model.to_chain(), indent=1)
        for listener in self._listeners:
            listener(self.model.to_chain())
        self.schedule_preview()

    def on_change(self, callback: Callable[[list[dict[str, Any]]], Any]) -> None:
        """Call ``callback(chain)`` after every accepted edit (a linked DeepZoomViewer uses this)."""
        self._listeners.append(callback)

    def add(self, op_name: str) -> None:
        """Append an op with its default parameters."""
        self._guard(lambda: self.model.add(op_name), structural=True)

    def remove(self, index: int) -> None:
        """Remove the op at ``index``."""
        self._guard(lambda: self.model.remove(index), structural=True)

    def move(self, index: int, new_index: int) -> None:
        """Move the op at ``index`` to ``new_index``."""
        self._guard(lambda: self.model.move(index, new_index), structural=True)

    def set_param(self, index: int, spec: ParamSpec, raw: Any) -> None:
        """Set a parameter from a control's raw value."""
        self._guard(lambda: self.model.set_param(index, spec.name, _parse(spec, raw)))

    def schedule_preview(self) -> None:
        """Refresh the preview after ``debounce_s`` without further edits (immediately when 0)."""
        if self._timer is not None:
            self._timer.cancel()
        if self.debounce_s <= 0:
            self.refresh_preview()
            return
        self._timer = threading.Timer(self.debounce_s, self.refresh_preview)
        self._timer.daemon = True
        self._timer.start()

    def refresh_preview(self) -> None:
        """Render the preview region after the current chain."""
        try:
            result = region_result(self.data, self.model.to_chain(), self.region)
            self.preview.value = png_bytes(to_display(result, tuple(self.data.dims)))
        except ImagelibError as exc:
            self.status.value = f"<span style='color:#b00'>{exc.code}: {exc}</span>"

    def apply(self) -> Any:
        """Call ``on_apply(chain)`` with progress shown; returns (and keeps) its result."""
        self.progress.value, self.progress.bar_style = 0, "info"
        self.apply_button.disabled = True
        try:
            self.result = self.on_apply(self.model.to_chain())
        except Exception as exc:
            self.progress.bar_style = "danger"
            self.status.value = (
                f"<span style='color:#b00'>{getattr(exc, 'code', type(exc).__name__)}: {exc}</span>"
            )
            raise
        finally:
            self.apply_button.disabled = False
        self.progress.value, self.progress.bar_style = 1, "success"
        self.status.value = f"applied → <code>{self.result}</code>"
        return self.result

    def _apply_quietly(self) -> None:
        """The button's background run: ``apply`` has already shown any error in the status line."""
        with contextlib.suppress(Exception):
            self.apply()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
