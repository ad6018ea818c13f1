"""Printed digits: a kind of upload MNIST never shows, built from the fonts Debian ships.

A price tag, a form field, a house number or a page number is a typed digit, not a
handwritten one. Each upload here is one digit set in one of the DejaVu faces (fonts-dejavu:
sans, serif, mono and condensed; book, bold, oblique and italic), printed in dark ink on
paper and then scanned or photographed exactly as ``bench.uploads`` renders handwriting
(``paper_scan``, ``phone_photo``): the same paper, ink, noise, light, blur, skew and EXIF.
Deterministic for a seed: each upload has its own generator seeded by (seed, index).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.uploads import Upload, paper_scan, phone_photo, rng_for

KIND = "printed"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
# The text faces; DejaVuMathTeXGyre is a maths font with its own digit shapes.
_FONT_GLOB = "DejaVu[SM]*.ttf"
_GLYPH_PIXELS = 96
_RENDERINGS = {"scan": paper_scan, "photo": phone_photo}


@cache
def font_paths() -> tuple[Path, ...]:
    paths = tuple(
        path for path in sorted(FONT_DIR.glob(_FONT_GLOB)) if "MathTeXGyre" not in path.name
    )
    if not paths:
        raise FileNotFoundError(
            f"no DejaVu fonts in {FONT_DIR}: install Debian's fonts-dejavu-core and "
            "fonts-dejavu-extra"
        )
    return paths


def glyph(digit: int, font: Path) -> np.ndarray:
    """The digit in ``font``, white on black uint8, cropped to its ink."""
    face = ImageFont.truetype(str(font), _GLYPH_PIXELS)
    canvas = Image.new("L", (2 * _GLYPH_PIXELS, 2 * _GLYPH_PIXELS), 0)
    ImageDraw.Draw(canvas).text((_GLYPH_PIXELS // 2, 0), str(digit), fill=255, font=face)
    pixels = np.asarray(canvas)
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    return pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def printed_uploads(count: int, seed: int, fonts: tuple[Path, ...] | None = None) -> list[Upload]:
    """``count`` printed-digit uploads, digits and faces and renderings drawn per upload.

    ``Upload.source`` is the index of the face in ``fonts`` (default: every DejaVu face).
    """
    fonts = fonts or font_paths()
    uploads = []
    for index in range(count):
        rng = rng_for(seed, KIND, index)
        digit, face = int(rng.integers(0, 10)), int(rng.integers(0, len(fonts)))
        how = str(rng.choice(list(_RENDERINGS)))
        data, extension = _RENDERINGS[how](glyph(digit, fonts[face]), rng)
        uploads.append(
            Upload(
                kind=KIND,
                data=data,
                label=digit,
                filename=f"{KIND}-{how}-{index}.{extension}",
                source=face,
            )
        )
    return uploads
