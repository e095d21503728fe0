"""Tile encoders: JPEG drops alpha and accepts any slice (1×1 edge tiles included); PNG and WebP drop an
alpha channel only where it is opaque everywhere."""

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


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (2, 9), (256, 256), (255, 17)])
def test_png_is_lossless_and_valid(channels: int, shape: tuple[int, int]) -> None:
    """The PNG writer (Up filter + libdeflate) decodes to the same pixels in Pillow and in libpng, with
    every chunk's CRC checked (Pillow's verify), for grey, grey+alpha, RGB and RGBA; smooth and noisy
    content both (the Up filter's wrap-around on a falling edge included)."""
    import imagecodecs

    rng = np.random.default_rng(channels)
    noisy = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
    ramp = (np.arange(shape[0])[:, None, None] * 37 + np.arange(channels) * 90) % 256
    smooth = np.broadcast_to(ramp, (*shape, channels)).astype(np.uint8)
    for img in (noisy, smooth):
        data = encode(img, "png")
        Image.open(io.BytesIO(data)).verify()
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
            pillow = np.asarray(im)
        libpng = imagecodecs.png_decode(data)
        for decoded in (pillow, libpng):
            assert np.array_equal(decoded.reshape(img.shape), img)


def test_png_of_smooth_tile_is_small() -> None:
    """The Up filter is what makes smooth imagery compress: a 256² RGBA ramp tile stays under 4 KiB
    (unfiltered at the same level it is ~200 KiB)."""
    y, x = np.mgrid[0:256, 0:256]
    tile = np.stack([x, y, (x + y) // 2, np.full_like(x, 255)], axis=-1).astype(np.uint8)
    assert len(encode(tile, "png")) < 4096


@pytest.mark.parametrize("fmt", ["png", "webp"])
@pytest.mark.parametrize("channels", [2, 4])
def test_opaque_alpha_is_left_out(fmt: str, channels: int) -> None:
    """An alpha of 255 everywhere is not written (grey or RGB, the same pixels decoded); one transparent
    pixel keeps it. WebP (lossy, always colour) is checked by its alpha only."""
    rng = np.random.default_rng(channels)
    img = rng.integers(0, 256, (64, 48, channels), dtype=np.uint8)
    img[..., -1] = 255
    with Image.open(io.BytesIO(encode(img, fmt))) as im:
        assert "A" not in im.mode
        if fmt == "png":
            assert im.mode == {2: "L", 4: "RGB"}[channels]
            assert np.array_equal(np.asarray(im).reshape(64, 48, channels - 1), img[..., :-1])
    img[5, 7, -1] = 0
    with Image.open(io.BytesIO(encode(img, fmt))) as im:
        assert im.mode.endswith("A")
        if fmt == "png":
            assert np.array_equal(np.asarray(im).reshape(img.shape), img)
