"""The FilterChainBuilder's model: a plain list of ops with add/remove/move/set_param, no ipywidgets.

Parameter controls are described by :class:`ParamSpec`, generated from each op model's JSON Schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from imagelib.errors import ImagelibError
from imagelib.filters import REGISTRY, canonical_chain, chain_json, validate_chain
from imagelib.filters.schema import parse_op


@dataclass(frozen=True)
class ParamSpec:
    """One op parameter as a UI control: ``kind`` is float|int|bool|enum|text|json."""

    name: str
    kind: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: list[Any] = field(default_factory=list)
    description: str = ""
    required: bool = False


def _kind(prop: dict[str, Any]) -> str:
    """The control kind for a JSON Schema property; anything structured is edited as JSON text."""
    if "enum" in prop or "const" in prop:
        return "enum"
    kinds = {"number": "float", "integer": "int", "boolean": "bool", "string": "text"}
    return kinds.get(prop.get("type", ""), "json")


def param_specs(op_name: str) -> list[ParamSpec]:
    """Controls for every parameter of op ``op_name`` (all but ``op``), from its JSON Schema."""
    schema = REGISTRY[op_name].model_json_schema()
    required = set(schema.get("required", []))
    specs = []
    for name, prop in schema["properties"].items():
        if name == "op":
            continue
        specs.append(
            ParamSpec(
                name=name,
                kind=_kind(prop),
                default=prop.get("default"),
                minimum=prop.get("minimum", prop.get("exclusiveMinimum")),
                maximum=prop.get("maximum", prop.get("exclusiveMaximum")),
                choices=list(prop.get("enum", [])),
                description=prop.get("description", ""),
                required=name in required,
            )
        )
    return specs


def new_op(op_name: str) -> dict[str, Any]:
    """A valid op dict: the schema's first example, else just its defaults."""
    if op_name not in REGISTRY:
        parse_op({"op": op_name}, 0)  # raises the coded OP_UNKNOWN error
    examples = REGISTRY[op_name].model_json_schema().get("examples") or [{"op": op_name}]
    return canonical_chain([examples[0]])[0]


class ChainModel:
    """An editable filter chain; every mutation is validated, a failed one leaves the chain unchanged."""

    def __init__(
        self,
        chain: list[dict[str, Any]] | str | None = None,
        *,
        n_bands: int | None = None,
        ndim: int | None = None,
    ) -> None:
        self.n_bands, self.ndim = n_bands, ndim  # the data's layout, when known: edits are checked against it
        self._ops: list[dict[str, Any]] = []
        self._commit(canonical_chain(chain) if chain else [])

    def _commit(self, ops: list[dict[str, Any]]) -> None:
        """Adopt ``ops`` only if the whole chain is valid for the data."""
        validate_chain(ops, n_bands=self.n_bands, ndim=self.ndim)
        self._ops = ops

    def __len__(self) -> int:
        return len(self._ops)

    @property
    def ops(self) -> list[dict[str, Any]]:
        """A copy of the current op dicts (canonical, defaults filled)."""
        return json.loads(json.dumps(self._ops))

    @staticmethod
    def op_names() -> list[str]:
        """Names of the ops that can be added."""
        return sorted(REGISTRY)

    def add(self, op_name: str, index: int | None = None) -> int:
        """Insert a new ``op_name`` op at ``index`` (default: the end); returns its position."""
        index = len(self._ops) if index is None else max(0, min(index, len(self._ops)))
        self._commit([*self._ops[:index], new_op(op_name), *self._ops[index:]])
        return index

    def remove(self, index: int) -> None:
        """Remove the op at ``index``."""
        self._commit(self._ops[:index] + self._ops[index + 1 :])

    def move(self, index: int, new_index: int) -> None:
        """Move the op at ``index`` to ``new_index`` (clamped to the chain)."""
        ops = self.ops
        op = ops.pop(index)
        ops.insert(max(0, min(new_index, len(ops))), op)
        self._commit(ops)

    def set_param(self, index: int, name: str, value: Any) -> None:
        """Set one parameter; ``value`` None removes it (back to its default). Raises coded errors."""
        candidate = {k: v for k, v in self._ops[index].items() if k != name}
        if value is not None:
            candidate[name] = value
        try:
            updated = canonical_chain([candidate])[0]
        except ImagelibError as exc:
            exc.field = str(exc.field).replace("chain[0]", f"chain[{index}]", 1)
            raise
        self._commit([*self._ops[:index], updated, *self._ops[index + 1 :]])

    def load(self, chain: list[dict[str, Any]] | str) -> None:
        """Replace the whole chain (validated first)."""
        self._commit(canonical_chain(chain))

    def to_chain(self) -> list[dict[str, Any]]:
        """The chain as canonical op dicts, ready for ``apply_chain`` / ``imagelib.apply``."""
        return self.ops

    def to_json(self) -> str:
        """The canonical compact chain JSON (the string version IDs are derived from)."""
        return chain_json(self._ops)
