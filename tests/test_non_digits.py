"""The non-digit generator (tools/non_digits.py): Draw page canvases, the same for the
same seed, the kinds in turn, each kind what it says; and `through_to_mnist`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnist_demo.preprocess import ink_map
from tools import non_digits
from tools.non_digits import (
    KINDS,
    SKETCH,
    iter_non_digits,
    make_non_digit_set,
    through_to_mnist,
)

N = 2 * len(KINDS)


@pytest.fixture(scope="module")
def digits(mnist):
    (x_train, _), _ = mnist
    return x_train[:50]


@pytest.fixture(scope="module")
def made(digits):
    return make_non_digit_set(N, seed=5, digits=digits)


def test_canvases_in_the_draw_page_format_kinds_in_turn(made):
    canvases, kinds = made
    assert canvases.shape == (N, 280, 280, 4) and canvases.dtype == np.uint8
    assert kinds == list(KINDS) * 2
    for canvas in canvases:  # each has a drawing on it: ink covers some, not all
        ink = ink_map(canvas) > 0.5
        assert 0.005 < ink.mean() < 0.5


def test_deterministic_by_seed_and_a_smaller_set_is_a_prefix(made, digits):
    again, _ = make_non_digit_set(N, seed=5, digits=digits)
    np.testing.assert_array_equal(again, made[0])
    prefix, _ = make_non_digit_set(3, seed=5, digits=digits)
    np.testing.assert_array_equal(prefix, made[0][:3])
    other, _ = make_non_digit_set(N, seed=6, digits=digits)
    assert not any(np.array_equal(a, b) for a, b in zip(other, made[0], strict=True))


def test_borrowing_digits_needs_some(digits):
    with pytest.raises(ValueError, match="at least one"):
        list(iter_non_digits(1, 0, digits[:0]))


def _ink_extent(sketch: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(sketch.max(axis=1) > 127), np.flatnonzero(sketch.max(axis=0) > 127)
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def test_two_digits_sit_side_by_side(digits):
    for seed in range(6):
        height, width = _ink_extent(non_digits.two_digits(np.random.default_rng(seed), digits))
        assert width > 1.4 * height, (seed, height, width)


def test_a_crossed_digit_is_the_digit_plus_the_cross(digits):
    one = digits[:1]  # the only digit to borrow, so the one crossed out
    plain = np.asarray(Image.fromarray(one[0]).resize((SKETCH, SKETCH), Image.Resampling.BILINEAR))
    for seed in range(4):
        crossed = non_digits.crossed(np.random.default_rng(seed), one)
        assert (crossed >= plain).all()  # the whole digit is still there
        # ...and strokes across it: a 5 px line over at least half the 112 px square
        assert ((crossed > 127) & (plain == 0)).sum() > 5 * SKETCH / 2


def test_a_character_the_font_lacks_is_not_drawn_as_a_box():
    # Pillow's built-in font (the fallback when no font is installed) has Latin letters
    # but no dingbats; a box drawn for ♥ would be a square, not a symbol.
    assert non_digits._has_glyph(None, "A")
    assert not non_digits._has_glyph(None, "♥")


def test_letters_leave_out_those_written_like_digits():
    assert not set(non_digits.LETTERS) & set("0123456789OoIlSsZzBbgq")


def test_through_to_mnist_keeps_keys_and_marks_refusals(made):
    canvases, _ = made
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    speck = blank.copy()
    speck[140:143, 140:143, :3] = 255  # one dab of a thin pen: too small to read
    keys, images, refused = through_to_mnist(
        [("a", canvases[0]), ("blank", blank), ("speck", speck), ("b", canvases[1])]
    )
    assert keys == ["a", "blank", "speck", "b"]
    assert images.shape == (4, 28, 28) and images.dtype == np.float32
    assert refused.tolist() == [False, True, True, False]
    assert images[1].max() == 0 and images[2].max() == 0
    assert images[0].max() == pytest.approx(1.0) and images[3].max() == pytest.approx(1.0)
