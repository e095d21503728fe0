"""Chain validation, canonical JSON and the JSON Schema generated from the op models."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from imagelib.errors import ImagelibError
from imagelib.filters.base import Op
from imagelib.filters.registry import REGISTRY

MAX_CHAIN_LENGTH = 64
ChainLike = list[dict[str, Any]] | list[Op] | str


def chain_schema() -> dict[str, Any]:
    """JSON Schema of a chain: an array of ops, a discriminated union on ``op``."""
    union = Annotated[Union[tuple(REGISTRY.values())], Field(discriminator="op")]  # noqa: UP007 (dynamic)
    schema = TypeAdapter(list[union]).json_schema()
    schema["title"] = "imagelib filter chain"
    return schema


def _chain_error(message: str, **kw: Any) -> ImagelibError:
    return ImagelibError(message, code="CHAIN_INVALID", **kw)


def _as_list(chain: ChainLike) -> list[Any]:
    """The chain as a Python list (a JSON string is parsed first)."""
    if isinstance(chain, str):
        try:
            chain = json.loads(chain)
        except json.JSONDecodeError as exc:
            raise _chain_error(f"chain is not valid JSON: {exc.msg}", field="chain") from None
    if not isinstance(chain, list | tuple):
        raise _chain_error("a chain is a JSON array of ops", field="chain", found=type(chain).__name__)
    if len(chain) > MAX_CHAIN_LENGTH:
        raise _chain_error(f"a chain has at most {MAX_CHAIN_LENGTH} ops", field="chain", found=len(chain))
    return list(chain)


def _from_pydantic(exc: ValidationError, index: int) -> ImagelibError:
    """The first pydantic error as a coded ``ImagelibError``."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    code = "EXPR_INVALID" if err["type"] == "expr_invalid" else "PARAM_INVALID"
    found = err.get("input")
    found = found if isinstance(found, int | float | str | bool | type(None)) else None
    return ImagelibError(
        f"{loc or 'op'}: {err['msg']}",
        code=code,
        field=f"chain[{index}]" + (f".{loc}" if loc else ""),
        found=found,
    )


def parse_op(item: Any, index: int) -> Op:
    """One chain item (a dict with ``op``, or an op model) as a validated op model."""
    if isinstance(item, Op):
        return item
    if not isinstance(item, dict) or not isinstance(item.get("op"), str):
        raise _chain_error("each chain item is an object with an 'op' name", field=f"chain[{index}]")
    cls = REGISTRY.get(item["op"])
    if cls is None:
        raise ImagelibError(
            f"unknown op {item['op']!r}",
            code="OP_UNKNOWN",
            field=f"chain[{index}].op",
            expected=sorted(REGISTRY),
            found=item["op"],
        )
    try:
        return cls.model_validate(item)
    except ValidationError as exc:
        raise _from_pydantic(exc, index) from None


def check_ops(ops: list[Op], *, n_bands: int | None = None, ndim: int | None = None) -> None:
    """Check band numbers and per-axis parameters against the data, following band count changes."""
    for index, op in enumerate(ops):
        op.check(n_bands, ndim, index)
        n_bands = None if n_bands is None else op.out_bands(n_bands)


def validate_chain(chain: ChainLike, *, n_bands: int | None = None, ndim: int | None = None) -> list[Op]:
    """Validated op models for ``chain``; coded ``ImagelibError`` (CHAIN_INVALID, OP_UNKNOWN, …) if not."""
    ops = [parse_op(item, index) for index, item in enumerate(_as_list(chain))]
    check_ops(ops, n_bands=n_bands, ndim=ndim)
    return ops


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def canonical_chain(chain: ChainLike) -> list[dict[str, Any]]:
    """The chain with defaults filled, values normalised (1 → 1.0 for floats) and keys sorted."""
    try:  # a tile server sees the same few chains on every request: validate each text once
        key = chain if isinstance(chain, str) else json.dumps(chain, sort_keys=True)
    except (TypeError, ValueError):  # op objects, NumPy scalars: not JSON, validated afresh
        return _canonical(chain)
    return json.loads(_canonical_text(key))  # fresh lists and dicts: callers may change them


def _canonical(chain: ChainLike) -> list[dict[str, Any]]:
    return [_sorted(op.model_dump(mode="json")) for op in validate_chain(chain)]


@functools.lru_cache(maxsize=256)
def _canonical_text(chain: str) -> str:
    """Canonical JSON of a chain given as JSON text (memoised; errors are raised, never cached)."""
    return canonical_text(_canonical(chain))


def load_chain(chain: ChainLike | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """The one chain loader: a list, JSON text or a JSON file path → the validated canonical chain.

    Text whose first character is ``[`` or ``{`` is JSON; other text and path objects name a file. No
    chain (``None``) is the empty chain. Every failure is a coded error (CHAIN_INVALID, OP_UNKNOWN, …)."""
    if chain is None:
        return []
    if isinstance(chain, os.PathLike) or (
        isinstance(chain, str) and not chain.lstrip().startswith(("[", "{"))
    ):
        path = Path(os.fspath(chain))
        try:
            chain = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise _chain_error(
                f"chain {str(path)!r} is neither JSON text nor a readable file ({exc.__class__.__name__})",
                field="chain",
            ) from None
    return canonical_chain(chain)


def chain_json(chain: ChainLike) -> str:
    """Canonical compact JSON of the chain: equal chains give equal strings (and version IDs)."""
    return canonical_text(canonical_chain(chain))


def canonical_text(canonical: list[dict[str, Any]]) -> str:
    """The compact JSON :func:`chain_json` gives, for a chain that is canonical already (no revalidation)."""
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"))
