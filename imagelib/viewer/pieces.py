"""The app's data pieces, framework-light so tests call them without a browser: the dataset browser's
search, a version's histogram and its lineage graph (plain data, then HoloViews elements)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

import imagelib
from imagelib.context import Library, current
from imagelib.errors import UsageError

#: the histogram reads the first pyramid level no larger than this (cheap, and the shape of the
#: distribution survives the downsampling)
HIST_SIDE = 512
BINS = 64


def parse_bbox(text: str) -> tuple[float, float, float, float] | None:
    """``"west,south,east,north"`` (EPSG:4326) → a bbox; '' → None; anything else is a coded error."""
    if not text.strip():
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not values[0] <= values[2] or not values[1] <= values[3]:
        raise UsageError("bbox is west,south,east,north in degrees", field="bbox", found=text[:64])
    return values  # type: ignore[return-value]


def parse_time(text: str, name: str) -> datetime | None:
    """An ISO date/time or '' (open end); a coded error otherwise."""
    if not text.strip():
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{name} is an ISO date such as 2024-05-01", field=name, found=text[:32]) from None


def find(
    namespace: str | None = None,
    dataset: str | None = None,
    dtype: str | None = None,
    start: str = "",
    end: str = "",
    bbox: str = "",
    *,
    lib: Library | None = None,
) -> list[dict[str, Any]]:
    """Versions matching the browser's filters, through :func:`imagelib.search`, newest first."""
    time = (parse_time(start, "start"), parse_time(end, "end"))
    rows = imagelib.search(
        bbox=parse_bbox(bbox),
        time=time if any(time) else None,
        namespace=namespace or None,
        dtype=dtype or None,
        lib=lib,
    )
    member = current(lib).catalog.memberships([r["version"] for r in rows])
    for row in rows:
        row["datasets"] = member.get(row["version"], [])
    if dataset:  # a dataset name may repeat across namespaces: match within the chosen one
        rows = [
            r
            for r in rows
            if any(
                m.split("/", 1)[1] == dataset and (not namespace or m.startswith(namespace + "/"))
                for m in r["datasets"]
            )
        ]
    return sorted(rows, key=lambda r: (r.get("created_at") or "", r["version"]), reverse=True)


def label(row: dict[str, Any]) -> str:
    """One line naming a version in the browser's list."""
    shape = "×".join(str(s) for s in row.get("shape") or ())
    where = ", ".join(row.get("datasets") or []) or "(no dataset)"
    return f"{where} · {row['version'][:12]} · {row.get('dtype')} {shape}"


def choices(*, lib: Library | None = None) -> dict[str, list[str]]:
    """The browser's menus: namespaces, dataset names and dtypes in the catalog, sorted."""
    catalog = current(lib).catalog
    sets = catalog.datasets()
    dtypes = {r["dtype"] for r in catalog.search() if r.get("dtype")}
    return {
        "namespace": sorted({d["namespace"] for d in sets}),
        "dataset": sorted({d["dataset"] for d in sets}),
        "dtype": sorted(dtypes),
    }


def histogram(version: str, *, lib: Library | None = None) -> dict[str, Any]:
    """Per-band counts over ``BINS`` bins of a coarse level (valid pixels only): edges, counts, level."""
    from imagelib.stored import open_version

    lib = current(lib)
    full = open_version(version, 0, lib=lib)
    levels = int(full.attrs.get("levels") or 1)
    level, arr = 0, full
    for k in range(levels):
        arr = open_version(version, k, lib=lib)
        level = k
        if max(arr.sizes.get("y", 1), arr.sizes.get("x", 1)) <= HIST_SIDE:
            break
    if "z" in arr.dims:  # a volume: its middle slice
        arr = arr.isel(z=arr.sizes["z"] // 2)
    data = np.asarray(arr.values, np.float64)
    data = data.reshape(-1, *data.shape[-2:]) if data.ndim > 2 else data[None]
    valid = np.isfinite(data)
    nodata = full.attrs.get("nodata")
    if isinstance(nodata, int | float) and not np.isnan(nodata):
        valid &= data != nodata
    values = data[valid]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1, BINS + 1)
    counts = [np.histogram(band[ok], edges)[0].tolist() for band, ok in zip(data, valid, strict=True)]
    return {"edges": edges.tolist(), "counts": counts, "level": level}


def holoviews_bokeh() -> Any:
    """HoloViews with its Bokeh backend loaded (options need a plotting extension)."""
    import holoviews
    import holoviews.plotting.bokeh  # registers the backend the options below target

    return holoviews


def histogram_plot(hist: dict[str, Any]) -> Any:
    """A HoloViews overlay of the per-band histograms."""
    hv = holoviews_bokeh()

    colors = ("#d62728", "#2ca02c", "#1f77b4") if len(hist["counts"]) == 3 else ("#777777",) * 8
    edges = np.asarray(hist["edges"])
    plots = [
        hv.Histogram((edges, np.asarray(c)), label=f"band {i + 1}").opts(
            color=colors[i % len(colors)], alpha=0.5, line_width=0
        )
        for i, c in enumerate(hist["counts"][:8])
    ]
    return hv.Overlay(plots).opts(
        title=f"histogram (level {hist['level']})", height=220, responsive=True, show_legend=len(plots) > 1
    )


def lineage_graph(version: str, *, lib: Library | None = None) -> dict[str, Any]:
    """Nodes (version, column: -depth for ancestors, +depth for descendants, row) and edges of a version's
    lineage, laid out left (ancestors) to right (descendants)."""
    info = imagelib.lineage(version, lib=lib)
    depth = {version: 0}
    for side, sign in (("ancestors", -1), ("descendants", 1)):
        for entry in info[side]:
            near = entry["child"] if sign < 0 else entry["parent"]
            depth[entry["version"]] = depth.get(near, 0) + sign
    rows: dict[int, int] = {}
    nodes = []
    for node, col in depth.items():
        nodes.append({"version": node, "x": float(col), "y": float(rows.get(col, 0))})
        rows[col] = rows.get(col, 0) + 1
    edges = [
        {"parent": e["parent"], "child": e["child"], "operation": str(e["operation"])[:80]}
        for side in ("ancestors", "descendants")
        for e in info[side]
    ]
    return {"version": version, "nodes": nodes, "edges": edges}


def lineage_plot(graph: dict[str, Any]) -> tuple[Any, Any]:
    """(HoloViews overlay of edges and nodes, the nodes element whose tap selection opens a version)."""
    hv = holoviews_bokeh()

    where = {n["version"]: (n["x"], n["y"]) for n in graph["nodes"]}
    segments = hv.Segments(
        [(*where[e["parent"]], *where[e["child"]]) for e in graph["edges"]], ["x0", "y0", "x1", "y1"]
    ).opts(color="#888888")
    points = hv.Points(
        [(n["x"], n["y"], n["version"][:12], int(n["version"] == graph["version"])) for n in graph["nodes"]],
        ["x", "y"],
        ["name", "current"],
    ).opts(
        size=16,
        color=hv.dim("current").categorize({1: "#ff7f0e", 0: "#1f77b4"}),
        tools=["tap", "hover"],
        nonselection_alpha=0.6,
        show_legend=False,
    )
    labels = hv.Labels(points, ["x", "y"], "name").opts(yoffset=0.3, text_font_size="8pt")
    xs = [n["x"] for n in graph["nodes"]]
    ys = [n["y"] for n in graph["nodes"]]
    plot = (segments * points * labels).opts(
        title="lineage (click a node to open it)",
        height=220,
        responsive=True,
        xaxis=None,
        yaxis=None,
        xlim=(min(xs) - 0.7, max(xs) + 0.7),
        ylim=(min(ys) - 0.7, max(ys) + 0.9),
    )
    return plot, points
