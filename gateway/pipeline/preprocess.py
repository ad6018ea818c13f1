"""Turn an uploaded image into the model's input: float32 [28, 28] in [0, 1], white ink on black.

Uploads are not MNIST: phone photos with uneven light, dark ink on paper, canvas exports with
transparent backgrounds, any format, mode and size. The pipeline, one small function a step:

1. decode safely: the pixel budget is checked from the header before decoding, the first frame
   only, EXIF orientation honoured, big images reduced early to a small working size;
2. one luminance channel, transparent pixels filled with the background they stand for;
3. ink made bright, the background flattened, the contrast stretched from the noise floor to
   the ink level (anti-aliased grey levels kept);
4. the dominant ink cropped and normalised as MNIST itself was: its bounding box fitted into
   20x20 keeping the aspect ratio, placed in 28x28 with its centre of mass at the centre.

An image that already is an MNIST digit (28x28 greyscale, lossless, white ink on black, fitted
and centred as MNIST's were) passes through unchanged, without the work above.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from gateway import errors
from mnist_contract import IMAGE_SIDE

MNIST_BOX = 20
# Measured on the MNIST test set: the centre of mass lies in [13.5, 14.5) in pixel-index
# coordinates, so MNIST's integer shift targeted 14 (not the geometric 13.5).
MNIST_CENTRE = 14.0
# The MNIST digits' centres of mass lie within half a pixel of MNIST_CENTRE (by the integer
# shift); one pixel either way still counts as centred.
MNIST_CENTRE_TOLERANCE = 1.0
# The long side of an MNIST digit's ink: the 20-pixel box, 19 where rounding shrank it.
MNIST_FITTED_SIDES = (MNIST_BOX - 1, MNIST_BOX)
_INDICES = np.arange(IMAGE_SIDE, dtype=np.float32)

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
# Pillow reports a camera JPEG with extra pictures (Multi-Picture Format) as "MPO".
LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")
# Long side of the image the numpy steps work on: plenty for a 20-pixel result, and it keeps
# a 12-megapixel photo as cheap as a thumbnail.
WORKING_SIDE = 256
# Below this side a background gradient cannot be told from the digit: flatten globally.
MIN_SIDE_TO_FLATTEN = 64
BACKGROUND_GRID = 8
# Ink is bright after orientation, so a low percentile of a block is its background as long
# as ink covers less than nine tenths of the block. (Noise biases it low by a constant, which
# the noise floor's median absorbs.)
BACKGROUND_PERCENTILE = 10
# The noise floor, in robust standard deviations of the background: far enough out that
# pure noise leaves at most a few isolated pixels above it.
NOISE_SIGMAS = 4.5
# Scales the median absolute deviation to a standard deviation for Gaussian noise.
MAD_TO_SIGMA = 1.4826
# JPEG and WebP flatten paper to one grey level, which makes the MAD zero although their
# ripples of a few levels remain: assume at least this much noise from them. (Lossless
# images can be truly noise-free, like MNIST's own, whose faintest edges must survive.)
LOSSY_NOISE_SIGMA = 2 / 255
# The ink level is this percentile of the pixels above the noise floor: stroke cores, not the
# anti-aliased edges, and not the few brightest outliers.
INK_LEVEL_PERCENTILE = 90
# No digit is written in fewer pixels than this across.
MIN_DIGIT_SIDE = 4
# Weaker contrast than this (of the full range) is not writing.
MIN_CONTRAST = 0.08
# A row or column belongs to the ink if it holds at least one fully inked pixel's worth.
MIN_LINE_MASS = 1.0
# Anti-aliasing and blur fade a stroke out over a line or two beyond the lines that hold a
# full pixel's worth of ink.
MAX_FRINGE = 2
# Less ink than this many fully inked pixels (at the working size) is a speck, not a digit.
MIN_INK_MASS = 4.0
# Strokes of one digit may leave empty lines between them (a detached bar of a 5, a broken
# stroke); a gap wider than this fraction of the joined span separates the digit from other
# marks.
MAX_GAP_FRACTION = 0.25

# What Pillow's decoders raise on damaged data: OSError ("image file is truncated"),
# SyntaxError (broken chunks, bad CRC), ValueError and EOFError (short or odd structures).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def preprocess(data: bytes, *, max_pixels: int) -> np.ndarray:
    """The MNIST-style float32 [28, 28] image of the digit in ``data`` (encoded image bytes).

    Raises ``errors.BadRequest`` (empty), ``NotAnImage``, ``ImageTooLarge`` (more than
    ``max_pixels`` declared), ``CorruptImage`` and ``NoInk``.
    """
    image = decode(data, max_pixels=max_pixels)
    if is_mnist_format(image):
        return image.luminance
    luminance = image.luminance
    if image.alpha is not None:
        luminance = fill_transparency(luminance, image.alpha)
    min_noise = LOSSY_NOISE_SIGMA if image.lossy else 0.0
    return normalise_like_mnist(extract_ink(luminance, min_noise_sigma=min_noise))


def declared_pixels(data: bytes) -> int | None:
    """Width x height as the image's header declares them (nothing is decoded), or None
    when the header cannot be read (``preprocess`` then says what is wrong)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
    except Exception:  # whatever a damaged header raises: preprocess() reports it properly
        return None
    return width * height


def to_uint8(image: np.ndarray) -> bytes:
    """The 784 bytes of a preprocessed image, 0-255 row-major, for storage."""
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8).tobytes()


# --- 1. decoding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """float32 in [0, 1] at the working size; alpha only when the image has transparency."""

    luminance: np.ndarray
    alpha: np.ndarray | None
    # From a lossy codec (JPEG, WebP), whose ripples a flat background does not show.
    lossy: bool


def decode(data: bytes, *, max_pixels: int) -> Decoded:
    """Decode the first frame, upright, reduced to the working size."""
    if not data:
        raise errors.BadRequest("the uploaded file is empty", code="empty_file")
    # Pillow warns (and past twice its global limit, raises) about decompression bombs while
    # opening; both become our 413. catch_warnings swaps the process-wide filter list, so
    # concurrent requests can at worst leave this one "error" filter installed: harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with _open(data, max_pixels=max_pixels) as image:
            try:
                # JPEG only (a no-op elsewhere): decode just the luma, scaled down in the DCT.
                image.draft("L", (WORKING_SIDE, WORKING_SIDE))
                # Decode the first frame completely now, so damage surfaces here.
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                luminance, alpha = _channels(_reduce(_canonical_mode(image)))
                return Decoded(luminance, alpha, lossy=image.format in LOSSY_FORMATS)
            except _DECODE_ERRORS as error:
                message = f"the {image.format} image is damaged: {error}"
                raise errors.CorruptImage(message) from error


def _open(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and enforce the pixel budget before anything is decoded."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise errors.NotAnImage(
            f"not an image in a supported format ({', '.join(FORMATS)})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise errors.ImageTooLarge("the image declares far too many pixels") from None
    except _DECODE_ERRORS as error:
        # A format was recognised, but its header is damaged or cut short.
        raise errors.CorruptImage(f"the image header is damaged: {error}") from error
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise errors.ImageTooLarge(
            f"the image is {width}x{height} pixels; at most {max_pixels} pixels are accepted"
        )
    return image


def _canonical_mode(image: Image.Image) -> Image.Image:
    """8-bit "L" or "LA" (when there is transparency), or for 16- and 32-bit greyscale "F"
    on the same 0-255 scale."""
    if image.mode.startswith("I"):
        # Pillow's own conversions clip 16-bit values to 8 bits instead of scaling them (so a
        # rare 16-bit colour key is ignored rather than converted through RGBA).
        scaled = np.asarray(image, dtype=np.float32) / np.float32(np.iinfo(np.uint16).max)
        return Image.fromarray(np.clip(scaled, 0.0, 1.0) * np.float32(255))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Through RGBA, so palette and colour-key transparency become a real alpha channel.
        return image.convert("RGBA").convert("LA")
    return image if image.mode == "L" else image.convert("L")


def _reduce(image: Image.Image) -> Image.Image:
    """Box-average by an integer factor so the long side is at most WORKING_SIDE."""
    factor = -(-max(image.size) // WORKING_SIDE)
    return image.reduce(factor) if factor > 1 else image


def _channels(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
    if image.mode == "LA":
        return pixels[..., 0], pixels[..., 1]
    return pixels, None


def is_mnist_format(image: Decoded) -> bool:
    """Whether ``image`` already is what MNIST's own normalisation makes: lossless 28x28
    greyscale, a black background (most pixels exactly 0), the ink's long side fitted to
    the 20-pixel box (19 after rounding) and its centre of mass on MNIST's centre.

    Every MNIST test digit passes this check; a digit that is off-centre, too small, on
    white paper or from a lossy codec goes through the whole pipeline.
    """
    pixels = image.luminance
    if image.alpha is not None or image.lossy or pixels.shape != (IMAGE_SIDE, IMAGE_SIDE):
        return False
    if np.count_nonzero(pixels) > pixels.size // 2:
        return False
    rows, cols = pixels.sum(axis=1), pixels.sum(axis=0)
    long_side = max(_inked_span(rows), _inked_span(cols))
    if long_side not in MNIST_FITTED_SIDES:
        return False
    mass = rows.sum()
    centre = (rows @ _INDICES / mass, cols @ _INDICES / mass)
    return all(abs(c - MNIST_CENTRE) <= MNIST_CENTRE_TOLERANCE for c in centre)


def _inked_span(profile: np.ndarray) -> int:
    inked = np.flatnonzero(profile)
    return int(inked[-1] - inked[0] + 1) if inked.size else 0


# --- 2. transparency -----------------------------------------------------------------------


def fill_transparency(luminance: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over the background that the transparent pixels stand for.

    When opaque pixels are the minority they are the strokes (a canvas export, where the RGB
    of transparent pixels is meaningless, often black like the ink): fill with the colour
    that contrasts with them. When they are the majority they include the paper: extend it.
    """
    opaque = alpha >= 0.5
    if not opaque.any():
        raise errors.NoInk("the image is fully transparent")
    if alpha.min() == 1.0:
        return luminance
    if opaque.mean() > 0.5:
        fill = float(np.median(luminance[opaque]))
    else:
        fill = 1.0 if np.average(luminance, weights=alpha) < 0.5 else 0.0
    return alpha * luminance + (1.0 - alpha) * np.float32(fill)


# --- 3. ink --------------------------------------------------------------------------------


def extract_ink(luminance: np.ndarray, *, min_noise_sigma: float = 0.0) -> np.ndarray:
    """Bright ink on a black, flat background, stretched so stroke cores reach 1."""
    if min(luminance.shape) < MIN_DIGIT_SIDE:
        raise errors.NoInk(f"a {luminance.shape[1]}x{luminance.shape[0]} image holds no digit")
    oriented = luminance if ink_is_light(luminance) else 1.0 - luminance
    return stretch_contrast(oriented - estimate_background(oriented), min_noise_sigma)


def ink_is_light(luminance: np.ndarray) -> bool:
    """Ink is the minority, so the median is background; ink is the farther extreme from it.

    The extremes are the 0.1st and 99.9th percentiles, to ignore a few noisy pixels.
    """
    darkest, median, lightest = np.percentile(luminance, (0.1, 50, 99.9))
    return bool(lightest - median > median - darkest)


def estimate_background(oriented: np.ndarray) -> np.ndarray:
    """A smooth background under bright ink: a low percentile per block, interpolated.

    Tracks uneven illumination (shadows, vignetting, tinted light) over the image.
    """
    height, width = oriented.shape
    if min(height, width) < MIN_SIDE_TO_FLATTEN:
        return np.full_like(oriented, np.percentile(oriented, BACKGROUND_PERCENTILE))
    block_h, block_w = height // BACKGROUND_GRID, width // BACKGROUND_GRID
    blocks = (
        oriented[: block_h * BACKGROUND_GRID, : block_w * BACKGROUND_GRID]
        .reshape(BACKGROUND_GRID, block_h, BACKGROUND_GRID, block_w)
        .transpose(0, 2, 1, 3)
        .reshape(BACKGROUND_GRID, BACKGROUND_GRID, -1)
    )
    grid = np.percentile(blocks, BACKGROUND_PERCENTILE, axis=2).astype(np.float32)
    # A block inside a thick stroke has no background of its own: take the lowest of its
    # neighbours' (the gradient of the light moves little from one block to the next).
    grid_image = Image.fromarray(grid).filter(ImageFilter.MinFilter(3))
    smooth = grid_image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(smooth, dtype=np.float32)


def noise_sigma(ink: np.ndarray, median: float) -> float:
    """A robust standard deviation of the background noise, the larger of two estimates.

    The median absolute deviation is right for blurred (correlated) noise but collapses to
    zero when the background is clipped at white, as on overexposed paper; the differences
    between horizontal neighbours still see clipped noise, but miss correlated noise.
    """
    deviation = np.median(np.abs(ink - median))
    neighbour_difference = np.median(np.abs(np.diff(ink, axis=1))) / np.sqrt(2)
    return float(MAD_TO_SIGMA * max(deviation, neighbour_difference))


def stretch_contrast(ink: np.ndarray, min_noise_sigma: float = 0.0) -> np.ndarray:
    """Map the noise floor to 0 and the ink level to 1, linearly, clipped.

    Raises ``errors.NoInk`` when nothing stands out from the background noise.
    """
    median = np.median(ink)
    floor = median + NOISE_SIGMAS * max(noise_sigma(ink, median), min_noise_sigma)
    above = ink[ink > floor]
    if above.size == 0:
        raise errors.NoInk("no ink stands out from the background")
    level = np.percentile(above, INK_LEVEL_PERCENTILE)
    if level - floor < MIN_CONTRAST:
        raise errors.NoInk("the image has too little contrast to hold a digit")
    stretched = (ink - floor) / (level - floor)
    return np.clip(stretched, 0.0, 1.0).astype(np.float32)


# --- 4. MNIST normalisation ----------------------------------------------------------------


def normalise_like_mnist(ink: np.ndarray) -> np.ndarray:
    """Crop the dominant ink, fit it into 20x20, centre it by mass in 28x28."""
    rows, cols = dominant_ink_bounds(ink)
    digit = ink[rows, cols]
    if digit.sum() < MIN_INK_MASS:
        raise errors.NoInk("only specks of ink, no digit")
    return centre_by_mass(fit_into_box(digit, MNIST_BOX))


def dominant_ink_bounds(ink: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of the main body of ink, ignoring specks and marks away from it.

    Alternates between column and row projections, each restricted to the other's span, so
    a mark beside the digit does not widen the rows and one above it does not widen the
    columns: a cheap stand-in for the largest connected component.
    """
    cols = dominant_span(ink.sum(axis=0))
    rows = dominant_span(ink[:, cols].sum(axis=1))
    cols = dominant_span(ink[rows, :].sum(axis=0))
    return rows, cols


def dominant_span(profile: np.ndarray) -> slice:
    """The heaviest run of inked lines, joined with the runs near it, grown over the faint
    anti-aliased edges."""
    inked = profile >= MIN_LINE_MASS
    if not inked.any():
        raise errors.NoInk("no line of the image holds enough ink")
    edges = np.diff(inked.astype(np.int8), prepend=0, append=0)
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    cumulative = np.concatenate(([0.0], np.cumsum(profile)))
    # Join runs[first:stop] with the nearer neighbour while the gap is small for the whole.
    first = int(np.argmax(cumulative[stops] - cumulative[starts]))
    stop = first + 1
    while True:
        gap_before = starts[first] - stops[first - 1] if first > 0 else np.inf
        gap_after = starts[stop] - stops[stop - 1] if stop < len(starts) else np.inf
        if gap_before <= gap_after:
            gap, joined = gap_before, (first - 1, stop)
        else:
            gap, joined = gap_after, (first, stop + 1)
        if gap == np.inf or gap > MAX_GAP_FRACTION * (stops[joined[1] - 1] - starts[joined[0]]):
            break
        first, stop = joined
    # Grow over the faint anti-aliased edges, up to MAX_FRINGE lines and only over lines with
    # some ink: farther out, faint lines are background noise, not the digit.
    start, stop = starts[first], stops[stop - 1]
    for _ in range(MAX_FRINGE):
        if start > 0 and profile[start - 1] > 0:
            start -= 1
        if stop < len(profile) and profile[stop] > 0:
            stop += 1
    return slice(int(start), int(stop))


def fit_into_box(digit: np.ndarray, box: int) -> np.ndarray:
    """Resize so the long side is ``box`` pixels, keeping the aspect ratio (anti-aliased)."""
    height, width = digit.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(digit).resize(size, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place ``digit`` in 28x28 so its centre of mass lands on MNIST's, by whole pixels."""
    height, width = digit.shape
    mass = digit.sum()
    centre_y = digit.sum(axis=1) @ np.arange(height) / mass
    centre_x = digit.sum(axis=0) @ np.arange(width) / mass
    top = int(np.clip(round(MNIST_CENTRE - centre_y), 0, IMAGE_SIDE - height))
    left = int(np.clip(round(MNIST_CENTRE - centre_x), 0, IMAGE_SIDE - width))
    canvas = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    canvas[top : top + height, left : left + width] = digit
    return canvas
