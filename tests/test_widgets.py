"""FilterChainBuilder: the chain model without a browser, and the ipywidgets view driven from code."""

from __future__ import annotations

import io
import json
import sys
import types
from typing import Any

import numpy as np
import pytest
import scipy.ndimage as ndi
import xarray as xr
from PIL import Image

from imagelib.errors import ImagelibError
from imagelib.filters import REGISTRY, apply_chain, chain_json
from imagelib.widgets import ChainModel, FilterChainBuilder, param_specs

RNG = np.random.default_rng(5)
DATA = xr.DataArray(
    ndi.gaussian_filter(RNG.random((3, 90, 100)), 2).astype(np.float32),
    dims=("band", "y", "x"),
    attrs={"version": "v-source"},
)


def test_model_add_remove_move_set_param() -> None:
    model = ChainModel()
    model.add("gaussian")
    model.add("median")
    model.add("band_scale", index=0)
    assert [op["op"] for op in model.ops] == ["band_scale", "gaussian", "median"]
    model.move(0, 2)
    assert [op["op"] for op in model.ops] == ["gaussian", "median", "band_scale"]
    model.set_param(0, "sigma", 2)
    model.set_param(1, "size", 5)
    model.remove(2)
    assert model.to_chain() == [
        {"op": "gaussian", "sigma": 2.0, "truncate": 4.0},
        {"op": "median", "size": 5},
    ]
    assert model.to_json() == chain_json([{"op": "gaussian", "sigma": 2}, {"op": "median", "size": 5}])
    model.set_param(0, "sigma", None)  # back to the default
    assert model.ops[0]["sigma"] == 1.0


def test_model_rejects_bad_edits_and_keeps_state() -> None:
    model = ChainModel([{"op": "gaussian"}, {"op": "median"}])
    before = model.ops
    with pytest.raises(ImagelibError) as err:
        model.set_param(1, "size", -3)
    assert (err.value.code, err.value.field) == ("PARAM_INVALID", "chain[1].size")
    with pytest.raises(ImagelibError) as err:
        model.set_param(0, "nonsense", 1)
    assert err.value.code == "PARAM_INVALID"
    with pytest.raises(ImagelibError) as err:
        model.add("no_such_op")
    assert err.value.code == "OP_UNKNOWN"
    assert model.ops == before


def test_model_checks_edits_against_the_data_layout() -> None:
    model = ChainModel(n_bands=3, ndim=2)
    model.add("gaussian")
    with pytest.raises(ImagelibError) as err:
        model.set_param(0, "sigma", [1, 2, 3])
    assert err.value.field == "chain[0].sigma"
    model.add("band_math")
    model.set_param(1, "expr", "b3 - b1")
    model.add("gamma")
    model.set_param(2, "bands", [1])
    with pytest.raises(ImagelibError) as err:
        model.set_param(2, "bands", [2])  # band_math left one band
    assert err.value.code == "BAND_INDEX_INVALID"
    with pytest.raises(ImagelibError):
        model.set_param(1, "expr", "b4")
    assert model.ops[1]["expr"] == "b3 - b1" and model.ops[2]["bands"] == [1]


def test_every_op_can_be_added_and_has_controls() -> None:
    model = ChainModel()
    for name in model.op_names():
        model.add(name)
        names = {spec.name for spec in param_specs(name)}
        assert names == set(REGISTRY[name].model_fields) - {"op"}
    assert len(model) == len(REGISTRY)


def test_param_specs_follow_the_schema() -> None:
    specs = {s.name: s for s in param_specs("fft_bandpass")}
    assert specs["kind"].kind == "enum" and specs["kind"].choices == ["gaussian", "butterworth"]
    assert specs["order"].kind == "int" and (specs["order"].minimum, specs["order"].maximum) == (1, 16)
    assert specs["low"].kind == "float" and specs["low"].default == 0.01
    assert {s.name: s.kind for s in param_specs("band_math")} == {"expr": "text"}
    assert {s.name: s.kind for s in param_specs("richardson_lucy")}["psf"] == "json"


def _png(builder: FilterChainBuilder) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(builder.preview.value)))


def test_builder_preview_matches_the_whole_image_result() -> None:
    applied: list[list[dict[str, Any]]] = []
    builder = FilterChainBuilder(
        DATA,
        on_apply=lambda c: applied.append(c) or "v-new",
        region=(slice(20, 60), slice(30, 80)),
        debounce_s=0,
    )
    assert _png(builder).shape == (40, 50, 3)  # three bands shown as RGB
    builder.add("gaussian")
    spec = {s.name: s for s in param_specs("gaussian")}["sigma"]
    builder.set_param(0, spec, "3")  # JSON text from the control
    builder.add("band_math")
    builder.set_param(1, param_specs("band_math")[0], "b1 - b2")
    chain = builder.model.to_chain()
    assert json.loads(builder.chain_text.value) == chain

    from imagelib.widgets.preview import region_result

    region = region_result(DATA, chain, builder.region)
    whole = apply_chain(DATA, chain).values[:, 20:60, 30:80]
    np.testing.assert_allclose(region, whole, atol=1e-6)  # halo context: no border artefacts
    assert _png(builder).shape == (40, 50)  # one band → grey

    assert builder.apply() == "v-new" and applied == [chain]
    assert builder.progress.value == 1 and builder.progress.bar_style == "success"


def test_builder_shows_errors_instead_of_raising() -> None:
    builder = FilterChainBuilder(DATA, debounce_s=0, on_apply=lambda c: "x")
    builder.add("gaussian")
    builder.set_param(0, param_specs("gaussian")[0], "[1, 2, 3, 4]")
    assert "PARAM_INVALID" in builder.status.value
    assert builder.model.ops[0]["sigma"] == 1.0
    builder.chain_text.value = "not json"
    builder._guard(lambda: builder.model.load(builder.chain_text.value), structural=True)
    assert "CHAIN_INVALID" in builder.status.value


def test_default_apply_calls_imagelib_apply_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    fake = types.ModuleType("imagelib")
    fake.apply = lambda version, chain: calls.append((version, chain)) or "v-derived"  # type: ignore[attr-defined]
    builder = FilterChainBuilder(DATA, chain=[{"op": "median"}], debounce_s=0)
    monkeypatch.setitem(sys.modules, "imagelib", fake)
    assert builder.apply() == "v-derived"
    assert calls == [("v-source", [{"op": "median", "size": 3}])]


def test_default_apply_without_version_is_coded() -> None:
    builder = FilterChainBuilder(DATA.values[0], debounce_s=0)  # bare 2D array: no version
    with pytest.raises(ImagelibError) as err:
        builder.apply()
    assert err.value.code == "USAGE" and builder.progress.bar_style == "danger"
