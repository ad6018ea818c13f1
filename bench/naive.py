"""The baseline a first attempt ships: squash the whole picture to 28x28, invert if light."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def naive_preprocess(data: bytes) -> np.ndarray:
    """float32 [28, 28] in [0, 1]: greyscale, resized, inverted when the mean is light.

    No EXIF orientation, no transparency, no cropping or centring, no background removal.
    """
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.float32) / 255
    return 1.0 - pixels if pixels.mean() > 0.5 else pixels
