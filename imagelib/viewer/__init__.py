"""The Panel app (a face): dataset browser, deep-zoom view, chain/style controls, histogram, lineage and
share links; ``imagelib viewer`` serves it with its own tile routes (see :mod:`imagelib.viewer.serve`)."""

from __future__ import annotations

from imagelib.viewer.state import ViewState, from_params, from_query

__all__ = ["ViewState", "from_params", "from_query"]
