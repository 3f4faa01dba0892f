"""The drawn-digit test set: deterministic, varied, faithful to its MNIST sources; and
the shipped model's accuracy through `to_mnist` on it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnist_demo.config import DEFAULT_MODEL_PATH
from mnist_demo.preprocess import ink_map, to_mnist
from tools.drawn_digits import (
    MIN_STROKE,
    UPSAMPLE,
    drawn_accuracy,
    make_drawn_set,
    naive_resize,
    pen_path,
    pen_strokes,
    place_strokes,
    render_strokes,
    skeleton,
)

N_SMALL = 48


@pytest.fixture(scope="module")
def drawn(mnist):
    _, (x_test, y_test) = mnist
    return make_drawn_set(x_test, y_test, N_SMALL, seed=3)


def test_shapes_and_labels(drawn, mnist):
    _, (x_test, y_test) = mnist
    canvases, labels, indices = drawn
    assert canvases.shape == (N_SMALL, 280, 280, 4) and canvases.dtype == np.uint8
    assert len(set(indices.tolist())) == N_SMALL
    assert indices.min() >= 0 and indices.max() < len(x_test)
    np.testing.assert_array_equal(labels, y_test[indices])


def test_deterministic_by_seed(drawn, mnist):
    _, (x_test, y_test) = mnist
    again, _, indices = make_drawn_set(x_test, y_test, N_SMALL, seed=3)
    np.testing.assert_array_equal(again, drawn[0])
    np.testing.assert_array_equal(indices, drawn[2])
    other, _, other_indices = make_drawn_set(x_test, y_test, 8, seed=4)
    assert not np.array_equal(other_indices, drawn[2][:8])
    assert not np.array_equal(other, drawn[0][:8])


def test_a_smaller_set_is_a_prefix(drawn, mnist):
    _, (x_test, y_test) = mnist
    canvases, _, indices = make_drawn_set(x_test, y_test, 5, seed=3)
    np.testing.assert_array_equal(canvases, drawn[0][:5])
    np.testing.assert_array_equal(indices, drawn[2][:5])


def _ink_box(canvas: np.ndarray) -> tuple[int, float, float]:
    ink = ink_map(canvas) > 0.5
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    size = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    return size, (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2


def test_colour_schemes_vary(drawn):
    canvases = drawn[0]
    alpha = canvases[..., 3]
    transparent = alpha.min(axis=(1, 2)) == 0
    assert 5 <= transparent.sum() <= N_SMALL - 5
    opaque = canvases[~transparent]
    background = opaque[:, 0, 0, :3].astype(int)  # the corner is always background
    assert (background.sum(1) > 600).any(), "some white backgrounds"
    assert (background.sum(1) < 100).any(), "some black backgrounds"
    inked = canvases[..., 3] == 255
    stroke_colours = {
        tuple(c[m][0, :3]) for c, m in zip(canvases[transparent], inked[transparent], strict=True)
    }
    assert len(stroke_colours) >= 3, "coloured strokes on transparent backgrounds"


def test_sizes_and_places_vary(drawn):
    boxes = np.array([_ink_box(c) for c in drawn[0]])
    sizes, centres = boxes[:, 0], boxes[:, 1:]
    assert sizes.min() < 120 and sizes.max() > 220
    assert np.abs(centres - 140).max() > 60, "some digits far from the centre"


def test_brush_widths_vary(drawn):
    from mnist_demo.preprocess import stroke_width

    widths = [stroke_width(ink_map(c)) for c in drawn[0]]
    assert min(widths) < 12 and max(widths) > 25


def test_drawings_look_like_their_sources(drawn, mnist):
    """Through to_mnist each drawing should correlate with the digit it came from."""
    _, (x_test, _) = mnist
    canvases, _, indices = drawn
    correlations = []
    for canvas, index in zip(canvases, indices, strict=True):
        a, b = to_mnist(canvas), x_test[index].astype(np.float32)
        best = max(
            np.corrcoef(a.ravel(), np.roll(np.roll(b, dy, 0), dx, 1).ravel())[0, 1]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        correlations.append(best)
    assert np.median(correlations) > 0.75


def test_skeleton_thins_to_a_line_and_keeps_loops():
    bar = np.zeros((30, 60), bool)
    bar[10:20, 5:55] = True
    thin = skeleton(bar)
    assert thin[:, 15:45].sum(axis=0).max() == 1  # one pixel wide along the bar
    yy, xx = np.mgrid[:60, :60]
    ring = (np.hypot(yy - 30, xx - 30) < 25) & (np.hypot(yy - 30, xx - 30) > 12)
    thin_ring = skeleton(ring)
    assert not thin_ring[25:36, 25:36].any()  # the hole stays open
    assert thin_ring.sum() > 2 * np.pi * 15  # and the ring stays closed


def test_pen_path_keeps_filled_blobs():
    digit = np.zeros((28, 28), np.uint8)
    digit[8:20, 8:20] = 255  # a filled square: its skeleton alone would be a dot
    points = pen_path(digit)
    assert np.ptp(points[:, 0]) > 6 and np.ptp(points[:, 1]) > 6


def _pen_line(digit: np.ndarray) -> set[tuple[int, int]]:
    """The digit's centre line, in 112x112 pixels (pen_path's, without its blob dabs)."""
    size = 28 * UPSAMPLE
    big = Image.fromarray(digit.astype(np.float32) / 255).resize((size, size), Image.BILINEAR)
    return {(int(r), int(c)) for r, c in np.argwhere(skeleton(np.asarray(big) > 0.5))}


def _check_pen_strokes(digit: np.ndarray) -> list[np.ndarray]:
    """Strokes are pen-down paths through neighbouring pixels, on the digit's centre
    line, and miss none of it but a spur's few pixels."""
    strokes = pen_strokes(digit)
    line = _pen_line(digit)
    on_strokes = set()
    for stroke in strokes:
        assert stroke.ndim == 2 and stroke.shape[1] == 2 and len(stroke) >= 2
        steps = np.abs(np.diff(stroke, axis=0)) * UPSAMPLE
        assert steps.max() <= 1 + 1e-9 and (steps.sum(axis=1) > 0).all()  # 8-neighbours
        on_strokes |= {(int(r), int(c)) for r, c in np.rint(stroke * UPSAMPLE - 0.5)}
    assert on_strokes <= line  # nothing off the centre line
    missed = line - on_strokes  # only pieces shorter than MIN_STROKE: spurs, specks
    while missed:
        piece, todo = set(), [missed.pop()]
        while todo:
            r, c = todo.pop()
            piece.add((r, c))
            near = {(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)} & missed
            missed -= near
            todo += near
        assert len(piece) <= MIN_STROKE * UPSAMPLE + 1, sorted(piece)
    return strokes


def test_pen_strokes_write_a_plus_in_two_straight_strokes_and_a_ring_in_one():
    plus = np.zeros((28, 28), np.uint8)
    plus[13:16, 4:24] = 255
    plus[4:24, 13:16] = 255
    strokes = _check_pen_strokes(plus)
    assert len(strokes) == 2  # straight through the crossing, not four arms
    spans = sorted(np.ptp(s, axis=0).tolist() for s in strokes)
    assert spans[0][0] < 1 and spans[0][1] > 15  # one across
    assert spans[1][1] < 1 and spans[1][0] > 15  # one down
    assert strokes[0][0][0] == min(s[:, 0].min() for s in strokes)  # starts at the top

    yy, xx = np.mgrid[:28, :28]
    ring = ((np.hypot(yy - 14, xx - 14) < 10) & (np.hypot(yy - 14, xx - 14) > 7)) * 255
    (stroke,) = _check_pen_strokes(ring.astype(np.uint8))
    np.testing.assert_allclose(stroke[0], stroke[-1], atol=1.5 / UPSAMPLE)  # closed
    assert np.ptp(stroke, axis=0).min() > 14


def test_pen_strokes_of_real_digits_are_few_and_read_like_the_digit(mnist):
    _, (x_test, _) = mnist
    counts, correlations = [], []
    for digit in x_test[:40]:
        strokes = _check_pen_strokes(digit)
        counts.append(len(strokes))
        placed = place_strokes(strokes, 200, 40, 40)
        a, b = to_mnist(render_strokes(placed, brush=20)), x_test[len(counts) - 1] / 255
        correlations.append(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert max(counts) <= 6 and np.mean(counts) < 2.5
    assert np.median(correlations) > 0.75


def test_place_strokes_scales_places_and_resamples():
    strokes = [np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([[0.0, 2.0], [5.0, 5.0]])]
    placed = place_strokes(strokes, size=150, top=4, left=120, step=6)
    xy = np.concatenate(placed)
    np.testing.assert_allclose(xy.min(axis=0), [120, 4])  # (x, y): left, top
    np.testing.assert_allclose(xy.max(axis=0), [120 + 75, 4 + 150])  # longer side: 150
    assert len(placed[0]) == 26  # 150 px every 6 px, both ends
    assert np.linalg.norm(np.diff(placed[0], axis=0), axis=1).max() <= 6 + 1e-9
    canvas = render_strokes(placed, brush=10)
    assert canvas.shape == (280, 280, 4) and canvas[4, 120, 0] == 255 and canvas[0, 0, 0] == 0


def test_naive_resize_shape(drawn):
    out = naive_resize(drawn[0][0])
    assert out.shape == (28, 28)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_MODEL_PATH.exists(), reason="no shipped model yet")
def test_shipped_model_loses_little_through_to_mnist():
    from mnist_demo.model import load_model

    result = drawn_accuracy(load_model(DEFAULT_MODEL_PATH), n=1000, seed=0)
    assert result["original_accuracy"] > 0.98
    assert result["gap_points"] <= 1.5, result
    assert result["naive_gap_points"] >= 10, result
