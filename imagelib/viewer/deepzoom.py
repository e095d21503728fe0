"""The app's deep-zoom view: OpenSeadragon (vendored, served by the app itself) over the DZI levels of a
version, as a Panel ``JSComponent`` whose viewport (``x``, ``y``, ``zoom``) syncs both ways with Python,
so the share link follows the user's pans and zooms and a restored link sets the view."""

from __future__ import annotations

import param
from panel.custom import JSComponent

_ESM = r"""
function loadOSD(src) {
  if (window.OpenSeadragon) return Promise.resolve();
  if (!window.__imagelibOSD) {
    window.__imagelibOSD = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src; s.onload = resolve; s.onerror = () => reject(new Error("cannot load " + src));
      document.head.appendChild(s);
    });
  }
  return window.__imagelibOSD;
}
const round = (v) => Math.round(v * 1e6) / 1e6;

export function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "imagelib-osd";
  box.style.cssText = "position:relative;width:100%;background:#1b1b1b";
  box.style.height = model.view_height + "px";
  const note = document.createElement("div");
  note.className = "imagelib-osd-error";
  note.style.cssText = "position:absolute;top:8px;left:8px;z-index:10;color:#ffb4b4;font:14px sans-serif";
  box.appendChild(note);
  el.appendChild(box);
  let viewer = null;
  let drew = false;  // this image has drawn tiles (reset on each open)

  function push() {
    if (!viewer || !viewer.world.getItemCount()) return;
    const c = viewer.viewport.getCenter(true), z = viewer.viewport.getZoom(true);
    const x = round(c.x), y = round(c.y), zoom = round(z);
    if (x !== model.x || y !== model.y || zoom !== model.zoom) {
      model.x = x; model.y = y; model.zoom = zoom;
    }
  }
  function open() {
    if (!viewer) return;
    note.textContent = model.message;
    if (!model.descriptor) { viewer.close(); return; }
    drew = false;
    viewer.open(model.descriptor);
  }
  loadOSD(model.script_url).then(() => {
    viewer = OpenSeadragon({
      element: box, drawer: "canvas", showNavigationControl: false, prefixUrl: "",
      animationTime: 0.3, visibilityRatio: 0.5, preserveImageSizeOnResize: true,
    });
    window.imagelibViewer = viewer;  // tests and the benchmark read the viewport and tiles
    viewer.addHandler("open", () => {
      if (model.zoom) {
        viewer.viewport.zoomTo(model.zoom, null, true);
        viewer.viewport.panTo(new OpenSeadragon.Point(model.x, model.y), true);
      }
      push();
    });
    viewer.addHandler("open-failed", (e) => {
      fetch(model.descriptor).then((r) => r.json()).then((body) => {
        const err = body.error || {};
        note.textContent = "[" + (err.code || "ERROR") + "] " + (err.message || e.message);
      }).catch(() => { note.textContent = "[TILE_ERROR] " + e.message; });
    });
    viewer.addHandler("tiled-image-drawn", (e) => {
      if (!e.tiles || !e.tiles.length || drew) return;
      drew = true;
      const seen = performance.getEntriesByName("imagelib-first-tile").length;
      if (!seen) performance.mark("imagelib-first-tile");
      model.drawn = model.drawn + 1;
    });
    viewer.addHandler("animation-finish", push);
    open();
  }).catch((err) => { note.textContent = "[VIEWER_UNAVAILABLE] " + err.message; });

  note.textContent = model.message;
  model.on("message", () => { note.textContent = model.message; });
  model.on("descriptor", open);
  model.on("zoom", () => {
    if (!viewer || !model.zoom) return;
    const c = viewer.viewport.getCenter(), z = viewer.viewport.getZoom();
    if (round(c.x) === model.x && round(c.y) === model.y && round(z) === model.zoom) return;
    viewer.viewport.zoomTo(model.zoom, null, true);
    viewer.viewport.panTo(new OpenSeadragon.Point(model.x, model.y), true);
  });
}
"""


class DeepZoom(JSComponent):
    """OpenSeadragon over ``descriptor`` (a ``.dzi`` URL carrying the tile query); the viewport syncs."""

    descriptor = param.String(default="", doc="the .dzi URL of the view ('' shows nothing)")
    script_url = param.String(default="viewer-static/openseadragon.min.js", doc="vendored OpenSeadragon")
    x = param.Number(default=None, allow_None=True, doc="viewport centre x (image widths)")
    y = param.Number(default=None, allow_None=True, doc="viewport centre y (image widths)")
    zoom = param.Number(default=None, allow_None=True, doc="OpenSeadragon zoom (1 = whole width)")
    message = param.String(default="", doc="a coded error shown over the view ('' hides it)")
    drawn = param.Integer(default=0, doc="how many opened images have drawn their first tiles")
    view_height = param.Integer(default=520, doc="pixel height of the view")

    _esm = _ESM
