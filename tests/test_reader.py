"""reader.Reader: one call from a canvas, a photo or a 28x28 to a Reading; the same
probabilities as the model itself; one network pass per reading; the words for each
verdict; and today's messages for everything a user can get wrong."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from mnist_demo import novelty, preprocess
from mnist_demo.config import DEFAULT_MODEL_PATH
from mnist_demo.errors import ModelFileError
from mnist_demo.model import load_model
from mnist_demo.novelty import DIGIT, NOT_A_DIGIT, NOT_SURE, Rule, RuleFileError
from mnist_demo.preprocess import (
    BlankImageError,
    DrawingTooSmallError,
    FullCanvasError,
    ImageFileError,
    to_mnist,
)
from mnist_demo.reader import DRAWING, INPUT, PHOTO, Reader
from tools.drawn_digits import on_the_draw_page, pen_strokes, place_strokes, render_strokes
from tools.non_digits import non_digit_canvas


@pytest.fixture(scope="module")
def lab7():
    return load_model(DEFAULT_MODEL_PATH)


@pytest.fixture(scope="module")
def reader(lab7):
    return Reader(lab7, DEFAULT_MODEL_PATH)


def direct(model, image28: np.ndarray) -> np.ndarray:
    """The model's own answer for one 28x28: an eager call, no Predictor, no Reader."""
    return model(image28.reshape(1, 28, 28, 1).astype(np.float32), training=False).numpy()[0]


def seven_canvas(x_test: np.ndarray) -> np.ndarray:
    """MNIST's first test digit, a 7, re-drawn as brush strokes on the Draw page's canvas."""
    placed = place_strokes(pen_strokes(x_test[0]), size=200, top=40, left=40)
    return on_the_draw_page(render_strokes(placed, brush=20))


def paper_photo(digit: np.ndarray) -> Image.Image:
    """Dark ink on white paper, 300x300, as a phone photo of a digit would be."""
    big = Image.fromarray(digit).resize((300, 300), Image.Resampling.BILINEAR)
    return Image.fromarray(255 - np.asarray(big)).convert("RGB")


def png(image: Image.Image | np.ndarray, fmt: str = "PNG") -> bytes:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    picture.save(buf, format=fmt)
    return buf.getvalue()


def on_black(grey: np.ndarray) -> np.ndarray:
    return np.dstack([grey, grey, grey, np.full_like(grey, 255)])


# --- one call, whatever the picture -----------------------------------------------------


def test_a_canvas_is_read_through_the_steps_with_the_models_own_probabilities(reader, lab7, mnist):
    _, (x_test, _) = mnist
    canvas = seven_canvas(x_test)
    reading = reader.read(canvas)
    assert reading.source == DRAWING and reading.picture is canvas
    assert [s.name for s in reading.steps] == ["ink", "crop", "pen", "box", "centred"]
    np.testing.assert_array_equal(reading.image28, to_mnist(canvas))
    np.testing.assert_allclose(reading.probabilities, direct(lab7, reading.image28), atol=1e-6)
    assert reading.digit == 7 and reading.verdict.kind == DIGIT


@pytest.mark.parametrize("given", ["image", "bytes", "path"])
def test_a_photo_is_read_however_it_is_handed_over(reader, lab7, mnist, tmp_path, given):
    _, (x_test, _) = mnist
    photo = paper_photo(x_test[1])  # a 2
    data = png(photo, "JPEG")
    (tmp_path / "two.jpg").write_bytes(data)
    picture = {"image": preprocess.load_image(data), "bytes": data, "path": tmp_path / "two.jpg"}
    reading = reader.read(picture[given])
    assert reading.source == PHOTO and isinstance(reading.picture, Image.Image)
    np.testing.assert_array_equal(reading.image28, to_mnist(preprocess.load_image(data)))
    np.testing.assert_allclose(reading.probabilities, direct(lab7, reading.image28), atol=1e-6)
    assert reading.digit == 2


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 1)])
def test_a_28x28_is_read_as_it_is(reader, lab7, mnist, shape):
    _, (x_test, _) = mnist
    reading = reader.read(x_test[0].reshape(shape))  # uint8, as MNIST ships it
    assert reading.source == INPUT and reading.steps == ()
    np.testing.assert_allclose(reading.image28, x_test[0] / 255.0, atol=1e-7)
    np.testing.assert_allclose(reading.probabilities, direct(lab7, reading.image28), atol=1e-6)
    assert reading.digit == 7


def test_one_network_pass_per_reading(lab7, mnist, monkeypatch):
    """The head reads the activations of the pass that gave the probabilities: the one
    traced call runs once, and nothing else runs the network (no model.predict, no
    novelty batch pass, no eager layer)."""
    (x_train, _), (x_test, _) = mnist
    reader = Reader(lab7, DEFAULT_MODEL_PATH)
    assert reader.rule.fitted  # so the head is asked, and needs its activations
    passes = []
    traced = reader.predictor._forward_fn
    monkeypatch.setattr(reader.predictor, "_forward_fn", lambda x: passes.append(1) or traced(x))

    def another_pass(*args, **kwargs):
        raise AssertionError("the network ran a second time")

    monkeypatch.setattr(lab7, "predict", another_pass)
    monkeypatch.setattr(novelty, "_features_fn", another_pass)
    for layer in lab7.layers:
        monkeypatch.setattr(layer, "call", another_pass)  # an eager call would run these
    two_digits = on_the_draw_page(
        non_digit_canvas("two digits", np.random.default_rng([98, 0]), x_train[:20])
    )
    for picture in (seven_canvas(x_test), x_test[0], two_digits):
        before = len(passes)
        reader.read(picture)
        assert len(passes) == before + 1
    assert reader.read(two_digits).verdict.kind == NOT_A_DIGIT  # the head did read


# --- the words, one source for the page and the CLI ----------------------------------------


def test_the_words_for_a_digit(reader, mnist):
    _, (x_test, _) = mnist
    reading = reader.read(x_test[0])
    percent = f"{reading.confidence:.0%}"
    assert (reading.headline, reading.note) == ("7", f"{percent} confident")
    assert reading.sentence == f"7, {percent} confident"


def test_the_words_for_not_sure(lab7, mnist):
    _, (x_test, _) = mnist
    unsure = Reader(lab7, None, rule=Rule(sure_below=1.01))  # nothing is sure enough
    reading = unsure.read(x_test[0])
    percent = f"{reading.confidence:.0%}"
    assert reading.verdict.kind == NOT_SURE
    assert (reading.headline, reading.note) == ("7?", f"not sure ({percent})")
    assert reading.sentence == f"Not sure: maybe 7, {percent}"


def test_the_words_for_not_a_digit(reader, mnist):
    (x_train, _), _ = mnist
    canvas = non_digit_canvas("two digits", np.random.default_rng([98, 0]), x_train[:20])
    reading = reader.read(on_the_draw_page(canvas))
    assert (reading.headline, reading.note) == ("?", "not a digit")
    assert reading.sentence == (
        f"That doesn't look like a digit to me — the closest is {reading.digit}, "
        f"{reading.confidence:.0%}"
    )
    assert reading.probabilities.sum() == pytest.approx(1.0, abs=1e-5)  # the bars still show


def test_without_a_rule_file_the_reader_never_says_not_a_digit(lab7, mnist, tmp_path):
    (x_train, _), _ = mnist
    path = tmp_path / "lab7.keras"
    shutil.copy(DEFAULT_MODEL_PATH, path)  # no .novelty.json beside it
    plain = Reader(lab7, path)
    assert not plain.rule.fitted
    canvas = non_digit_canvas("two digits", np.random.default_rng([98, 0]), x_train[:20])
    assert plain.read(on_the_draw_page(canvas)).verdict.kind != NOT_A_DIGIT


# --- what a user can get wrong: today's messages ---------------------------------------------


def test_a_blank_canvas_has_no_ink(reader):
    with pytest.raises(BlankImageError, match="no ink"):
        reader.read(np.zeros((280, 280, 4), np.uint8))


def test_an_all_ink_canvas_is_painted_all_over(reader):
    with pytest.raises(FullCanvasError, match=r"painted nearly all over.*Clear"):
        reader.read(on_black(np.full((280, 280), 255, np.uint8)))


def test_a_speck_is_too_small_to_read(reader):
    grey = np.zeros((280, 280), np.uint8)
    grey[100:104, 200:204] = 255
    with pytest.raises(DrawingTooSmallError, match="too small to read"):
        reader.read(on_black(grey))


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"these are not pixels", ImageFileError, "not an image"),
        (png(np.full((64, 64), 200, np.uint8))[:60], ImageFileError, "truncated or damaged"),
        (png(np.zeros((9000, 9000), np.uint8)), ImageFileError, "too large"),  # 81 MP
        (png(np.zeros((4, 4), np.uint8)), ImageFileError, "too small"),
        (png(np.full((64, 64), 255, np.uint8)), BlankImageError, "No digit found in this photo"),
    ],
    ids=["not-an-image", "broken", "huge", "tiny", "blank"],
)
def test_a_bad_photo_gets_todays_message(reader, content, error, message):
    with pytest.raises(error, match=message):
        reader.read(content)


def test_a_damaged_model_file_says_so(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(DEFAULT_MODEL_PATH.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="damaged"):
        Reader.load(path)


def test_a_damaged_rule_file_says_so_and_what_to_do(tmp_path):
    path = tmp_path / "lab7.keras"
    shutil.copy(DEFAULT_MODEL_PATH, path)
    (tmp_path / "lab7.novelty.json").write_text('{"version": 1')
    with pytest.raises(RuleFileError, match=r"lab7\.novelty\.json is damaged.*delete it"):
        Reader.load(path)
