"""Chain validation, coded errors, canonical JSON, generated schema, and band_math safety."""

from __future__ import annotations

import builtins
import hashlib
import json
from typing import Any

import numpy as np
import pytest

from imagelib.errors import ERROR_CODES, ImagelibError
from imagelib.filters import (
    REGISTRY,
    apply_chain,
    canonical_chain,
    chain_halo,
    chain_json,
    chain_schema,
    validate_chain,
)

IMAGE = np.random.default_rng(7).random((3, 16, 20)).astype(np.float32)


def code_of(fn: Any, *args: Any, **kwargs: Any) -> ImagelibError:
    with pytest.raises(ImagelibError) as err:
        fn(*args, **kwargs)
    assert err.value.code in ERROR_CODES, f"{err.value.code} is not a documented error code"
    return err.value


@pytest.mark.parametrize(
    ("chain", "code", "field"),
    [
        ({"op": "gaussian"}, "CHAIN_INVALID", "chain"),
        ("[{]", "CHAIN_INVALID", "chain"),
        ([42], "CHAIN_INVALID", "chain[0]"),
        ([{"sigma": 1}], "CHAIN_INVALID", "chain[0]"),
        ([{"op": "gaussian"}] * 65, "CHAIN_INVALID", "chain"),
        ([{"op": "gaussian"}, {"op": "sharpen_magic"}], "OP_UNKNOWN", "chain[1].op"),
        ([{"op": "gaussian", "sigma": "wide"}], "PARAM_INVALID", "chain[0].sigma"),
        ([{"op": "gaussian", "sigma": -2}], "PARAM_INVALID", "chain[0].sigma"),
        ([{"op": "gaussian", "radius": 3}], "PARAM_INVALID", "chain[0].radius"),
        ([{"op": "median", "size": 0}], "PARAM_INVALID", "chain[0].size"),
        ([{"op": "band_scale"}], "PARAM_INVALID", "chain[0].in_range"),
        ([{"op": "band_scale", "in_range": [3, 3]}], "PARAM_INVALID", "chain[0]"),
        ([{"op": "fft_bandpass", "low": 0.2, "high": 0.1}], "PARAM_INVALID", "chain[0]"),
        ([{"op": "fft_lowpass", "kind": "boxcar"}], "PARAM_INVALID", "chain[0].kind"),
        ([{"op": "richardson_lucy", "psf": {"type": "disk"}}], "PARAM_INVALID", "chain[0].psf"),
        (
            [{"op": "richardson_lucy", "psf": {"type": "array", "values": [[1, 2], [3]]}}],
            "PARAM_INVALID",
            None,
        ),
        (
            [{"op": "richardson_lucy", "psf": {"type": "gaussian", "sigma": 1}, "iterations": 0}],
            "PARAM_INVALID",
            None,
        ),
        ([{"op": "clip"}], "PARAM_INVALID", "chain[0]"),
    ],
)
def test_invalid_chains_give_coded_errors(chain: Any, code: str, field: str | None) -> None:
    err = code_of(validate_chain, chain)
    assert err.code == code
    if field is not None:
        assert err.field.startswith(field)
    json.dumps(err.to_dict())  # serialisable for CLI/HTTP reports


def test_band_numbers_checked_against_data() -> None:
    ok = [{"op": "band_scale", "in_range": [0, 1], "bands": [1, 3]}]
    validate_chain(ok, n_bands=3)
    err = code_of(validate_chain, [{"op": "clip", "max": 1, "bands": [4]}], n_bands=3)
    assert (err.code, err.field, err.found) == ("BAND_INDEX_INVALID", "chain[0].bands", [4])
    assert (
        code_of(validate_chain, [{"op": "band_math", "expr": "b1 + b5"}], n_bands=3).code
        == "BAND_INDEX_INVALID"
    )
    # band_math leaves one band: a later op may not select band 2
    chain = [{"op": "band_math", "expr": "b1 - b2"}, {"op": "clip", "min": 0, "bands": [2]}]
    assert code_of(validate_chain, chain, n_bands=3).field == "chain[1].bands"
    assert code_of(apply_chain, IMAGE, [{"op": "gamma", "bands": [9]}]).code == "BAND_INDEX_INVALID"


def test_per_axis_lists_checked_against_layout() -> None:
    err = code_of(apply_chain, IMAGE, [{"op": "gaussian", "sigma": [1, 2, 3]}])  # band,y,x: 2 spatial axes
    assert (err.code, err.field) == ("PARAM_INVALID", "chain[0].sigma")
    apply_chain(IMAGE, [{"op": "gaussian", "sigma": [1, 2, 3]}], dims=("z", "y", "x"))
    psf2d = {"type": "array", "values": [[0.0, 1.0], [1.0, 0.0]]}
    err = code_of(apply_chain, IMAGE, [{"op": "richardson_lucy", "psf": psf2d}], dims=("z", "y", "x"))
    assert err.code == "PARAM_INVALID"


def test_bad_layouts_are_coded() -> None:
    assert code_of(apply_chain, np.zeros(5), [{"op": "gaussian"}]).code == "DIMENSIONS_NOT_ALLOWED"
    assert code_of(apply_chain, IMAGE, [], dims=("y", "band", "x")).code == "DIMENSIONS_NOT_ALLOWED"


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('touch /tmp/pwned')",
        "b1.__class__.__base__.__subclasses__()",
        "(lambda: 1)()",
        "open('/etc/passwd')",
        "eval('1')",
        "np.sum(b1)",
        "b1[0]",
        "[b1 for b1 in ()]",
        "b1 if b1 else b2",
        "b1 < b2",
        "'text'",
        "x + 1",
        "b0 + 1",
        "sqrt(b1, out=b1)",
        "b1 = 2",
        "b1; b2",
        "1e999",
        "b1\x00",
        "-" * 100_000 + "b1",
        "(" * 300 + "b1" + ")" * 300,
        "b1 + " * 300 + "b1",
    ],
)
def test_band_math_never_runs_code(expr: str, monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda *a, **k: called.append(a[0]) or real_import(*a, **k))
    err = code_of(apply_chain, IMAGE, [{"op": "band_math", "expr": expr}])
    assert err.code in ("EXPR_INVALID", "PARAM_INVALID")
    assert "os" not in called


def test_band_math_constant_overflow_is_coded() -> None:
    assert code_of(apply_chain, IMAGE, [{"op": "band_math", "expr": "b1 + 9**9**9"}]).code == "EXPR_INVALID"
    assert code_of(apply_chain, IMAGE, [{"op": "band_math", "expr": "b1 + 1/0"}]).code == "EXPR_INVALID"


def test_canonical_form_is_stable() -> None:
    a = [
        {"sigma": 2, "op": "gaussian"},
        {"op": "richardson_lucy", "psf": {"sigma": 1, "type": "gaussian"}},
        {"op": "band_scale", "in_range": [0, 4095]},
    ]
    b = [
        {"op": "gaussian", "truncate": 4.0, "sigma": 2.0},
        {"iterations": 10, "psf": {"type": "gaussian", "sigma": 1.0}, "op": "richardson_lucy"},
        {"out_range": [0.0, 1.0], "clip": True, "in_range": [0.0, 4095.0], "op": "band_scale", "bands": None},
    ]
    assert chain_json(a) == chain_json(b) == chain_json(json.dumps(b))
    digest = [hashlib.sha256(chain_json(c).encode()).hexdigest() for c in (a, b)]
    assert digest[0] == digest[1]
    assert chain_json(a) != chain_json([{"op": "gaussian", "sigma": 2.5}, *a[1:]])
    canon = canonical_chain(a)
    assert canon[0] == {"op": "gaussian", "sigma": 2.0, "truncate": 4.0}
    assert all(list(d) == sorted(d) for d in canon)
    assert validate_chain(canon) == validate_chain(a)  # canonical form round-trips


def test_schema_is_a_discriminated_union_over_registry() -> None:
    schema = chain_schema()
    assert schema["type"] == "array"
    assert set(schema["items"]["discriminator"]["mapping"]) == set(REGISTRY)
    gaussian = schema["$defs"]["Gaussian"]
    assert gaussian["properties"]["sigma"]["default"] == 1.0
    assert schema["$defs"]["Median"]["additionalProperties"] is False
    json.dumps(schema)


def test_every_op_has_defaults_or_an_example() -> None:
    """The widget builds a new op from defaults or the model's schema example; each must validate."""
    for name, cls in REGISTRY.items():
        examples = cls.model_json_schema().get("examples", [{"op": name}])
        validate_chain(examples)


def test_chain_halo() -> None:
    chain = [{"op": "gaussian", "sigma": [1, 2]}, {"op": "median", "size": 5}, {"op": "clip", "max": 1}]
    assert chain_halo(chain, 2) == (4 + 2, 8 + 2)
    rl = [{"op": "richardson_lucy", "psf": {"type": "gaussian", "sigma": 1}, "iterations": 5}]
    assert chain_halo(rl, 2) == (5 * 6, 5 * 6)  # psf side 7 → 2·3 per iteration
    version_rl = [{"op": "richardson_lucy", "psf": {"type": "version", "id": "v1"}, "iterations": 2}]
    assert chain_halo(version_rl, 2, psf_resolver=lambda _: np.ones((5, 5)) / 25) == (8, 8)
    assert code_of(chain_halo, version_rl, 2).code == "PSF_UNRESOLVED"


def test_registry_is_explicit_and_open_to_third_party_ops() -> None:
    """The op registry is an object: a third-party op added to it validates, runs and enters the schema;
    a duplicate name is refused."""
    from typing import Literal

    from imagelib.filters import OpRegistry, chain_schema
    from imagelib.filters.base import Op

    class Negate(Op):
        op: Literal["negate_test"] = "negate_test"
        scope = "band"

        def __call__(self, array, xp):  # type: ignore[no-untyped-def]
            return -array

    REGISTRY.add(Negate)
    try:
        assert [type(o) for o in validate_chain([{"op": "negate_test"}])] == [Negate]
        assert "negate_test" in chain_schema()["items"]["discriminator"]["mapping"]
        np.testing.assert_array_equal(apply_chain(np.ones((4, 4)), [{"op": "negate_test"}]), -np.ones((4, 4)))
        with pytest.raises(ValueError):
            REGISTRY.add(Negate)
    finally:
        REGISTRY._ops.pop("negate_test")
    assert isinstance(REGISTRY, OpRegistry) and "gaussian" in REGISTRY and len(REGISTRY) == 15
