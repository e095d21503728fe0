"""Notebook widgets (ipywidgets). Faces layer: may use the library verbs, imported lazily."""

from imagelib.widgets.chain_model import ChainModel, ParamSpec, param_specs
from imagelib.widgets.filter_chain import FilterChainBuilder

__all__ = ["ChainModel", "FilterChainBuilder", "ParamSpec", "param_specs"]
