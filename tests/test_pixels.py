"""One rule for pixels: `data.to_unit_pixels`. The data pipeline, single-image
inference and drawing preprocessing all go through it, so they accept and refuse the
same inputs with the same messages."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_demo.data import PixelValueError, to_model_input, to_unit_pixels
from mnist_demo.errors import DigitLabError
from mnist_demo.inference import as_image
from mnist_demo.preprocess import ink_map

DIGIT = np.zeros((28, 28), np.uint8)
DIGIT[6:22, 12:16] = 255  # a "1"
DIGIT[8:10, 10:12] = 128


def test_uint8_ints_and_bools_scale_to_unit_range():
    expected = DIGIT.astype(np.float32) / 255
    for image in (DIGIT, DIGIT.astype(np.int64), DIGIT.astype(np.float64) / 255):
        got = to_unit_pixels(image)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-7)
    np.testing.assert_array_equal(to_unit_pixels(DIGIT > 0), (DIGIT > 0).astype(np.float32))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (DIGIT.astype(np.float32), r"float images must be in \[0, 1\].*divide by 255"),
        (DIGIT.astype(np.int16) * 2, r"integer images must hold 0-255"),
        (np.full((28, 28), np.nan, np.float32), r"NaN or infinite"),
        (np.full((28, 28), "a"), r"numeric image"),
    ],
    ids=["float-0-255", "int-over-255", "nan", "strings"],
)
def test_every_entry_point_refuses_the_same_pixels_with_the_same_message(image, message):
    """A 0-255 float image used to be passed through by to_model_input (a confident
    wrong answer), rescaled by preprocessing and refused by inference."""
    for entry in (to_unit_pixels, to_model_input, as_image):
        with pytest.raises(PixelValueError, match=message):
            entry(image)
    with pytest.raises(PixelValueError, match=message):
        ink_map(np.stack([image] * 3, axis=-1) if image.dtype != np.bool_ else image)
    assert issubclass(PixelValueError, DigitLabError), "pages and CLI show it as one line"


def test_model_input_and_single_image_agree():
    batch = to_model_input(DIGIT)
    assert batch.shape == (1, 28, 28, 1)
    np.testing.assert_array_equal(batch[0, ..., 0], as_image(DIGIT))
    np.testing.assert_array_equal(to_model_input(DIGIT[None, ..., None]), batch)


def test_wrong_shapes_are_refused():
    with pytest.raises(PixelValueError, match="28x28"):
        to_model_input(np.zeros((2, 27, 28), np.uint8))
    with pytest.raises(PixelValueError, match="28x28"):
        as_image(np.zeros((2, 28, 28), np.uint8))


def test_to_byte_pixels_rounds_clips_and_keeps_bytes():
    from mnist_demo.data import to_byte_pixels

    unit = np.array([0.0, 0.5, 1 / 255, 0.998, 1.0000001, -0.01, 0.0021], np.float32)
    assert to_byte_pixels(unit).tolist() == [0, 128, 1, 254, 255, 0, 1]
    assert to_byte_pixels(unit).dtype == np.uint8
    assert to_byte_pixels(DIGIT) is DIGIT  # bytes pass untouched, not copied
