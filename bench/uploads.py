"""A varied, realistic set of uploads with known labels, built from real handwriting.

The handwriting is MNIST test digits (never seen in training) and scikit-learn's copy of the
UCI optical-recognition digits (other writers, 8x8). Each kind renders one digit the way a
real upload arrives: a scan of dark ink on paper, a phone photo under uneven tinted light
with its orientation only in EXIF, a drawing-canvas export with a transparent background,
chalk on a board, and a spread of file formats and pixel modes. Everything is deterministic
for a given seed: each upload has its own generator seeded by (seed, kind, index).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

# A rendering: (digit image uint8 [h, w], white ink on black; rng) -> (encoded bytes, extension).
Render = Callable[[np.ndarray, np.random.Generator], tuple[bytes, str]]

_EXIF_ORIENTATION = 0x0112
# How far (a fraction of each side) skew() may pull a photo's corners inwards.
SKEW = 0.06
# For each EXIF orientation a phone writes, how to store an upright picture so that only a
# reader that honours the tag shows it upright (the inverse of ImageOps.exif_transpose).
_STORE_FOR_ORIENTATION = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class Upload:
    kind: str
    data: bytes
    label: int
    filename: str
    # The index of the handwritten digit in its source set (MNIST test or UCI).
    source: int


# --- drawing helpers -----------------------------------------------------------------------


def ink_mask(digit: np.ndarray, height: int, angle: float = 0.0) -> np.ndarray:
    """The digit's ink coverage in [0, 1], ``height`` pixels tall, rotated by ``angle`` degrees.

    Upscaling a small digit blurs it; the contrast curve restores the crisp edge of a pen.
    """
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    crop = digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32) / 255
    width = max(1, round(crop.shape[1] * height / crop.shape[0]))
    image = Image.fromarray(crop).resize((width, height), Image.Resampling.BICUBIC)
    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    return np.clip((np.asarray(image) - 0.25) / 0.5, 0.0, 1.0)


def place(
    mask: np.ndarray, size: tuple[int, int], rng: np.random.Generator, *, margin: float = 0.0
) -> np.ndarray:
    """``mask`` at a random position on an empty canvas of ``size`` (w, h), at least
    ``margin`` (a fraction of each side) inside its edges; shrunk first if it would not fit."""
    width, height = size
    room = (width - 2 * round(margin * width), height - 2 * round(margin * height))
    scale = min(1.0, room[0] / mask.shape[1], room[1] / mask.shape[0])
    if scale < 1.0:
        fitted = (max(1, int(mask.shape[1] * scale)), max(1, int(mask.shape[0] * scale)))
        mask = np.asarray(Image.fromarray(mask).resize(fitted, Image.Resampling.BILINEAR))
    canvas = np.zeros((height, width), dtype=np.float32)
    top = rng.integers(round(margin * height), height - mask.shape[0] - round(margin * height) + 1)
    left = rng.integers(round(margin * width), width - mask.shape[1] - round(margin * width) + 1)
    canvas[top : top + mask.shape[0], left : left + mask.shape[1]] = mask
    return canvas


def compose(mask: np.ndarray, background: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """RGB float [h, w, 3]: ``ink`` colour over ``background`` (colour or image) by coverage."""
    coverage = mask[..., np.newaxis]
    return background * (1.0 - coverage) + ink * coverage


def add_noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return rgb + rng.normal(0.0, sigma, rgb.shape).astype(np.float32)


def to_image(pixels: np.ndarray) -> Image.Image:
    """An 8-bit image ("L" or "RGB") from floats in [0, 1]."""
    return Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8))


def bilevel(image: Image.Image) -> Image.Image:
    """Mode "1" by a plain threshold (Pillow's convert("1") would dither)."""
    return image.convert("L").point(lambda value: 255 if value > 128 else 0, "1")


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def digit_on_paper(
    digit: np.ndarray,
    rng: np.random.Generator,
    *,
    size: tuple[int, int],
    height: int,
    margin: float = 0.0,
) -> np.ndarray:
    """A slightly rotated, off-centre digit in dark ink on white-ish paper: RGB floats."""
    mask = place(ink_mask(digit, height, rng.uniform(-8, 8)), size, rng, margin=margin)
    paper = rng.uniform(0.88, 1.0) * rng.uniform(0.95, 1.0, 3)
    ink = rng.uniform(0.0, 0.25) * np.array([1.0, 1.0, rng.uniform(1.0, 2.5)])
    return compose(mask, paper.astype(np.float32), ink.astype(np.float32))


def _random_size(rng: np.random.Generator, low: int, high: int) -> tuple[int, int]:
    return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))


def _digit_height(rng: np.random.Generator, size: tuple[int, int], low: float, high: float) -> int:
    return int(min(size) * rng.uniform(low, high))


# --- the kinds -----------------------------------------------------------------------------


def mnist_native(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """The raw MNIST image: 28x28 greyscale PNG, white on black."""
    return encode(Image.fromarray(digit), "PNG"), "png"


def paper_scan(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Dark ink on paper, 300-800 px, off-centre, slightly rotated, scanner noise, JPEG."""
    size = _random_size(rng, 300, 800)
    rgb = digit_on_paper(digit, rng, size=size, height=_digit_height(rng, size, 0.2, 0.6))
    rgb = add_noise(rgb, 0.01, rng)
    return encode(to_image(rgb), "JPEG", quality=int(rng.integers(70, 95))), "jpg"


def phone_photo(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Tinted, unevenly lit paper, blur, noise, a skewed frame; stored sideways with EXIF."""
    size = ((640, 480), (800, 600), (1024, 768))[rng.integers(0, 3)]
    height = _digit_height(rng, size, 0.25, 0.6)
    # The margin keeps the digit inside the frame that skew() crops.
    rgb = digit_on_paper(digit, rng, size=size, height=height, margin=SKEW)
    rgb = rgb * rng.uniform(0.8, 1.0, 3).astype(np.float32) * uneven_light(size, rng)[..., None]
    image = to_image(add_noise(rgb, rng.uniform(0.01, 0.03), rng))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    image = skew(image, rng)
    orientation = int(rng.choice(list(_STORE_FOR_ORIENTATION)))
    exif = Image.Exif()
    exif[_EXIF_ORIENTATION] = orientation
    stored = image.transpose(_STORE_FOR_ORIENTATION[orientation])
    return encode(stored, "JPEG", quality=int(rng.integers(75, 92)), exif=exif), "jpg"


def uneven_light(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Illumination in (0, 1]: a linear fall-off in a random direction and vignetting."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height - 0.5, x / width - 0.5
    direction = rng.uniform(0, 2 * np.pi)
    ramp = x * np.cos(direction) + y * np.sin(direction)
    light = 1.0 - rng.uniform(0.2, 0.5) * (ramp + 0.5) - rng.uniform(0.1, 0.4) * (x**2 + y**2)
    return light.astype(np.float32)


def skew(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A perspective-like distortion: the frame is a quadrilateral whose corners lie up to
    SKEW (a fraction of each side) inside the picture's corners."""
    width, height = image.size
    corners = np.array([[0, 0], [0, height], [width, height], [width, 0]], dtype=np.float64)
    inward = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]])
    quad = corners + inward * rng.uniform(0, SKEW, corners.shape) * (width, height)
    return image.transform(
        image.size, Image.Transform.QUAD, tuple(quad.ravel()), resample=Image.Resampling.BICUBIC
    )


def canvas_rgba(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A drawing-canvas export: strokes on a transparent (transparent black) canvas, PNG."""
    side = int(rng.choice([200, 280, 280, 400]))
    mask = place(ink_mask(digit, int(side * rng.uniform(0.4, 0.8))), (side, side), rng)
    colour = rng.choice([[0.0, 0.0, 0.0], [0.1, 0.2, 0.9], [0.9, 0.1, 0.1], [1.0, 1.0, 1.0]])
    rgba = np.zeros((side, side, 4), dtype=np.float32)
    rgba[mask > 0, :3] = colour
    rgba[..., 3] = mask
    return encode(to_image(rgba), "PNG"), "png"


def light_on_dark(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Chalk on a dark green or black board: patchy strokes, board texture, JPEG."""
    size = _random_size(rng, 320, 640)
    mask = place(ink_mask(digit, _digit_height(rng, size, 0.3, 0.7), rng.uniform(-6, 6)), size, rng)
    chalky = mask * rng.uniform(0.6, 1.0, mask.shape).astype(np.float32)
    board = rng.choice([[0.12, 0.22, 0.15], [0.08, 0.08, 0.09], [0.15, 0.12, 0.25]])
    rgb = compose(chalky, np.float32(board), np.float32(rng.uniform(0.8, 0.95)))
    image = to_image(add_noise(rgb, 0.03, rng)).filter(ImageFilter.GaussianBlur(0.8))
    return encode(image, "JPEG", quality=int(rng.integers(70, 92))), "jpg"


def palette_gif(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A palette GIF, sometimes with a transparent background, sometimes a second frame."""
    size = _random_size(rng, 100, 300)
    rgb = digit_on_paper(digit, rng, size=size, height=_digit_height(rng, size, 0.4, 0.7))
    image = to_image(rgb).quantize(colors=16)
    options: dict[str, object] = {}
    if rng.random() < 0.5:
        background = image.getpixel((0, 0))
        options["transparency"] = background
    if rng.random() < 0.5:
        # An animated GIF: only the first frame is the digit.
        second = Image.new("P", image.size, 0)
        second.putpalette(image.getpalette())
        options.update(save_all=True, append_images=[second], duration=100, loop=0)
    return encode(image, "GIF", **options), "gif"


def png_16bit(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """16-bit greyscale PNG, either polarity, with sensor noise."""
    size = _random_size(rng, 64, 256)
    mask = place(ink_mask(digit, _digit_height(rng, size, 0.4, 0.7)), size, rng)
    dark_ink = rng.random() < 0.5
    grey = 1.0 - 0.85 * mask if dark_ink else 0.1 + 0.8 * mask
    grey = np.clip(add_noise(grey, 0.01, rng), 0.0, 1.0)
    image = Image.fromarray(np.round(grey * 65535).astype(np.uint16))
    return encode(image, "PNG"), "png"


def bmp(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """An uncompressed BMP: 24-bit colour or 1-bit bilevel."""
    size = _random_size(rng, 100, 400)
    rgb = digit_on_paper(digit, rng, size=size, height=_digit_height(rng, size, 0.3, 0.7))
    image = to_image(rgb)
    return encode(bilevel(image) if rng.random() < 0.5 else image, "BMP"), "bmp"


def webp(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Lossy WebP: coloured ink on tinted paper."""
    size = _random_size(rng, 200, 500)
    mask = place(ink_mask(digit, _digit_height(rng, size, 0.3, 0.7), rng.uniform(-8, 8)), size, rng)
    paper = rng.uniform(0.75, 1.0, 3).astype(np.float32)
    ink = (paper * rng.uniform(0.0, 0.4, 3)).astype(np.float32)
    rgb = add_noise(compose(mask, paper, ink), 0.01, rng)
    return encode(to_image(rgb), "WEBP", quality=int(rng.integers(60, 90))), "webp"


def mode_mix(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """The remaining modes: CMYK JPEG, greyscale+alpha PNG, 1-bit PNG, greyscale JPEG."""
    size = _random_size(rng, 120, 360)
    rgb = digit_on_paper(digit, rng, size=size, height=_digit_height(rng, size, 0.3, 0.7))
    image = to_image(rgb)
    variant = rng.integers(0, 4)
    if variant == 0:
        return encode(image.convert("CMYK"), "JPEG", quality=90), "jpg"
    if variant == 1:
        grey = image.convert("L")
        alpha = Image.fromarray(np.where(np.asarray(grey) > 200, 0, 255).astype(np.uint8))
        return encode(Image.merge("LA", (grey, alpha)), "PNG"), "png"
    if variant == 2:
        return encode(bilevel(image), "PNG"), "png"
    return encode(image.convert("L"), "JPEG", quality=85), "jpg"


def uci_digits(digit_8x8: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A UCI digit, upsampled from 8x8, as dark ink on paper (see paper_scan)."""
    return paper_scan(upsample_uci(digit_8x8), rng)


def upsample_uci(digit_8x8: np.ndarray) -> np.ndarray:
    """An 8x8 UCI digit (0-16) as a smooth 32x32 uint8 image, white on black.

    The 8x8 values are ink counts over 4x4 blocks of the original 32x32 bitmap, so a bicubic
    upsample back to 32x32 and a light blur approximate the pen strokes.
    """
    image = Image.fromarray((digit_8x8.astype(np.float32) / 16).astype(np.float32))
    image = image.resize((32, 32), Image.Resampling.BICUBIC)
    smooth = np.clip(np.asarray(image), 0.0, 1.0)
    return np.round(smooth * 255).astype(np.uint8)


MNIST_KINDS: dict[str, Render] = {
    "mnist_native": mnist_native,
    "paper_scan": paper_scan,
    "phone_photo": phone_photo,
    "canvas_rgba": canvas_rgba,
    "light_on_dark": light_on_dark,
    "palette_gif": palette_gif,
    "png_16bit": png_16bit,
    "bmp": bmp,
    "webp": webp,
    "mode_mix": mode_mix,
}
UCI_KINDS: dict[str, Render] = {"uci_digits": uci_digits}
KINDS = (*MNIST_KINDS, *UCI_KINDS)


def rng_for(seed: int, kind: str, *index: int) -> np.random.Generator:
    """A generator per kind (no index) and per upload, stable across runs and independent of
    the other kinds."""
    return np.random.default_rng((seed, zlib.crc32(kind.encode()), *index))


def render_kind(
    kind: str,
    render: Render,
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    seed: int,
) -> Iterator[Upload]:
    """``count`` uploads of one kind, from digits of ``images`` drawn without replacement."""
    chosen = rng_for(seed, kind).choice(len(images), size=count, replace=False)
    for index, source in enumerate(chosen):
        data, extension = render(images[source], rng_for(seed, kind, index))
        label = int(labels[source])
        filename = f"{kind}-{index:04d}-{label}.{extension}"
        yield Upload(kind, data, label, filename, int(source))


def build_uploads(
    mnist_images: np.ndarray,
    mnist_labels: np.ndarray,
    uci_images: np.ndarray,
    uci_labels: np.ndarray,
    *,
    per_kind: int,
    seed: int = 0,
) -> list[Upload]:
    """``per_kind`` uploads of every kind. MNIST images are uint8 [n, 28, 28] white on black;
    UCI images are [n, 8, 8] ink counts 0-16 (see ``load_uci_digits``)."""
    uploads = []
    for kind, render in MNIST_KINDS.items():
        uploads += render_kind(kind, render, mnist_images, mnist_labels, per_kind, seed)
    for kind, render in UCI_KINDS.items():
        uploads += render_kind(kind, render, uci_images, uci_labels, per_kind, seed)
    return uploads


def load_uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled UCI digits (1797, offline): [n, 8, 8] ink counts 0-16, labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def load_mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """MNIST test digits as uint8 [10000, 28, 28] white on black, and their labels."""
    from bench.digits import load_test_digits

    images, labels = load_test_digits()
    return np.round(images[..., 0] * 255).astype(np.uint8), labels
