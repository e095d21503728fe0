"""8-bit ``(h, w, c)`` arrays → JPEG (libjpeg-turbo via imagecodecs) / PNG (libvips) / WebP (Pillow) bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imagelib.errors import UsageError

FORMATS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp"}
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class Encoding:
    """Encoder settings (defaults as ``vips dzsave``: JPEG/WebP Q 75); part of the cache key."""

    quality: int = 75
    png_compression: int = 1  # zlib level: 1 is ~2× faster than 6 for ~10 % more bytes


def normalize_format(fmt: str) -> str:
    """``jpg``/``jpeg``/``png``/``webp`` → the canonical suffix; coded error otherwise."""
    key = fmt.lower().lstrip(".")
    if key not in FORMATS:
        raise UsageError(
            f"unsupported tile format {fmt!r}",
            field="format",
            expected=sorted(set(FORMATS.values())),
            found=fmt,
        )
    return FORMATS[key]


def encode(img: np.ndarray, fmt: str, encoding: Encoding = Encoding()) -> bytes:
    """Encode an ``(h, w, c)`` uint8 image; JPEG drops the alpha channel."""
    fmt = normalize_format(fmt)
    if fmt == "png":
        return _png(img, encoding.png_compression)
    if fmt == "jpg" and img.shape[2] in (2, 4):
        img = img[..., :-1]
    if fmt == "jpg":
        return _jpeg(img, encoding.quality)
    buf = io.BytesIO()
    image = Image.fromarray(
        np.ascontiguousarray(img) if img.shape[2] > 1 else img[..., 0], _MODES[img.shape[2]]
    )
    image.save(buf, "WEBP", quality=encoding.quality)
    return buf.getvalue()


def _jpeg(img: np.ndarray, quality: int) -> bytes:
    """libjpeg-turbo through imagecodecs: it releases the GIL (Pillow's encoder does not), so the tile
    thread pool encodes on every core."""
    import imagecodecs

    # A real copy: numpy calls e.g. a (1, 1, 3) slice of RGBA "contiguous" with strides (4, 4, 1),
    # which the libjpeg wrapper rejects.
    pixels = (img if img.shape[2] > 1 else img[..., 0]).copy(order="C")
    return bytes(imagecodecs.jpeg8_encode(pixels, level=quality))


def _png(img: np.ndarray, compression: int) -> bytes:
    import pyvips

    h, w, c = img.shape
    image = pyvips.Image.new_from_memory(np.ascontiguousarray(img).data, w, h, c, "uchar")
    image = image.copy(interpretation="b-w" if c <= 2 else "srgb")
    return image.pngsave_buffer(compression=compression, strip=True)
