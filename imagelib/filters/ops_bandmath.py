"""``band_math``: an arithmetic expression over bands, parsed with :mod:`ast` into a whitelisted tree.

Nothing is ever passed to ``eval``/``exec``: the expression is parsed, every node is checked against a
small whitelist (numbers, ``b1``…``bN``, ``+ - * / ** %``, unary ``±``, and a few named functions), and
the checked tree is interpreted node by node with the array module's functions.
"""

from __future__ import annotations

import ast
import contextlib
import math
import operator
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from imagelib.errors import ImagelibError
from imagelib.filters.base import Op, Scope

MAX_EXPR_LENGTH = 1000
MAX_NODES = 200
_BAND = re.compile(r"b([1-9][0-9]{0,3})")
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
#: name -> (arity, attribute of the array module)
FUNCTIONS: dict[str, tuple[int, str]] = {
    "sqrt": (1, "sqrt"),
    "abs": (1, "abs"),
    "log": (1, "log"),
    "log10": (1, "log10"),
    "exp": (1, "exp"),
    "minimum": (2, "minimum"),
    "maximum": (2, "maximum"),
}


def _reject(message: str) -> PydanticCustomError:
    return PydanticCustomError("expr_invalid", message)


def _check(node: ast.AST) -> None:
    """Raise unless ``node`` (recursively) uses only whitelisted constructs."""
    if isinstance(node, ast.Expression):
        return _check(node.body)
    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float):
            raise _reject(f"only numeric constants are allowed, not {type(node.value).__name__}")
        try:
            finite = math.isfinite(float(node.value))
        except OverflowError:
            finite = False
        if not finite:
            raise _reject("numeric constants must be finite floats")
        return None
    if isinstance(node, ast.Name):
        if not _BAND.fullmatch(node.id):
            raise _reject(f"unknown name {node.id!r}: use b1, b2, … for bands")
        return None
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check(node.left)
        return _check(node.right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(node.operand)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
        arity = FUNCTIONS[node.func.id][0]
        if node.keywords or len(node.args) != arity:
            raise _reject(f"{node.func.id}() takes exactly {arity} positional argument(s)")
        for arg in node.args:
            _check(arg)
        return None
    raise _reject(f"{type(node).__name__} is not allowed in band_math (arithmetic on b1…bN only)")


def parse_expr(expr: str) -> ast.Expression:
    """Parse and whitelist-check a band_math expression; raises ``PydanticCustomError('expr_invalid')``."""
    if len(expr) > MAX_EXPR_LENGTH:
        raise _reject(f"expression longer than {MAX_EXPR_LENGTH} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise _reject(f"syntax error: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):  # absurd nesting, NUL bytes
        raise _reject("expression cannot be parsed") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise _reject(f"expression has more than {MAX_NODES} nodes")
    _check(tree)
    return tree


def band_numbers(tree: ast.AST) -> list[int]:
    """Sorted 1-based band numbers referenced by a parsed expression."""
    return sorted(
        {int(n.id[1:]) for n in ast.walk(tree) if isinstance(n, ast.Name) and _BAND.fullmatch(n.id)}
    )


def _evaluate(node: ast.AST, bands: Any, xp: ModuleType) -> Any:
    """Interpret a checked tree; ``bands`` is the ``(band, ...)`` array."""
    if isinstance(node, ast.Constant):
        # floats, never ints: 9**9**9 must overflow at once, not run for hours as big-int arithmetic
        return float(node.value)
    if isinstance(node, ast.Name):
        return bands[int(node.id[1:]) - 1]
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_evaluate(node.left, bands, xp), _evaluate(node.right, bands, xp))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, bands, xp))
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)  # guaranteed by _check
    fn = getattr(xp, FUNCTIONS[node.func.id][1])
    return fn(*(_evaluate(a, bands, xp) for a in node.args))


class BandMath(Op):
    """One output band from an expression over bands ``b1``…``bN``, e.g. ``(b4-b3)/(b4+b3)``.

    Division by zero gives ``inf``/``nan`` like NumPy (no warning).
    """

    model_config = ConfigDict(json_schema_extra={"examples": [{"op": "band_math", "expr": "b1"}]})
    scope: ClassVar[Scope] = "band"
    changes_bands: ClassVar[bool] = True
    op: Literal["band_math"] = "band_math"
    expr: str = Field(..., max_length=MAX_EXPR_LENGTH, description="arithmetic over b1…bN")

    @field_validator("expr")
    @classmethod
    def _whitelisted(cls, expr: str) -> str:
        parse_expr(expr)
        return expr

    def check(self, n_bands: int | None, ndim: int | None, index: int) -> None:
        """Every referenced band must exist."""
        bad = [b for b in band_numbers(parse_expr(self.expr)) if n_bands is not None and b > n_bands]
        if bad:
            raise ImagelibError(
                f"band_math refers to band(s) {bad} but the data has {n_bands}",
                code="BAND_INDEX_INVALID",
                field=f"chain[{index}].expr",
                expected=f"b1..b{n_bands}",
                found=[f"b{b}" for b in bad],
            )

    def out_bands(self, n_bands: int) -> int:
        """Always one band."""
        return 1

    def __call__(self, array: Any, xp: ModuleType) -> Any:
        tree = parse_expr(self.expr)
        try:
            with _quiet(xp):
                out = _evaluate(tree.body, array, xp)
        except (OverflowError, ZeroDivisionError) as exc:  # constant-only sub-expressions, e.g. 1/0
            raise ImagelibError(
                f"band_math: {exc}", code="EXPR_INVALID", field="expr", found=self.expr
            ) from None
        return xp.broadcast_to(xp.asarray(out, dtype=array.dtype), array.shape[1:])[None].copy()


def _quiet(xp: ModuleType) -> Any:
    """Silence NumPy's divide/invalid/overflow warnings (CuPy has no errstate)."""
    return (
        xp.errstate(divide="ignore", invalid="ignore", over="ignore")
        if hasattr(xp, "errstate")
        else contextlib.nullcontext()
    )
