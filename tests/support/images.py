"""Encoding test digits as the files people upload."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def encode(image: np.ndarray, image_format: str = "PNG") -> bytes:
    """A [28, 28] or [28, 28, 1] float image in [0, 1] as an image file."""
    pixels = np.clip(np.asarray(image).reshape(28, 28) * 255, 0, 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format=image_format)
    return buffer.getvalue()


def paper_photo(image: np.ndarray, size: int = 400) -> bytes:
    """The digit as dark ink on a larger white sheet, off centre, saved as JPEG."""
    ink = Image.fromarray((np.asarray(image).reshape(28, 28) * 255).astype(np.uint8), mode="L")
    sheet = Image.new("L", (size, size), 255)
    digit = Image.eval(
        ink.resize((size // 3, size // 3), Image.Resampling.BICUBIC), lambda v: 255 - v
    )
    sheet.paste(digit, (size // 8, size // 5))
    buffer = io.BytesIO()
    sheet.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def large_digit_png(side: int) -> bytes:
    """A ``side`` x ``side`` PNG of a drawn "1": tens of millions of pixels that compress to
    a small file, the upload that costs the most CPU per byte."""
    image = Image.new("L", (side, side), 255)
    ImageDraw.Draw(image).line(
        [(side // 2, side // 5), (side // 2, side * 4 // 5)], fill=0, width=side // 20
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()
