"""A canvas drawing or a photo -> the 28x28 image the MNIST model expects.

The model only ever saw MNIST: white digits on black, size-normalised so the longest
side is 20 px (aspect kept, anti-aliased), then placed in 28x28 with the centre of mass
at the centre. A drawing from a 280x280 canvas, with any colours and the digit anywhere
and any size, fails badly unless it goes through the same steps. `to_mnist` is their
composition, `preprocessing_steps` the same with every intermediate image kept (the Draw
page shows them):

1. `ink_map`: how much "ink" each pixel holds, from 0 (background) to 1, for any colour
   scheme: distance from the background colour (estimated from the border), with alpha
   premultiplied so strokes that live only in the alpha channel count too.
2. `crop_to_ink`: the ink's bounding box, ignoring small specks far from the digit;
3. `match_pen`: at 4x the final size, bring the stroke width to MNIST's (about 2 px): a
   thin brush on a big digit would otherwise fade away, a fat one become a blob;
4. `fit_box`: scale the longest side to 20 px;
5. `centre_by_mass`: place in 28x28 so the centre of mass is at (14, 14).

`squash_to_28` is what skipping 2-5 gives: the whole ink map resized to 28x28.

`load_image` opens an uploaded file defensively: the errors it raises are meant to be
shown to a student as they are. `for_display` sizes any of these pictures for the page.

Only NumPy and Pillow: this runs on every stroke, so it must take a few milliseconds.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from mnist_demo.data import IMAGE_SIZE, to_byte_pixels, to_unit_pixels
from mnist_demo.errors import DigitLabError

CANVAS_SIZE = 280  # the Draw page's canvas, px: 10x MNIST, big enough for a finger
DIGIT_BOX = 20  # MNIST's size-normalisation box
MNIST_STROKE = 2.0  # median stroke width of MNIST digits at 28x28 (2 * ink / total variation)
STROKE_TOLERANCE = 1.35  # leave strokes alone within this factor of MNIST_STROKE
WORK_SCALE = 4  # the stroke width is adjusted at 4x the final size, in 1/4-pixel steps
WORK_MAX_SIDE = 512  # larger images are reduced first: the result is 28x28 anyway
BORDER_FRACTION = 0.02  # the frame of pixels that tells the background colour
UNEVEN_BACKGROUND = 0.02  # a frame mostly varying more than this is a photo: model the light
MIN_CONTRAST = 0.08  # ink must differ from the background by this much (0..1 scale)
INK_FLOOR = 0.1  # less than 10 % of full ink is noise, not stroke
SPECK_FRACTION = 0.02  # a separate blob with less of the ink than this is a speck
NOISE_SIGMAS = 3.0  # background noise below median + this many sigmas is not ink

# Memory budget for uploads, the one input a student controls. Refused before a pixel
# is decoded: a JPEG over 40 MP (JPEGs decode at 1/2, 1/4 or 1/8 size, `draft`, so even
# that costs ~10 MB), any other format over 16 MP (those decode in full: 16 MP RGBA is
# 64 MB; a 6300x6300 PNG of 170 kB used to take 0.5 GB). At most DECODE_SLOTS decodes
# run at once; a request that waits DECODE_WAIT_S for a slot is told to retry.
MAX_PIXELS = 40_000_000  # JPEG
MAX_FULL_DECODE_PIXELS = 16_000_000  # PNG, WebP, GIF, BMP
DECODE_SLOTS = 2
DECODE_WAIT_S = 10.0
KEEP_SIDE = 1024  # a decoded upload is reduced to this at once: to_mnist needs 512
MIN_SIDE = 8
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
PHOTO_DRAFT_SIDE = 1024  # JPEGs decode straight to about this size: much faster


class BlankImageError(DigitLabError, ValueError):
    """The image has no ink: nothing to recognise."""


class ImageFileError(DigitLabError, ValueError):
    """An uploaded file that cannot be used; the message says why and what to do."""


class DrawingTooSmallError(DigitLabError, ValueError):
    """A dot or a tiny mark: nothing a digit could be read from."""


class FullCanvasError(DigitLabError, ValueError):
    """The canvas is painted nearly all over: no digit shape is left to read."""


class ImageBusyError(DigitLabError):
    """Every decoding slot stayed busy: thirty students uploaded at once."""


_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)


# --- opening a file ------------------------------------------------------------------


def load_image(source: bytes | str | Path | BinaryIO) -> Image.Image:
    """Open an uploaded image safely and return it decoded and upright.

    Uploads are untrusted: a file may not be an image, be cut short, or declare a size
    whose pixels would not fit in memory (a decompression bomb). `Image.open` only reads
    the header, so the size is checked before any pixel is decoded. Only common picture
    formats are tried, which keeps Pillow's rarer (and riskier) decoders out of reach.
    """
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(fp, formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _too_large(_pixels_in_message(str(e))) from None
    except FileNotFoundError:
        raise
    except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageFileError(
            "This file is not an image (PNG, JPEG or WebP). Choose a picture file."
        ) from e
    width, height = image.size
    limit = MAX_PIXELS if image.format == "JPEG" else MAX_FULL_DECODE_PIXELS
    if width * height > limit:
        raise _too_large(width * height, limit)
    if min(width, height) < MIN_SIDE:
        raise ImageFileError(
            f"The image is too small ({width}x{height}; at least {MIN_SIDE}x{MIN_SIDE} "
            "pixels). Use a larger picture."
        )
    if image.format == "JPEG":
        image.draft(image.mode, (PHOTO_DRAFT_SIDE, PHOTO_DRAFT_SIDE))
    if not _decode_slots.acquire(timeout=DECODE_WAIT_S):
        raise ImageBusyError("The server is busy reading other photos. Try again in a few seconds.")
    try:  # inside the slot: the full-size pixels live only here
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageFileError(
                "The image file is truncated or damaged. Save or export it again and retry."
            ) from e
        upright: Image.Image = image
        with contextlib.suppress(Exception):  # a broken EXIF block must not cost the picture
            upright = ImageOps.exif_transpose(image)
        return _reduced(_plain_mode(upright), KEEP_SIDE)
    finally:
        _decode_slots.release()


def _megapixels(pixels: int) -> str:
    value = pixels / 1e6
    if value < 1:
        return f"{value:.2g}"
    return f"{value:.1f}".removesuffix(".0") if value < 100 else f"{value:.0f}"


def _too_large(pixels: int | None, limit: int = MAX_PIXELS) -> ImageFileError:
    size = f"{_megapixels(pixels)} megapixels" if pixels else "too many pixels"
    return ImageFileError(
        f"The image is too large ({size}; the limit is {_megapixels(limit)} "
        "megapixels). Use a smaller picture or crop it."
    )


def _pixels_in_message(message: str) -> int | None:
    match = re.search(r"\((\d+) pixels\)", message)
    return int(match.group(1)) if match else None


def _plain_mode(image: Image.Image) -> Image.Image:
    """One of L, RGB, RGBA: the modes `to_mnist` and the page's st.image understand."""
    if image.mode in ("L", "RGB", "RGBA") and "transparency" not in image.info:
        return image  # already plain: no full-size copy
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        return image.convert("RGBA")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if values.max() > 255 else 255.0
        return Image.fromarray(to_byte_pixels(values / top))
    if image.mode in ("L", "1"):
        return image.convert("L")
    return image.convert("RGB")


# --- image -> premultiplied float pixels ---------------------------------------------


def _as_pixels(image: np.ndarray | Image.Image) -> np.ndarray:
    """(H, W, C) float32 in [0, 1], at most WORK_MAX_SIDE on the long side, alpha (if
    any) premultiplied so a transparent pixel is zero whatever colour it claims."""
    if isinstance(image, Image.Image):
        image = _plain_mode(image)
        image = _reduced(image)
        array = np.asarray(image)
    else:
        array = np.asarray(image)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
            raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got {array.shape}")
        if array.size == 0:
            raise BlankImageError("The image is empty: draw or upload a digit.")
        if max(array.shape[:2]) > WORK_MAX_SIDE:
            array = np.asarray(_reduced(Image.fromarray(to_byte_pixels(to_unit_pixels(array)))))
    pixels = to_unit_pixels(array)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape[2] in (2, 4):
        alpha = pixels[..., -1:]
        if alpha.min() >= 1.0:
            pixels = pixels[..., :-1]  # opaque: alpha carries nothing
        else:
            pixels = np.concatenate([pixels[..., :-1] * alpha, alpha], axis=2)
    return pixels


def _reduced(image: Image.Image, side: int = WORK_MAX_SIDE) -> Image.Image:
    """Block-average big images down: the digit ends up 20 px tall, so a 12-megapixel
    photo carries nothing the result needs and would cost 100x the time."""
    factor = -(-max(image.size) // side)
    return image.reduce(factor) if factor > 1 else image


# --- ink ------------------------------------------------------------------------------


def ink_map(image: np.ndarray | Image.Image) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how much ink each pixel holds, 0 being background.

    The background colour is the median of the image's frame, so it works for black on
    white, white on black, a red pen on a blue canvas, strokes in alpha only, or paper.
    Photos add noise and uneven light: the light is modelled as a smooth field, values
    within a few noise sigmas of the background or under INK_FLOOR are zeroed, and an
    isolated noisy pixel is removed by a 3x3 median.
    Raises BlankImageError when nothing stands out from the background.
    """
    pixels = _as_pixels(image)
    distance = _distance_from_background(pixels)
    low, high = _background_and_ink_levels(distance)
    if high - low < MIN_CONTRAST:
        raise BlankImageError("The image has no ink: draw or upload a digit.")
    ink = np.clip((distance - low) * np.float32(1 / (high - low)), 0.0, 1.0)
    ink[ink < INK_FLOOR] = 0.0  # JPEG ringing, shadows: would stretch the bounding box
    if low > 0:  # a noisy background (a photo): drop lone pixels
        ink = np.asarray(Image.fromarray(ink).filter(ImageFilter.MedianFilter(3)))
    return ink


def _frame_width(height: int, width: int) -> int:
    return max(1, round(BORDER_FRACTION * min(height, width)))


def _frame(pixels: np.ndarray) -> np.ndarray:
    """(K, C) pixels of the image's outer frame, where the background shows."""
    height, width, channels = pixels.shape
    k = _frame_width(height, width)
    parts = [pixels[:k], pixels[-k:], pixels[k:-k, :k], pixels[k:-k, -k:]]
    return np.concatenate([part.reshape(-1, channels) for part in parts])


def _distance_from_background(pixels: np.ndarray) -> np.ndarray:
    """Colour distance of each pixel from the background: one colour (the frame's
    median) for a canvas, a smooth field for a photo whose frame is not one colour."""
    frame = _frame(pixels)
    background = np.median(frame, axis=0).astype(np.float32)
    spread = np.abs(frame - background).max(axis=1)
    if np.median(spread) > UNEVEN_BACKGROUND:  # most of the frame varies: light, noise
        background = _background_field(pixels)
    diff = pixels - background
    # root mean square over channels: grey, RGB and RGBA share one contrast scale
    return np.sqrt(np.einsum("hwc,hwc->hw", diff, diff) * np.float32(1 / pixels.shape[2]))


def _background_field(pixels: np.ndarray) -> np.ndarray:
    """The paper's colour under uneven light, as a smooth (H, W, C) field.

    Light falls off smoothly across a page, so a quadratic surface per channel,
    c0 + c1 y + c2 x + c3 y² + c4 x² + c5 xy, fitted to the frame, describes it well;
    the fit is repeated without the frame pixels it explains worst, so a stroke that
    touches the edge does not bend it.
    """
    height, width = pixels.shape[:2]
    k = _frame_width(height, width)
    in_frame = np.zeros((height, width), dtype=bool)
    in_frame[:k], in_frame[-k:], in_frame[:, :k], in_frame[:, -k:] = True, True, True, True
    ys, xs = np.nonzero(in_frame)
    y, x = ys / height - 0.5, xs / width - 0.5
    basis = np.stack([np.ones_like(y), y, x, y * y, x * x, x * y], axis=1)
    values = pixels[ys, xs]
    coef = np.linalg.lstsq(basis, values, rcond=None)[0]
    residual = np.abs(basis @ coef - values).max(axis=1)
    keep = residual <= max(3 * 1.4826 * float(np.median(residual)), 2 / 255)
    c = np.linalg.lstsq(basis[keep], values[keep], rcond=None)[0].astype(np.float32)
    gy = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None, None]
    gx = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :, None]
    return (c[0] + c[1] * gy + c[3] * gy * gy) + (c[2] * gx + c[4] * gx * gx) + c[5] * (gy * gx)


def _background_and_ink_levels(distance: np.ndarray) -> tuple[float, float]:
    """(noise ceiling, full-ink level) of a distance map, both from one histogram.

    Otsu's threshold splits background from ink. The ink level is the median of the ink
    class (so a few extreme pixels cannot set it); the noise ceiling is the background
    class's median plus a few robust sigmas, which is exactly 0 on a clean canvas and
    keeps the anti-aliased stroke edges intact there.
    """
    top = float(distance.max())
    if top < MIN_CONTRAST:
        return 0.0, top
    bins = 256
    levels = np.minimum((distance * ((bins - 1) / top)).astype(np.intp), bins - 1)
    hist = np.bincount(levels.ravel(), minlength=bins).astype(np.float64)
    t = _otsu(hist)
    step = top / (bins - 1)
    bg_p25, bg_p50, bg_p75 = _hist_percentiles(hist[: t + 1], (25, 50, 75))
    sigma = (bg_p75 - bg_p25) / 1.349
    low = (bg_p50 + NOISE_SIGMAS * sigma) * step
    (ink_p50,) = _hist_percentiles(hist[t + 1 :], (50,))
    high = (t + 1 + ink_p50) * step
    return low, high


def _otsu(hist: np.ndarray) -> int:
    """Index of the last background bin under Otsu's between-class variance criterion."""
    bins = np.arange(len(hist), dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * bins)
    total, mean_total = w0[-1], m0[-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_total * w0 - m0 * total) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    return int(np.argmax(between[:-1]))


def _hist_percentiles(hist: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Bin indices at the given percentiles of a histogram (the bin's lower edge)."""
    cumulative = np.cumsum(hist)
    if cumulative[-1] <= 0:
        return [0.0 for _ in qs]
    return [float(np.searchsorted(cumulative, q / 100 * cumulative[-1], side="left")) for q in qs]


# --- crop, scale, centre --------------------------------------------------------------


def _ink_bounds(profile: np.ndarray) -> tuple[int, int] | None:
    """[start, stop) along one axis covering the digit, from the ink mass per row (or
    column). Runs of non-empty rows separated by empty ones are the digit's parts or
    specks; a run holding less than SPECK_FRACTION of the ink at the ends is dropped."""
    present = profile > 1e-3 * profile.max()
    if not present.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate([[0], present.astype(np.int8), [0]])))
    starts, stops = edges[::2], edges[1::2]
    total = profile.sum()
    mass = np.array([profile[a:b].sum() for a, b in zip(starts, stops, strict=True)])
    keep = np.flatnonzero(mass >= SPECK_FRACTION * total)
    if keep.size == 0:
        keep = np.array([int(np.argmax(mass))])
    return int(starts[keep[0]]), int(stops[keep[-1]])


def _resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased resize of a float image: area averaging down, bilinear up."""
    shrinking = height <= values.shape[0] and width <= values.shape[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(values).resize((width, height), method))


def _box_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(h, w) with the longest side `side` and the aspect kept."""
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 * area / perimeter, with the perimeter measured as
    the total variation of the grey image, which is blur-proof (an anti-aliased edge
    adds up to the same as a sharp one)."""
    variation = np.abs(np.diff(ink, axis=0)).sum() + np.abs(np.diff(ink, axis=1)).sum()
    variation += ink[0].sum() + ink[-1].sum() + ink[:, 0].sum() + ink[:, -1].sum()
    return float(2 * ink.sum() / variation) if variation > 0 else 0.0


def _morph(ink: np.ndarray, steps: int, grow: bool) -> np.ndarray:
    """Grey dilation (grow) or erosion by `steps` pixels with a near-round structuring
    element: 3x3 crosses and squares alternate, which gives an octagon."""
    pick = np.maximum if grow else np.minimum
    out = ink
    for i in range(steps):
        p = np.pad(out, 1, mode="constant", constant_values=0.0)
        out = pick(out, pick(pick(p[:-2, 1:-1], p[2:, 1:-1]), pick(p[1:-1, :-2], p[1:-1, 2:])))
        if i % 2 == 1:
            diagonal = pick(pick(p[:-2, :-2], p[:-2, 2:]), pick(p[2:, :-2], p[2:, 2:]))
            out = pick(out, diagonal)
    return out


def _normalise_stroke(ink: np.ndarray) -> np.ndarray:
    """Bring the stroke width near MNIST's, working at WORK_SCALE x the final size.

    A 10 px brush on a digit that fills a 280 px canvas comes out under 1 px wide and
    faint; a 40 px brush on a small digit closes every loop. Thin strokes are dilated;
    thick ones eroded, but never so far that the digit would lose most of its ink.
    """
    target = MNIST_STROKE * WORK_SCALE
    width = stroke_width(ink)
    if width <= 0:
        return ink
    if width < target / STROKE_TOLERANCE:
        return _morph(ink, round((target - width) / 2), grow=True)
    if width > target * STROKE_TOLERANCE:
        steps = round((width - target) / 2)
        while steps > 0:
            thinner = _morph(ink, steps, grow=False)
            if thinner.sum() >= 0.25 * ink.sum():
                return thinner
            steps -= 1
    return ink


MIN_DIGIT_FRACTION = 0.04  # a digit's longest side, of the picture's shorter side
MIN_DIGIT_STROKES = 3.0  # ...and of its stroke width (a round dot measures 2.5-2.7)
MAX_CANVAS_COVER = 0.5  # a canvas more than half painted holds no digit shape


def _refuse_a_dot(crop: np.ndarray, picture_side: int) -> None:
    """A click or a tiny mark has no shape to read; MNIST would answer it with a
    confident guess (a dot was read "0, 61 %"). Small is relative: to the picture, and
    to the pen (a thick pen's dot is large, but only about two stroke widths across)."""
    longest = max(crop.shape)
    if longest < MIN_DIGIT_FRACTION * picture_side or longest < MIN_DIGIT_STROKES * stroke_width(
        crop
    ):
        raise DrawingTooSmallError(
            "That is too small to read: draw the whole digit, as big as the square."
        )


def check_canvas(canvas: np.ndarray, background: tuple[int, int, int]) -> None:
    """Refuse a canvas painted nearly all over (FullCanvasError): ink_map would take the
    painted frame for the background and see no digit at all."""
    rgba = np.asarray(canvas)
    if rgba.ndim != 3 or rgba.shape[2] < 3:
        return
    rgb = rgba[..., :3].astype(np.int16)
    painted = np.abs(rgb - np.array(background, np.int16)).max(axis=2) > 32
    if rgba.shape[2] == 4:
        painted &= rgba[..., 3] > 32
    if painted.mean() > MAX_CANVAS_COVER:
        raise FullCanvasError(
            "The canvas is painted nearly all over, so there is no digit shape to read. "
            "Press Clear and draw one digit."
        )


# --- the steps, one function each -------------------------------------------------------


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """Step 2: the ink map cut to the digit's bounding box (specks far from it left out).
    Raises DrawingTooSmallError for a dot or a tiny mark, small for this picture."""
    rows = _ink_bounds(ink.sum(axis=1))
    cols = _ink_bounds(ink.sum(axis=0))
    if rows is None or cols is None:
        raise BlankImageError("The image has no ink: draw or upload a digit.")
    crop = ink[rows[0] : rows[1], cols[0] : cols[1]]
    _refuse_a_dot(crop, min(ink.shape))
    return crop


def match_pen(crop: np.ndarray) -> np.ndarray:
    """Step 3: the crop scaled so its longest side is WORK_SCALE x 20 px, its strokes
    thickened or thinned there to MNIST's width (fine steps need the larger size)."""
    height, width = _box_size(crop.shape[0], crop.shape[1], DIGIT_BOX * WORK_SCALE)
    return _normalise_stroke(_resize(crop, height, width))


def fit_box(work: np.ndarray) -> np.ndarray:
    """Step 4: longest side 20 px, aspect kept, the strongest ink at 1."""
    height, width = _box_size(work.shape[0], work.shape[1], DIGIT_BOX)
    box = np.clip(_resize(work, height, width), 0.0, None)
    peak = box.max()
    if peak <= 0:
        raise BlankImageError("The image has no ink: draw or upload a digit.")
    return box * np.float32(1 / peak)


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Step 5: paste into 28x28 so the centre of mass lands on pixel (14, 14), as MNIST
    did. This is the model's input."""
    h, w = digit.shape
    mass = digit.sum()
    cy = float((digit.sum(axis=1) * np.arange(h)).sum() / mass)
    cx = float((digit.sum(axis=0) * np.arange(w)).sum() / mass)
    top, left = round(IMAGE_SIZE / 2 - cy), round(IMAGE_SIZE / 2 - cx)
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, IMAGE_SIZE), min(left + w, IMAGE_SIZE)
    out[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def squash_to_28(ink: np.ndarray) -> np.ndarray:
    """(28, 28) float32: the whole ink map squashed to 28x28 (area average), with no crop,
    no size normalisation and no centring: what the model would get without steps 2-5."""
    return np.asarray(Image.fromarray(ink).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX))


@dataclass(frozen=True)
class Step:
    """One preprocessing step's result: `image` is (H, W) float32 ink in [0, 1]."""

    name: str  # "ink", "crop", "pen", "box", "centred"
    caption: str  # one line saying what the step did, for the Draw page
    image: np.ndarray


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}×{image.shape[0]}"


def preprocessing_steps(image: np.ndarray | Image.Image) -> list[Step]:
    """Every step of `to_mnist` with its result, in order; the last is `to_mnist`'s.

    `image` is a canvas's RGBA array, a grey or colour photo (dark ink on light paper or
    the reverse), as a uint8 or [0, 1] float array or a PIL image. Raises
    BlankImageError when there is no digit to see, DrawingTooSmallError for a dot.
    """
    ink = ink_map(image)
    crop = crop_to_ink(ink)
    work = match_pen(crop)
    box = fit_box(work)
    centred = centre_by_mass(box)
    return [
        Step("ink", f"The ink found ({_size(ink)})", ink),
        Step("crop", f"Cropped to the ink ({_size(crop)})", crop),
        Step("pen", f"MNIST's pen width ({_size(work)})", work),
        Step("box", f"Shrunk into 20×20 ({_size(box)})", box),
        Step("centred", "Centred by mass in 28×28: the input", centred),
    ]


def to_mnist(image: np.ndarray | Image.Image) -> np.ndarray:
    """(28, 28) float32 in [0, 1], a white digit on black, normalised the MNIST way: the
    last of `preprocessing_steps`. Raises BlankImageError when there is no digit to see."""
    return preprocessing_steps(image)[-1].image


# --- showing the pictures ----------------------------------------------------------------


def for_display(image: np.ndarray | Image.Image, side: int) -> np.ndarray:
    """uint8 pixels of `image` (uint8, or floats in [0, 1]) about `side` px on its longer
    side: a small one enlarged by whole pixels, so a 20x20 keeps its sharp grid; a large
    one reduced (a photo would otherwise be sent to the browser at full size)."""
    array = to_byte_pixels(np.asarray(image))
    longest = max(array.shape[:2])
    if longest <= side:
        scale = max(1, side // longest)
        return array.repeat(scale, axis=0).repeat(scale, axis=1)
    picture = Image.fromarray(array)
    picture.thumbnail((side, side))
    return np.asarray(picture)
