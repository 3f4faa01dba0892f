"""preprocess: drawings and photos -> MNIST-style 28x28, and safe image loading.

The drawings are synthesised here with Pillow (a "2", a "0", a "1"), so the expected
geometry is known exactly and no dataset is needed.
"""

from __future__ import annotations

import io
import itertools
import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile

from mnist_demo import preprocess
from mnist_demo.errors import DigitLabError
from mnist_demo.preprocess import (
    BlankImageError,
    centre_by_mass,
    crop_to_ink,
    fit_box,
    ink_map,
    match_pen,
    preprocessing_steps,
    squash_to_28,
    stroke_width,
    to_mnist,
)
from tools.drawn_digits import make_drawn_set

SUPER = 4  # shapes are drawn at 4x and reduced: anti-aliased like a browser canvas


def coverage(
    box: tuple[float, float, float, float],
    brush: float,
    shape: str = "2",
    size: tuple[int, int] = (280, 280),
) -> np.ndarray:
    """(H, W) float in [0, 1]: a digit-like shape stroked with a round brush in `box`
    (x0, y0, x1, y1)."""
    width, height = size
    layer = Image.new("L", (width * SUPER, height * SUPER), 0)
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = (v * SUPER for v in box)
    b = max(1, round(brush * SUPER))
    r = b / 2
    if shape == "0":
        draw.ellipse((x0 + r, y0 + r, x1 - r, y1 - r), outline=255, width=b)
    elif shape == "1":
        xm = (x0 + x1) / 2
        draw.line((xm, y0 + r, xm, y1 - r), fill=255, width=b)
    else:  # "2": top arc, diagonal, base
        mid = y0 + (y1 - y0) * 0.5
        draw.arc((x0 + r, y0 + r, x1 - r, mid), 180, 360 + 30, fill=255, width=b)
        points = [(x1 - r, (y0 + mid) / 2), (x0 + r, y1 - r), (x1 - r, y1 - r)]
        draw.line(points, fill=255, width=b, joint="curve")
        for x, y in points:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(layer.reduce(SUPER), dtype=np.float32) / 255


def canvas(ink: np.ndarray, stroke=(0, 0, 0), background=(255, 255, 255)) -> np.ndarray:
    """(H, W, 4) uint8 as streamlit-drawable-canvas returns it; background None means
    transparent (strokes only in alpha, RGB zero where nothing is drawn)."""
    a = ink[..., None]
    stroke = np.array(stroke, np.float32)
    if background is None:
        rgb = np.where(a > 0, stroke, 0.0)
        alpha = a * 255
    else:
        bg = np.array(background, np.float32)
        rgb = bg + a * (stroke - bg)
        alpha = np.full_like(a, 255)
    return (np.concatenate([rgb, alpha], axis=2) + 0.5).astype(np.uint8)


def photo(ink: np.ndarray, paper: float, pen: float, gradient: float, noise: float, seed=0):
    """(H, W) uint8: a grey photo of paper under uneven light, with camera noise."""
    rng = np.random.default_rng(seed)
    h, w = ink.shape
    light = (
        np.linspace(-gradient, gradient, w)[None, :]
        + np.linspace(-gradient / 2, gradient / 2, h)[:, None]
    )
    values = (paper + light) * (1 - ink) + pen * ink + rng.normal(0, noise, (h, w))
    return (np.clip(values, 0, 1) * 255 + 0.5).astype(np.uint8)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    r = np.arange(image.shape[0])
    total = image.sum()
    return float((image.sum(1) * r).sum() / total), float((image.sum(0) * r).sum() / total)


def bbox_sides(image: np.ndarray, level: float = 0.0) -> tuple[int, int]:
    rows, cols = np.flatnonzero((image > level).any(1)), np.flatnonzero((image > level).any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def aligned_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation over shifts of up to one pixel: centring by centre of mass
    rounds to whole pixels, so equal drawings may land one pixel apart."""
    best = -1.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.roll(np.roll(b, dy, 0), dx, 1)
            best = max(best, float(np.corrcoef(a.ravel(), shifted.ravel())[0, 1]))
    return best


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """A "2" the size MNIST would draw it, black on white."""
    return to_mnist(canvas(coverage((70, 40, 210, 240), 20)))


# --- output contract ---------------------------------------------------------------------


def test_output_is_28x28_float32_in_unit_range(reference):
    assert reference.shape == (28, 28)
    assert reference.dtype == np.float32
    assert reference.min() >= 0.0
    assert reference.max() == pytest.approx(1.0)


def test_centre_of_mass_is_at_the_centre_and_box_is_20(reference):
    cy, cx = centre_of_mass(reference)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert max(bbox_sides(reference)) == 20


def test_ink_amount_is_mnist_like(reference):
    # typical MNIST digit: ~13 % of pixels above 0.5, mean ~0.13, stroke ~2 px
    assert 0.07 < (reference > 0.5).mean() < 0.25
    assert 0.06 < reference.mean() < 0.22
    assert 1.4 < stroke_width(reference) < 3.2


# --- colour schemes ----------------------------------------------------------------------

SCHEMES = {
    "black on white": ((0, 0, 0), (255, 255, 255)),
    "white on black": ((255, 255, 255), (0, 0, 0)),
    "red on blue": ((220, 20, 20), (20, 40, 200)),
    "yellow on white": ((250, 220, 0), (255, 255, 255)),
    "grey on grey": ((90, 90, 90), (160, 160, 160)),
    "black on transparent": ((0, 0, 0), None),
    "white on transparent": ((255, 255, 255), None),
    "green on transparent": ((30, 200, 60), None),
}


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_colour_scheme_gives_the_same_digit(scheme, reference):
    stroke, background = SCHEMES[scheme]
    out = to_mnist(canvas(coverage((70, 40, 210, 240), 20), stroke, background))
    np.testing.assert_allclose(out, reference, atol=0.03)


def test_transparent_pixels_ignore_their_rgb(reference):
    """Only alpha matters where nothing is drawn, whatever colour the browser leaves."""
    rgba = canvas(coverage((70, 40, 210, 240), 20), (0, 0, 0), None)
    rgba[rgba[..., 3] == 0, :3] = 255
    np.testing.assert_allclose(to_mnist(rgba), reference, atol=0.03)


# --- position, size, stroke --------------------------------------------------------------


@pytest.mark.parametrize("dx,dy", [(-68, -38), (60, 35), (-60, 30), (0, 38)])
def test_position_does_not_matter(dx, dy, reference):
    out = to_mnist(canvas(coverage((70 + dx, 40 + dy, 210 + dx, 240 + dy), 20)))
    np.testing.assert_allclose(out, reference, atol=1e-5)


@pytest.mark.parametrize(
    "box,brush",
    [
        ((5, 5, 40, 55), 4),  # tiny, in a corner
        ((200, 210, 242, 270), 6),  # tiny, in the other corner
        ((42, 2, 236, 278), 28),  # huge, top to bottom
        ((100, 60, 170, 160), 10),  # small, centred
    ],
)
def test_size_does_not_matter(box, brush, reference):
    out = to_mnist(canvas(coverage(box, brush)))
    assert max(bbox_sides(out)) == 20
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert aligned_correlation(out, reference) > 0.85


def test_thin_strokes_stay_visible():
    """A 3 px brush on a digit filling the canvas would be 0.2 px wide at 20 px."""
    out = to_mnist(canvas(coverage((10, 10, 270, 270), 3)))
    assert out.max() == pytest.approx(1.0)
    assert 1.4 < stroke_width(out) < 3.2
    assert (out > 0.5).mean() > 0.07


def test_thick_strokes_do_not_become_blobs():
    """A 45 px brush on a 160 px zero: the hole must survive, the ring be MNIST-thin."""
    out = to_mnist(canvas(coverage((60, 60, 200, 220), 45, shape="0")))
    assert stroke_width(out) < 3.6
    cy, cx = round(centre_of_mass(out)[0]), round(centre_of_mass(out)[1])
    assert out[cy - 1 : cy + 2, cx - 1 : cx + 2].max() < 0.2  # the hole
    assert (out > 0.5).mean() < 0.3


def test_a_one_keeps_its_aspect():
    out = to_mnist(canvas(coverage((130, 30, 150, 250), 14, shape="1")))
    height, width = bbox_sides(out)
    assert height == 20 and width <= 5


def test_a_far_speck_is_ignored(reference):
    rgba = canvas(coverage((70, 40, 210, 240), 20))
    rgba[270:273, 5:8, :3] = 0  # a 3x3 dot in the corner
    np.testing.assert_allclose(to_mnist(rgba), reference, atol=1e-5)


# --- inputs: PIL, float, photos -----------------------------------------------------------


def test_pil_images_and_float_arrays_work(reference):
    rgba = canvas(coverage((70, 40, 210, 240), 20))
    for image in (
        Image.fromarray(rgba),
        Image.fromarray(rgba).convert("RGB"),
        Image.fromarray(rgba).convert("L"),
        Image.fromarray(rgba).convert("P"),
        rgba.astype(np.float32) / 255,
        rgba[..., :3],
        rgba[..., 0],
    ):
        np.testing.assert_allclose(to_mnist(image), reference, atol=0.03)


@pytest.mark.parametrize(
    "paper,pen,gradient,noise",
    [
        (0.7, 0.15, 0.1, 0.03),  # dark ink on grey paper, uneven light, noise
        (0.6, 0.1, 0.3, 0.02),  # strong shadow across the page
        (0.2, 0.85, 0.08, 0.04),  # chalk on a blackboard
    ],
)
def test_photos_of_paper(paper, pen, gradient, noise):
    ink = coverage((200, 100, 420, 400), 22, size=(640, 480))
    out = to_mnist(photo(ink, paper, pen, gradient, noise))
    assert aligned_correlation(out, to_mnist(ink)) > 0.9


def test_a_colour_photo():
    ink = coverage((200, 100, 420, 400), 22, size=(640, 480))
    rgb = np.stack([photo(ink, 0.75, 0.2, 0.1, 0.03, seed=c) for c in range(3)], axis=2)
    rgb[..., 2] = photo(ink, 0.6, 0.3, 0.1, 0.03, seed=9)  # bluish paper, bluish pen
    assert aligned_correlation(to_mnist(rgb), to_mnist(ink)) > 0.9


def test_a_big_photo_is_reduced_first():
    ink = coverage((600, 300, 1300, 1300), 70, size=(2000, 1500))
    out = to_mnist(photo(ink, 0.8, 0.1, 0.05, 0.02))
    assert aligned_correlation(out, to_mnist(ink)) > 0.9


def test_an_mnist_digit_comes_back_nearly_unchanged():
    """Uploading a 28x28 MNIST-style image is a fixed point (up to the resampling)."""
    digit = to_mnist(canvas(coverage((70, 40, 210, 240), 20)))
    again = to_mnist((digit * 255).astype(np.uint8))
    assert aligned_correlation(again, digit) > 0.97


# --- blank ---------------------------------------------------------------------------------


def _blank_photo() -> np.ndarray:
    return photo(np.zeros((480, 640), np.float32), 0.7, 0.0, 0.2, 0.04)


BLANKS = {
    "white": lambda: np.full((280, 280, 4), 255, np.uint8),
    "black": lambda: np.tile(np.array([0, 0, 0, 255], np.uint8), (280, 280, 1)),
    "transparent": lambda: np.zeros((280, 280, 4), np.uint8),
    "transparent with colour": lambda: np.tile(np.array([255, 0, 0, 0], np.uint8), (280, 280, 1)),
    "one colour": lambda: np.tile(np.array([30, 120, 200, 255], np.uint8), (280, 280, 1)),
    "grey float": lambda: np.full((100, 80), 0.5, np.float32),
    "PIL white": lambda: Image.new("RGB", (300, 200), "white"),
    "photo of blank paper": _blank_photo,
    "faint smudge": lambda: np.where(
        coverage((70, 40, 210, 240), 20)[..., None] > 0.5, 250, 255
    ).astype(np.uint8)[..., 0],
}


@pytest.mark.parametrize("kind", list(BLANKS))
def test_blank_images_raise(kind):
    with pytest.raises(BlankImageError):
        to_mnist(BLANKS[kind]())


def test_ink_map_of_a_canvas_is_the_stroke_coverage():
    """Anti-aliased edges keep their grey levels (below 10 % is dropped as noise)."""
    ink = coverage((70, 40, 210, 240), 20)
    found = ink_map(canvas(ink, (200, 0, 0), (0, 0, 90)))
    np.testing.assert_allclose(found[ink >= 0.12], ink[ink >= 0.12], atol=0.02)
    assert found[ink == 0].max() == 0.0


# --- uploads within a memory budget -------------------------------------------------------


def _png(width: int, height: int, mode: str = "L") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), 255).save(out, format="PNG")
    return out.getvalue()


def test_a_huge_png_is_refused_before_decoding():
    """A 6300x6300 PNG of ~170 kB was decoded in full (0.5 GB, 1 s) under the 40 MP
    limit; formats that decode in full now stop at 16 MP."""
    data = _png(6300, 6300)
    assert len(data) < 400_000
    with pytest.raises(
        preprocess.ImageFileError, match=r"too large \(39.7 megapixels; the limit is 16"
    ):
        preprocess.load_image(data)


def test_a_decoded_upload_is_kept_small():
    image = preprocess.load_image(_png(3000, 2000))
    assert max(image.size) <= preprocess.KEEP_SIDE


def test_decodes_run_at_most_two_at_a_time_and_a_long_queue_is_told_to_retry(monkeypatch):
    running, peak, lock = 0, 0, threading.Lock()
    real_load = ImageFile.ImageFile.load  # the decoding itself (not Image.load's no-op)

    def slow_load(self):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.3)
        try:
            return real_load(self)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(ImageFile.ImageFile, "load", slow_load)
    monkeypatch.setattr(preprocess, "DECODE_WAIT_S", 0.5)
    results: list[object] = []

    def upload() -> None:
        try:
            results.append(preprocess.load_image(_png(400, 400)))
        except preprocess.ImageBusyError as e:
            results.append(e)

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak == preprocess.DECODE_SLOTS
    busy = [r for r in results if isinstance(r, preprocess.ImageBusyError)]
    assert busy and "busy reading other photos" in str(busy[0])
    assert len(results) == 8


# --- what is not a drawing --------------------------------------------------------------


@pytest.mark.parametrize("brush", [8, 20, 40])
def test_a_click_or_a_tiny_dot_is_too_small_to_read(brush):
    """A single click used to be answered "0, 61 % confident" like a real digit."""
    canvas = np.zeros((280, 280, 4), np.uint8)
    image = Image.fromarray(canvas)
    ImageDraw.Draw(image).ellipse(
        [140 - brush / 2, 140 - brush / 2, 140 + brush / 2, 140 + brush / 2],
        fill=(255, 255, 255, 255),
    )
    with pytest.raises(preprocess.DrawingTooSmallError, match="too small to read"):
        preprocess.to_mnist(np.asarray(image))


def test_a_short_thick_one_is_still_a_digit():
    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(canvas).line([(140, 60), (140, 220)], fill=(255, 255, 255, 255), width=40)
    assert preprocess.to_mnist(np.asarray(canvas)).max() == pytest.approx(1.0)


def test_a_canvas_painted_all_over_says_so():
    painted = np.full((280, 280, 4), 255, np.uint8)
    painted[100:120, 100:180, :3] = 0  # a black scratch in white paint
    with pytest.raises(preprocess.FullCanvasError, match="painted nearly all over"):
        preprocess.check_canvas(painted, background=(0, 0, 0))
    drawn = np.zeros((280, 280, 4), np.uint8)
    drawn[40:240, 130:150] = 255
    preprocess.check_canvas(drawn, background=(0, 0, 0))  # a digit: fine


# --- the steps the Draw page shows ---------------------------------------------------------

STEP_FUNCTIONS = ("ink_map", "crop_to_ink", "match_pen", "fit_box", "centre_by_mass")


def test_to_mnist_runs_the_named_steps_and_returns_the_last(monkeypatch):
    """The Draw page's strip shows these very functions' results: to_mnist calls each
    once, in order, on the previous one's output, and returns the last output."""
    calls: list[tuple[str, object, np.ndarray]] = []

    def spy(name):
        real = getattr(preprocess, name)

        def step(image):
            out = real(image)
            calls.append((name, image, out))
            return out

        return step

    for name in STEP_FUNCTIONS:
        monkeypatch.setattr(preprocess, name, spy(name))
    drawing = canvas(coverage((70, 40, 210, 240), 20))
    out = to_mnist(drawing)
    assert [name for name, _, _ in calls] == list(STEP_FUNCTIONS)
    assert calls[0][1] is drawing
    for (_, _, previous), (_, given, _) in itertools.pairwise(calls):
        assert given is previous
    assert out is calls[-1][2]

    calls.clear()
    steps = preprocessing_steps(drawing)
    assert [s.name for s in steps] == ["ink", "crop", "pen", "box", "centred"]
    assert all(s.image is c for s, (_, _, c) in zip(steps, calls, strict=True))


def composed(image) -> np.ndarray:
    return centre_by_mass(fit_box(match_pen(crop_to_ink(ink_map(image)))))


def same_result(a, b) -> None:
    """Both give the same array, or both refuse with the same error."""
    results = []
    for f in (a, b):
        try:
            results.append(f())
        except DigitLabError as e:
            results.append(type(e))
    if isinstance(results[0], np.ndarray):
        np.testing.assert_array_equal(results[0], results[1])
    else:
        assert results[0] == results[1]


def test_the_steps_composed_are_to_mnist_on_real_drawings(mnist):
    _, (x_test, y_test) = mnist
    canvases, _, _ = make_drawn_set(x_test, y_test, 60, seed=5)
    for drawing in canvases:
        same_result(lambda d=drawing: composed(d), lambda d=drawing: to_mnist(d))
        same_result(
            lambda d=drawing: preprocessing_steps(d)[-1].image, lambda d=drawing: to_mnist(d)
        )


def test_the_steps_composed_are_to_mnist_on_an_uploaded_photo():
    ink = coverage((200, 100, 420, 400), 22, size=(640, 480))
    rgb = np.stack([photo(ink, 0.75, 0.2, 0.1, 0.03, seed=c) for c in range(3)], axis=2)
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG", quality=85)
    upload = preprocess.load_image(jpeg.getvalue())
    steps = preprocessing_steps(upload)
    np.testing.assert_array_equal(composed(upload), to_mnist(upload))
    np.testing.assert_array_equal(steps[-1].image, to_mnist(upload))
    assert steps[0].image.shape == (240, 320)  # the whole photo, halved to under 512 px


def test_each_step_does_what_its_caption_says():
    drawing = canvas(coverage((5, 5, 40, 55), 4))  # tiny, thin, in the top-left corner
    ink, crop, pen, box, centred = (s.image for s in preprocessing_steps(drawing))
    assert ink.shape == (280, 280)
    assert crop.shape == bbox_sides(ink)  # tight around the ink
    assert max(pen.shape) == 80
    target = preprocess.MNIST_STROKE * preprocess.WORK_SCALE  # MNIST's pen, at 80 px
    scaled = stroke_width(crop) * max(pen.shape) / max(crop.shape)
    assert scaled < target / preprocess.STROKE_TOLERANCE < stroke_width(pen) < target  # thickened
    assert max(box.shape) == 20 and box.max() == pytest.approx(1.0)
    cy, cx = centre_of_mass(centred)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    captions = [s.caption for s in preprocessing_steps(drawing)]
    assert f"({crop.shape[1]}×{crop.shape[0]})" in captions[1]


def test_squashing_the_whole_canvas_keeps_a_corner_digit_small_and_in_its_corner():
    """What the Draw page shows next to the steps: without them, a small digit drawn in
    a corner reaches the model as a few faint pixels in that corner."""
    ink = ink_map(canvas(coverage((5, 5, 40, 55), 6)))  # 35x50 px of a 280 canvas
    squashed = squash_to_28(ink)
    assert squashed.shape == (28, 28) and squashed.dtype == np.float32
    rows, cols = bbox_sides(squashed)
    assert rows <= 6 and cols <= 5
    assert squashed[6:].max() == 0 and squashed[:, 5:].max() == 0
    assert squashed.max() < 0.7  # area averaging: a thin stroke turns grey


# --- for_display ---------------------------------------------------------------------------


def test_for_display_enlarges_small_pictures_by_whole_pixels():
    box = np.zeros((20, 14), np.float32)
    box[3, 4] = 1.0
    shown = preprocess.for_display(box, 100)
    assert shown.dtype == np.uint8 and shown.shape == (100, 70)  # 5x, sharp squares
    assert shown[15:20, 20:25].min() == 255 and shown[14, 20] == 0 and shown[15, 19] == 0


def test_for_display_reduces_large_pictures_keeping_their_shape():
    photo = Image.fromarray(np.full((600, 900, 3), 80, np.uint8))
    shown = preprocess.for_display(photo, 100)
    assert shown.shape == (67, 100, 3) and shown.dtype == np.uint8
