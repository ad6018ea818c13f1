"""Printed and displayed digits: kinds of upload MNIST never shows.

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


# --- seven-segment displays -----------------------------------------------------------------

SEGMENT_KIND = "seven_segment"
# Which segments each digit lights: a top, b upper right, c lower right, d bottom,
# e lower left, f upper left, g middle (the common 6 with a top bar, 7 without a left bar,
# 9 with a bottom bar).
_SEGMENTS = {
    0: "abcdef",
    1: "bc",
    2: "abdeg",
    3: "abcdg",
    4: "bcfg",
    5: "acdfg",
    6: "acdefg",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}


def segment_glyph(digit: int, rng: np.random.Generator) -> np.ndarray:
    """The digit as a seven-segment display shows it, white on black uint8: a meter, a
    clock, a scale. Stroke, gaps and slant drawn per upload."""
    width, height = 60, 100
    thick = int(rng.integers(8, 15))
    gap = int(rng.integers(1, 4))
    half = height // 2
    boxes = {
        "a": (gap + thick // 2, 0, width - gap - thick // 2, thick),
        "d": (gap + thick // 2, height - thick, width - gap - thick // 2, height),
        "g": (gap + thick // 2, half - thick // 2, width - gap - thick // 2, half + thick // 2),
        "f": (0, gap + thick // 2, thick, half - gap),
        "b": (width - thick, gap + thick // 2, width, half - gap),
        "e": (0, half + gap, thick, height - gap - thick // 2),
        "c": (width - thick, half + gap, width, height - gap - thick // 2),
    }
    margin = 20
    canvas = Image.new("L", (width + 2 * margin, height + 2 * margin), 0)
    draw = ImageDraw.Draw(canvas)
    for segment in _SEGMENTS[digit]:
        left, top, right, bottom = boxes[segment]
        draw.rectangle((left + margin, top + margin, right + margin, bottom + margin), fill=255)
    slant = float(rng.uniform(0.0, 0.2))  # displays lean forward a little
    canvas = canvas.transform(
        canvas.size,
        Image.Transform.AFFINE,
        (1, slant, -slant * canvas.size[1] / 2, 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
    )
    pixels = np.asarray(canvas)
    rows, cols = np.flatnonzero(pixels.any(axis=1)), np.flatnonzero(pixels.any(axis=0))
    return pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def segment_uploads(count: int, seed: int) -> list[Upload]:
    """``count`` photos or scans of seven-segment digits (``Upload.source``: the digit)."""
    uploads = []
    for index in range(count):
        rng = rng_for(seed, SEGMENT_KIND, index)
        digit = int(rng.integers(0, 10))
        how = str(rng.choice(list(_RENDERINGS)))
        data, extension = _RENDERINGS[how](segment_glyph(digit, rng), rng)
        uploads.append(
            Upload(
                kind=SEGMENT_KIND,
                data=data,
                label=digit,
                filename=f"{SEGMENT_KIND}-{how}-{index}.{extension}",
                source=digit,
            )
        )
    return uploads
