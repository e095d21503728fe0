"""Filter chains: JSON lists of ops, array in → array out (NumPy/CuPy/Dask/xarray).

Pure module: knows nothing of storage, catalog or versioning (DESIGN.md, "Dependency direction").
"""

from imagelib.filters.base import Op, OpRegistry
from imagelib.filters.chain import apply_chain, chain_halo
from imagelib.filters.registry import REGISTRY
from imagelib.filters.schema import canonical_chain, chain_json, chain_schema, load_chain, validate_chain

__all__ = [
    "REGISTRY",
    "Op",
    "OpRegistry",
    "apply_chain",
    "canonical_chain",
    "chain_halo",
    "chain_json",
    "chain_schema",
    "load_chain",
    "validate_chain",
]
