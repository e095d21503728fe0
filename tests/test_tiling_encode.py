"""Tile encoders: JPEG drops alpha and accepts any slice (1×1 edge tiles included)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imagelib.tiling.encode import encode


@pytest.mark.parametrize("shape", [(1, 1, 4), (1, 3, 4), (255, 255, 4), (7, 5, 2), (1, 1, 2)])
def test_jpeg_from_alpha_slices(shape: tuple[int, int, int]) -> None:
    rgba = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode(rgba, "jpg"))))
    expected = rgba[..., :-1] if shape[2] == 4 else rgba[..., 0]
    assert decoded.shape == expected.shape
    # JPEG is lossy: a smooth check that the right channels were encoded, not a pixel match
    assert abs(float(decoded.mean()) - float(expected.mean())) < 20


def test_jpeg_of_flat_gray_is_exact_enough() -> None:
    flat = np.full((64, 64, 1), 128, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode(flat, "jpg"))))
    assert np.abs(decoded.astype(int) - 128).max() <= 1


@pytest.mark.parametrize("count", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_interleave_equals_numpy_stack(count: int, dtype: type) -> None:
    from imagelib.backend import cv2_module
    from imagelib.tiling.scale import interleave

    assert cv2_module() is not None  # loaded: interleave takes OpenCV's path for uint8
    stack = np.random.default_rng(count).integers(0, 255, (count, 70, 90)).astype(dtype)
    planes = [stack[b, :, ::-1] for b in range(count)]  # non-contiguous views, as cut from chunks
    out = interleave(planes)
    assert out.shape == (70, 90, count) and out.dtype == dtype
    assert np.array_equal(out, np.stack(planes, axis=-1))
