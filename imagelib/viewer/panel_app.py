"""``panel serve imagelib/viewer/panel_app.py --plugins imagelib.viewer.tiles``: the same app, built per
session by Panel's own server (the plugin adds the tile routes)."""

from __future__ import annotations

from imagelib.viewer.app import build

build().servable(title="imagelib viewer")
