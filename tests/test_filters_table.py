"""Leading band_scale/clip on 8/16-bit pixels through a lookup table: the same bits as running the ops on
the pixels (the table holds the very results of the float64 arithmetic), taken only where it applies."""

from __future__ import annotations

import numpy as np
import pytest

import imagelib.filters.chain as chain_module
from imagelib.filters import apply_chain
from imagelib.filters import table as table_module

RNG = np.random.default_rng(3)


def dims_of(data: np.ndarray) -> tuple[str, ...]:
    return ("band", "z", "y", "x")[-data.ndim :] if data.ndim == 4 else ("band", "y", "x")


def without_table(monkeypatch: pytest.MonkeyPatch, data: np.ndarray, chain: list[dict]) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(chain_module, "tabulable", lambda stack, ops: False)
        return np.asarray(apply_chain(data, chain, dims=dims_of(data)))


def tables_built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    built: list[tuple[int, ...]] = []
    real = chain_module.run_table

    def spy(stack: np.ndarray, ops: list, working: np.dtype) -> np.ndarray:
        built.append(stack.shape)
        return real(stack, ops, working)

    monkeypatch.setattr(chain_module, "run_table", spy)
    return built


@pytest.mark.parametrize(
    ("dtype", "shape", "chain"),
    [
        (
            np.uint8,
            (3, 90, 110),
            [{"op": "band_scale", "in_range": [0, 255]}, {"op": "gaussian", "sigma": 1.0}],
        ),
        (
            np.uint8,
            (3, 64, 64),
            [
                {"op": "band_scale", "in_range": [10, 200], "out_range": [-1, 3], "bands": [2]},
                {"op": "clip", "min": 0.25, "max": 2.5},
                {"op": "gamma", "gamma": 0.7},
            ],
        ),
        (np.uint16, (1, 600, 600), [{"op": "band_scale", "in_range": [100, 4095], "clip": False}]),
        (np.int16, (1, 520, 520), [{"op": "clip", "min": -1000, "max": 20000}, {"op": "median", "size": 3}]),
        (np.int8, (2, 40, 40), [{"op": "band_scale", "in_range": [-128, 127], "out_range": [0, 10]}]),
        (np.uint8, (1, 5, 30, 600), [{"op": "band_scale", "in_range": [0, 255]}]),  # one band of a volume
    ],
)
def test_same_bits_as_the_ops(
    monkeypatch: pytest.MonkeyPatch, dtype: type, shape: tuple, chain: list
) -> None:
    info = np.iinfo(dtype)
    data = RNG.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    built = tables_built(monkeypatch)
    fast = np.asarray(apply_chain(data, chain, dims=dims_of(data)))
    assert built == [shape]
    slow = without_table(monkeypatch, data, chain)
    assert fast.dtype == slow.dtype == np.float32
    assert np.array_equal(fast.view(np.uint32), slow.view(np.uint32))  # bit for bit, NaN-safe


def test_band_scale_reference() -> None:
    """Independent of the op classes: float64 linear map, clip, float32."""
    data = RNG.integers(0, 255, (3, 80, 80), endpoint=True).astype(np.uint8)
    out = np.asarray(apply_chain(data, [{"op": "band_scale", "in_range": [20, 220], "out_range": [0, 2]}]))
    ref = ((data.astype(np.float64) - 20) * (2 / 200) + 0).clip(0, 2).astype(np.float32)
    assert np.array_equal(out, ref)


@pytest.mark.parametrize(
    ("data", "chain"),
    [
        (np.zeros((3, 90, 90), np.float32), [{"op": "band_scale", "in_range": [0, 1]}]),  # floats
        (np.zeros((1, 90, 90), np.int32), [{"op": "band_scale", "in_range": [0, 1]}]),  # 32-bit
        (np.zeros((1, 20, 20), np.uint8), [{"op": "band_scale", "in_range": [0, 1]}]),  # 400 px < 4×256
        (np.zeros((1, 300, 300), np.uint16), [{"op": "clip", "min": 1}]),  # 90k px < 4×65536
        (np.zeros((3, 90, 90), np.uint8), [{"op": "gaussian"}, {"op": "band_scale", "in_range": [0, 1]}]),
        (np.zeros((3, 90, 90), np.uint8), [{"op": "gamma", "gamma": 2}]),  # ** is not correctly rounded
    ],
)
def test_declines(monkeypatch: pytest.MonkeyPatch, data: np.ndarray, chain: list) -> None:
    built = tables_built(monkeypatch)
    apply_chain(data, chain)
    assert built == []
    assert not table_module.tabulable(data, chain_module.prepare(chain, data.shape, ("band", "y", "x"))[0])
