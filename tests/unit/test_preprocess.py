"""gateway.pipeline.preprocess: every format and mode, polarity, EXIF, transparency, MNIST geometry,
pass-through of real MNIST digits, and the errors a bad upload gets."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench import uploads as upload_kinds
from gateway import errors
from gateway.pipeline.preprocess import (
    MNIST_BOX,
    MNIST_CENTRE,
    decode,
    is_mnist_format,
    preprocess,
    to_uint8,
)
from mnist_contract import IMAGE_SIDE
from tests.support.images import encode as encode_mnist

MAX_PIXELS = 40_000_000
# The glyph: an "L" with unequal arms, so each of the 8 EXIF orientations looks different.
GLYPH_HEIGHT, GLYPH_WIDTH, GLYPH_STROKE = 120, 60, 14

# EXIF orientation -> how to store an upright picture so that only honouring the tag shows it
# upright (each is the inverse of the transposition ImageOps.exif_transpose applies).
STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# --- helpers -------------------------------------------------------------------------------


def glyph_coverage(size: tuple[int, int] = (300, 200), offset: tuple[int, int] = (40, 30)):
    """Ink coverage in [0, 1] of an anti-aliased "L" at ``offset`` (x, y) on a ``size`` canvas."""
    scale = 4  # drawn 4x larger and reduced: anti-aliased edges, like real scans
    canvas = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    x, y = offset[0] * scale, offset[1] * scale
    stroke, height, width = GLYPH_STROKE * scale, GLYPH_HEIGHT * scale, GLYPH_WIDTH * scale
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((x, y, x + stroke, y + height), fill=255)
    draw.rectangle((x, y + height - stroke, x + width, y + height), fill=255)
    return np.asarray(canvas.reduce(scale), dtype=np.float32) / 255


def grey_image(coverage: np.ndarray, *, paper: float, ink: float) -> Image.Image:
    return Image.fromarray(np.round((paper + (ink - paper) * coverage) * 255).astype(np.uint8))


def canvas_export(coverage: np.ndarray, *, stroke: int) -> Image.Image:
    """A drawing canvas: grey ``stroke`` colour everywhere, the strokes only in alpha."""
    alpha = Image.fromarray(np.round(coverage * 255).astype(np.uint8))
    colour = Image.new("L", alpha.size, stroke)
    return Image.merge("RGBA", [colour, colour, colour, alpha])


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def dark_on_light_png() -> bytes:
    return encoded(grey_image(glyph_coverage(), paper=0.95, ink=0.1), "PNG")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` 1-bit pixels: a bomb's shape."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    return (rows * image).sum() / image.sum(), (cols * image).sum() / image.sum()


def ink_box(image: np.ndarray, threshold: float = 0.0) -> tuple[int, int]:
    """Height and width of the bounding box of pixels above ``threshold``."""
    rows = np.flatnonzero((image > threshold).any(axis=1))
    cols = np.flatnonzero((image > threshold).any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def assert_mnist_like(image: np.ndarray) -> None:
    """The model's input contract and MNIST's geometry: a 20-pixel box centred by mass."""
    assert image.shape == (IMAGE_SIDE, IMAGE_SIDE)
    assert image.dtype == np.float32
    assert image.min() >= 0.0
    assert image.max() <= 1.0
    assert image.max() > 0.9, "stroke cores should reach full intensity"
    assert max(ink_box(image)) in (MNIST_BOX - 1, MNIST_BOX)
    centre_y, centre_x = centre_of_mass(image)
    assert abs(centre_y - MNIST_CENTRE) <= 1
    assert abs(centre_x - MNIST_CENTRE) <= 1


# --- formats and modes ---------------------------------------------------------------------


def _in_mode(mode: str) -> Image.Image:
    grey = grey_image(glyph_coverage(), paper=0.95, ink=0.1)
    if mode in ("I;16", "I"):
        return Image.fromarray(np.asarray(grey).astype(np.uint16) * 257).convert(mode)
    if mode == "1":
        return grey.point(lambda value: 255 if value > 128 else 0, "1")
    if mode == "P":
        return grey.convert("RGB").quantize(colors=8)
    return grey.convert(mode)


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [
        ("PNG", "L"),
        ("PNG", "RGB"),
        ("PNG", "RGBA"),
        ("PNG", "LA"),
        ("PNG", "P"),
        ("PNG", "1"),
        ("PNG", "I;16"),
        ("JPEG", "L"),
        ("JPEG", "RGB"),
        ("JPEG", "CMYK"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("BMP", "L"),
        ("BMP", "1"),
        ("WEBP", "RGB"),
        ("WEBP", "RGBA"),
    ],
)
def test_every_format_and_mode_gives_an_mnist_like_image(fmt: str, mode: str) -> None:
    image = preprocess(encoded(_in_mode(mode), fmt), max_pixels=MAX_PIXELS)

    assert_mnist_like(image)
    assert image[:2].max() == image[-2:].max() == 0.0, "background must be black"


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    # Every value is above 255: a conversion to 8 bits that clips would see a white page.
    coverage = glyph_coverage()
    deep = Image.fromarray(np.round(65535 * (0.95 - 0.85 * coverage)).astype(np.uint16))
    shallow = grey_image(coverage, paper=0.95, ink=0.1)

    from_16_bit = preprocess(encoded(deep, "PNG"), max_pixels=MAX_PIXELS)
    from_8_bit = preprocess(encoded(shallow, "PNG"), max_pixels=MAX_PIXELS)

    assert_mnist_like(from_16_bit)
    assert np.abs(from_16_bit - from_8_bit).mean() < 0.02


def test_a_camera_jpeg_with_several_pictures_reads_the_first() -> None:
    # Phones write JPEGs in the Multi-Picture Format; Pillow opens them as "MPO".
    first = grey_image(glyph_coverage(), paper=0.95, ink=0.1).convert("RGB")
    preview = Image.new("RGB", first.size, (0, 0, 0))
    camera_jpeg = encoded(first, "MPO", save_all=True, append_images=[preview])

    expected = preprocess(encoded(first, "JPEG"), max_pixels=MAX_PIXELS)

    np.testing.assert_allclose(preprocess(camera_jpeg, max_pixels=MAX_PIXELS), expected, atol=0.01)


def test_only_the_first_frame_of_an_animation_is_read() -> None:
    first = grey_image(glyph_coverage(), paper=1.0, ink=0.0)
    second = grey_image(glyph_coverage()[::-1, ::-1], paper=1.0, ink=0.0)
    animated = encoded(first, "GIF", save_all=True, append_images=[second], duration=50)

    expected = preprocess(encoded(first, "GIF"), max_pixels=MAX_PIXELS)

    np.testing.assert_array_equal(preprocess(animated, max_pixels=MAX_PIXELS), expected)


# --- polarity, transparency, light ---------------------------------------------------------


@pytest.mark.parametrize(
    "upload",
    [
        pytest.param(lambda c: grey_image(c, paper=0.9, ink=0.05), id="dark-on-light"),
        pytest.param(lambda c: grey_image(c, paper=0.1, ink=0.95), id="light-on-dark"),
        pytest.param(lambda c: canvas_export(c, stroke=0), id="black-strokes-on-transparent"),
        pytest.param(lambda c: canvas_export(c, stroke=255), id="white-strokes-on-transparent"),
    ],
)
def test_polarity_is_white_ink_on_black_whatever_the_upload(upload) -> None:
    reference = preprocess(dark_on_light_png(), max_pixels=MAX_PIXELS)

    image = preprocess(encoded(upload(glyph_coverage()), "PNG"), max_pixels=MAX_PIXELS)

    assert_mnist_like(image)
    assert image.max() == 1.0, "ink is white"
    assert (image == 0).mean() > 0.6, "background is black"
    assert np.abs(image - reference).mean() < 0.02


def test_paper_with_a_transparent_margin_keeps_the_paper_as_background() -> None:
    coverage = glyph_coverage()
    grey = grey_image(coverage, paper=0.95, ink=0.1)
    alpha = np.full(coverage.shape, 255, dtype=np.uint8)
    alpha[:, -40:] = 0  # a transparent strip, as after cropping a rotated photo
    sticker = Image.merge("LA", [grey, Image.fromarray(alpha)])

    image = preprocess(encoded(sticker, "PNG"), max_pixels=MAX_PIXELS)

    reference = preprocess(dark_on_light_png(), max_pixels=MAX_PIXELS)
    assert np.abs(image - reference).mean() < 0.02


def test_uneven_tinted_light_and_noise_are_removed() -> None:
    coverage = glyph_coverage()
    rows, cols = np.indices(coverage.shape) / np.float32(max(coverage.shape))
    light = 1.0 - 0.45 * cols - 0.25 * rows  # one corner under half the light of the other
    rng = np.random.default_rng(7)
    paper = np.stack([light * tint for tint in (0.95, 0.85, 0.7)], axis=-1)
    rgb = paper * (1 - 0.85 * coverage[..., None]) + rng.normal(0, 0.02, paper.shape)
    photo = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))

    image = preprocess(encoded(photo, "JPEG", quality=85), max_pixels=MAX_PIXELS)

    assert_mnist_like(image)
    reference = preprocess(dark_on_light_png(), max_pixels=MAX_PIXELS)
    assert np.abs(image - reference).mean() < 0.03


# --- geometry ------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", sorted(STORE_FOR_ORIENTATION))
def test_exif_orientation_is_honoured(orientation: int) -> None:
    upright = grey_image(glyph_coverage(), paper=0.95, ink=0.1).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = upright.transpose(STORE_FOR_ORIENTATION[orientation])

    image = preprocess(encoded(stored, "JPEG", quality=95, exif=exif), max_pixels=MAX_PIXELS)

    reference = preprocess(encoded(upright, "JPEG", quality=95), max_pixels=MAX_PIXELS)
    ignoring_exif = preprocess(encoded(stored, "JPEG", quality=95), max_pixels=MAX_PIXELS)
    assert np.abs(image - reference).mean() < 0.02
    assert np.abs(ignoring_exif - reference).mean() > 0.05, "the test must tell them apart"
    # The glyph's foot is at the bottom, pointing right.
    assert image[18:, 16:].sum() > 3 * image[:10, 16:].sum()


@pytest.mark.parametrize("offset", [(5, 5), (220, 60), (120, 75)])
def test_an_off_centre_digit_is_cropped_fitted_and_centred_by_mass(offset) -> None:
    page = grey_image(glyph_coverage(size=(300, 200), offset=offset), paper=0.95, ink=0.1)

    image = preprocess(encoded(page, "PNG"), max_pixels=MAX_PIXELS)

    assert_mnist_like(image)
    # The glyph is twice as tall as wide: the aspect ratio survives the fit into 20x20.
    height, width = ink_box(image, threshold=0.5)
    assert height / width == pytest.approx(GLYPH_HEIGHT / GLYPH_WIDTH, rel=0.15)


def test_specks_away_from_the_digit_do_not_move_it() -> None:
    coverage = glyph_coverage()
    specked = coverage.copy()
    specked[5:8, 280:283] = 1.0  # dust in a far corner
    specked[190:192, 250:252] = 1.0

    clean = preprocess(encoded(grey_image(coverage, paper=0.9, ink=0.1), "PNG"), max_pixels=1e9)
    image = preprocess(encoded(grey_image(specked, paper=0.9, ink=0.1), "PNG"), max_pixels=1e9)

    np.testing.assert_allclose(image, clean, atol=0.02)


def test_real_mnist_digits_pass_through_unchanged(mnist_test_set) -> None:
    images, _ = mnist_test_set
    digits = images[:300, ..., 0]

    outputs = np.stack([preprocess(encode_mnist(digit), max_pixels=MAX_PIXELS) for digit in digits])

    np.testing.assert_array_equal(outputs, digits)


def test_mnist_format_is_recognised_only_when_fitted_and_centred(mnist_test_set) -> None:
    images, _ = mnist_test_set
    digit = images[0, ..., 0]
    assert is_mnist_format(decode(encode_mnist(digit), max_pixels=MAX_PIXELS))

    off_centre = np.roll(digit, (-4, 3), axis=(0, 1))
    shrunk = np.zeros_like(digit)
    shrunk[9:19, 9:19] = digit[4:24:2, 4:24:2]
    on_white = 1.0 - digit
    for variant in (off_centre, shrunk, on_white):
        assert not is_mnist_format(decode(encode_mnist(variant), max_pixels=MAX_PIXELS))
        # Not a pass-through: the full pipeline fits and centres it as MNIST would.
        assert_mnist_like(preprocess(encode_mnist(variant), max_pixels=MAX_PIXELS))

    lossy = decode(encoded(Image.fromarray(np.uint8(digit * 255)), "JPEG"), max_pixels=MAX_PIXELS)
    assert not is_mnist_format(lossy)


@pytest.mark.parametrize("kind", upload_kinds.KINDS)
def test_realistic_uploads_of_every_kind_come_out_mnist_like(kind: str, mnist_test_set) -> None:
    images, labels = mnist_test_set
    if kind in upload_kinds.UCI_KINDS:
        sources, labels = upload_kinds.load_uci_digits()
        render = upload_kinds.UCI_KINDS[kind]
    else:
        sources = np.round(images[:200, ..., 0] * 255).astype(np.uint8)
        render = upload_kinds.MNIST_KINDS[kind]

    for upload in upload_kinds.render_kind(kind, render, sources, labels, count=4, seed=1):
        assert_mnist_like(preprocess(upload.data, max_pixels=MAX_PIXELS))


@pytest.mark.slow
def test_real_digits_in_realistic_uploads_are_recognised(mnist_test_set, exported_model_dir):
    from gateway.predictors.saved_model import load_version

    model = load_version(exported_model_dir, 1)
    images, labels = mnist_test_set
    sources = np.round(images[:1000, ..., 0] * 255).astype(np.uint8)
    kinds = ("mnist_native", "paper_scan", "phone_photo", "canvas_rgba", "light_on_dark")
    uploads = [
        upload
        for kind in kinds
        for upload in upload_kinds.render_kind(
            kind, upload_kinds.MNIST_KINDS[kind], sources, labels[:1000], count=20, seed=2
        )
    ]
    batch = np.stack([preprocess(upload.data, max_pixels=MAX_PIXELS) for upload in uploads])

    _, predicted = model(batch[..., np.newaxis])

    # The fixture's model is small and briefly trained (about 90% on clean digits).
    assert np.mean(predicted == [upload.label for upload in uploads]) >= 0.85


# --- no digit ------------------------------------------------------------------------------


def _noise(sigma: float) -> Image.Image:
    rng = np.random.default_rng(3)
    grey = np.clip(rng.normal(0.6, sigma, (200, 300)), 0, 1)
    return Image.fromarray(np.round(grey * 255).astype(np.uint8))


@pytest.mark.parametrize(
    "upload",
    [
        pytest.param(encoded(Image.new("L", (64, 64), 255), "PNG"), id="blank-page"),
        pytest.param(encoded(Image.new("RGB", (640, 480), (40, 90, 160)), "JPEG"), id="uniform"),
        pytest.param(
            encoded(Image.new("RGBA", (280, 280), (0, 0, 0, 0)), "PNG"), id="empty-canvas"
        ),
        pytest.param(encoded(_noise(0.03), "PNG"), id="faint-noise"),
        pytest.param(encoded(_noise(0.3), "PNG"), id="strong-noise"),
        pytest.param(encoded(Image.new("L", (1, 1), 0), "PNG"), id="one-pixel"),
        pytest.param(encoded(Image.linear_gradient("L").resize((1, 50)), "PNG"), id="one-column"),
    ],
)
def test_an_image_without_ink_is_refused(upload: bytes) -> None:
    with pytest.raises(errors.NoInk) as raised:
        preprocess(upload, max_pixels=MAX_PIXELS)

    assert raised.value.status == 422


# --- bad uploads ---------------------------------------------------------------------------


def test_empty_bytes_are_a_bad_request() -> None:
    with pytest.raises(errors.BadRequest) as raised:
        preprocess(b"", max_pixels=MAX_PIXELS)

    assert (raised.value.status, raised.value.code) == (400, "empty_file")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", id="pdf"),
        pytest.param(b"digit: 7", id="text"),
        pytest.param(encoded(Image.new("L", (28, 28)), "TIFF"), id="tiff"),
    ],
)
def test_non_images_and_unsupported_formats_are_unsupported_media(data: bytes) -> None:
    with pytest.raises(errors.NotAnImage) as raised:
        preprocess(data, max_pixels=MAX_PIXELS)

    assert raised.value.status == 415


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_corrupt(fmt: str) -> None:
    rng = np.random.default_rng(5)
    noisy = Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))
    data = encoded(noisy, fmt)

    with pytest.raises(errors.CorruptImage) as raised:
        preprocess(data[: len(data) * 2 // 3], max_pixels=MAX_PIXELS)

    assert raised.value.status == 400


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_damaged_bytes_only_ever_raise_gateway_errors(fmt: str) -> None:
    rng = np.random.default_rng(11)
    valid = encoded(grey_image(glyph_coverage((80, 60), (10, 5)) / 2, paper=0.9, ink=0.1), fmt)
    outcomes = set()
    for _ in range(150):
        damaged = bytearray(valid)
        for position in rng.integers(0, len(damaged), rng.integers(1, 6)):
            damaged[position] = rng.integers(0, 256)
        cut = rng.integers(1, len(damaged)) if rng.random() < 0.3 else len(damaged)
        try:
            preprocess(bytes(damaged[:cut]), max_pixels=MAX_PIXELS)
            outcomes.add("read")
        except errors.GatewayError as error:
            outcomes.add(error.code)

    assert "corrupt_image" in outcomes, "the damage must have been seen at least once"


@pytest.mark.parametrize(
    ("width", "height", "max_pixels"),
    [
        pytest.param(100_000, 100_000, MAX_PIXELS, id="past-pillows-own-limit"),
        pytest.param(10_000, 10_000, 10**9, id="in-pillows-warning-range"),
        pytest.param(8_000, 6_000, MAX_PIXELS, id="over-our-budget"),
        pytest.param(101, 100, 10_000, id="one-row-over-a-small-budget"),
    ],
)
def test_too_many_declared_pixels_are_refused_before_decoding(width, height, max_pixels):
    limit_before = Image.MAX_IMAGE_PIXELS

    with pytest.raises(errors.ImageTooLarge) as raised:
        preprocess(png_declaring(width, height), max_pixels=max_pixels)

    assert raised.value.status == 413
    assert limit_before == Image.MAX_IMAGE_PIXELS, "Pillow's global limit must stay untouched"


# --- storage -------------------------------------------------------------------------------


def test_to_uint8_is_784_bytes_within_half_a_grey_level() -> None:
    image = preprocess(dark_on_light_png(), max_pixels=MAX_PIXELS)

    stored = to_uint8(image)

    assert len(stored) == IMAGE_SIDE * IMAGE_SIDE
    restored = np.frombuffer(stored, dtype=np.uint8).reshape(image.shape) / 255
    assert np.abs(restored - image).max() <= 0.5 / 255 + 1e-6
