"""A short HTML summary of a stored version (version, shape, dtype, CRS, levels) and the ``.imagelib``
accessor of ``xarray.DataArray`` (registered by ``import imagelib.widgets``): ``arr.imagelib`` as a cell's
last line shows the summary, ``arr.imagelib.view()`` opens a :class:`DeepZoomViewer`.

An accessor rather than a DataArray subclass, so xarray's own ``_repr_html_`` of ``arr`` is untouched.
Light: imports neither ipywidgets nor ipyleaflet until ``view()`` is called.
"""

from __future__ import annotations

import html
from typing import Any

import xarray as xr


def _crs(attrs: dict[str, Any]) -> str:
    crs = attrs.get("crs")
    if crs:
        return str(crs)
    return "— (pixel space)" if not attrs.get("georeferenced") else "georeferenced, unnamed CRS"


def summary_rows(data: xr.DataArray) -> list[tuple[str, str]]:
    """``(label, value)`` rows of the summary."""
    a = data.attrs
    shape = " × ".join(f"{d} {n}" for d, n in zip(data.dims, data.shape, strict=True))
    rows = [
        ("version", str(a.get("version") or "— (not stored)")),
        ("name", str(a.get("name") or "")),
        ("shape", shape),
        ("dtype", str(data.dtype)),
        ("CRS", _crs(a)),
        ("levels", f"{a['levels']} (showing level {a.get('level', 0)})" if "levels" in a else "—"),
    ]
    if a.get("spacing"):
        rows.append(("spacing", ", ".join(f"{k} {v:g}" for k, v in a["spacing"].items() if v)))
    if a.get("bounds"):
        rows.append(("bounds", ", ".join(f"{v:g}" for v in a["bounds"])))
    return [(k, v) for k, v in rows if v]


def summary_html(data: xr.DataArray) -> str:
    """The summary as a small HTML table."""
    cells = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>"
        for k, v in summary_rows(data)
    )
    return (
        f"<table class='imagelib-summary'><caption style='text-align:left'>imagelib</caption>{cells}</table>"
    )


@xr.register_dataarray_accessor("imagelib")
class ImagelibAccessor:
    """``arr.imagelib``: the version summary (rich display) and ``view()``."""

    def __init__(self, data: xr.DataArray) -> None:
        self._data = data

    @property
    def version(self) -> str | None:
        """The version ID this array was opened from, if any."""
        return self._data.attrs.get("version")

    def _repr_html_(self) -> str:
        return summary_html(self._data)

    def __repr__(self) -> str:
        return "\n".join(f"{k:8} {v}" for k, v in summary_rows(self._data))

    def view(self, chain: Any = None, **options: Any) -> Any:
        """A DeepZoomViewer of this version (``options`` as DeepZoomViewer takes them)."""
        from imagelib.widgets.deepzoom import view

        return view(self._data, chain, **options)
