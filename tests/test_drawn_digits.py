"""The drawn-digit test set: deterministic, varied, faithful to its MNIST sources; and
the shipped model's accuracy through `to_mnist` on it."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_demo.config import DEFAULT_MODEL_PATH
from mnist_demo.preprocess import ink_map, to_mnist
from tools.drawn_digits import (
    drawn_accuracy,
    make_drawn_set,
    naive_resize,
    pen_path,
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
