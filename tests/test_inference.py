"""The single-image path the Draw page waits on: right answers, fast path, safe threads."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from mnist_demo.config import DEFAULT_MODEL_PATH
from mnist_demo.data import to_model_input
from mnist_demo.errors import ModelShapeError
from mnist_demo.inference import Predictor, as_image, feature_grid
from mnist_demo.model import load_model


@pytest.fixture(scope="module")
def trained():
    """The shipped Lab 7 model (99.3 % on the test set): loaded, not trained here."""
    return load_model(DEFAULT_MODEL_PATH)


@pytest.fixture(scope="module")
def predictor(trained):
    return Predictor(trained)


@pytest.fixture(scope="module")
def digits(mnist):
    """Test digits (uint8) with their labels: never seen in training."""
    _, (x_test, y_test) = mnist
    return x_test[:16], y_test[:16]


# --- predict -------------------------------------------------------------------------


def test_predict_matches_model_predict(predictor, trained, digits):
    images, _ = digits
    expected = trained.predict(to_model_input(images), verbose=0)
    for image, want in zip(images, expected, strict=True):
        got = predictor.predict(image.astype(np.float32) / 255.0)
        assert got.shape == (10,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_forward_gives_the_answer_and_the_activations_the_head_reads_in_one_pass(
    predictor, trained, digits, monkeypatch
):
    """What novelty's head reads (the input of the softmax layer) comes out of the same
    traced call as the probabilities: one execution, the same numbers as the model's own
    layers give."""
    from mnist_demo.novelty import output_layer

    last = output_layer(trained)
    penultimate = keras.Model(trained.inputs[0], last.input)
    calls = []
    traced = predictor._forward_fn
    monkeypatch.setattr(predictor, "_forward_fn", lambda x: calls.append(1) or traced(x))
    image = digits[0][5].astype(np.float32) / 255.0
    probabilities, features = predictor.forward(image)
    assert len(calls) == 1 and predictor.has_penultimate
    x = image.reshape(1, 28, 28, 1)
    np.testing.assert_allclose(features, penultimate(x, training=False).numpy()[0], atol=1e-5)
    np.testing.assert_allclose(probabilities, trained(x, training=False).numpy()[0], atol=1e-6)
    np.testing.assert_array_equal(predictor.predict(image), probabilities)  # same call


def test_a_model_without_a_softmax_dense_ending_has_no_activations_to_give():
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(2, 3, name="conv1"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
            keras.layers.Softmax(),
        ]
    )
    p = Predictor(model)
    probabilities, features = p.forward(np.zeros((28, 28), np.float32))
    assert features is None and not p.has_penultimate and probabilities.shape == (10,)


def test_model_learned_something(predictor, digits):
    images, labels = digits
    answers = [int(np.argmax(predictor.predict(im))) for im in images]
    assert np.mean(np.array(answers) == labels) >= 15 / 16  # the shipped model: 99.3 %


def test_predict_accepts_uint8_and_float_alike(predictor, digits):
    image = digits[0][3]
    as_uint8 = predictor.predict(image)
    as_float = predictor.predict(image / 255.0)  # float64 is fine too
    as_channel = predictor.predict((image / 255.0).astype(np.float32)[..., None])
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-6)
    np.testing.assert_allclose(as_uint8, as_channel, atol=1e-6)
    assert as_uint8.sum() == pytest.approx(1.0, abs=1e-5)
    assert (as_uint8 >= 0).all()


def test_predict_never_calls_model_predict(trained, monkeypatch, digits):
    """Past the constructor's tracing, a call is one graph execution: no `model.predict`,
    and no layer's Python code (an eager `model(x)` or a retrace would run each one)."""

    def slow_path(*args, **kwargs):
        raise AssertionError("model.predict was called")

    monkeypatch.setattr(trained, "predict", slow_path)
    p = Predictor(trained)
    ran: list[str] = []
    for layer in trained.layers:

        def counted(*args, _layer=layer, _call=layer.call, **kwargs):
            ran.append(_layer.name)
            return _call(*args, **kwargs)

        monkeypatch.setattr(layer, "call", counted)
    for method in ("occlusion", "gradient"):
        p.predict(digits[0][0])
        p.feature_maps(digits[0][0])
        p.saliency(digits[0][0], method=method)
    assert ran == []


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((28, 27), np.float32), r"28x28 grey image .*got shape \(28, 27\)"),
        (np.zeros((2, 28, 28), np.float32), r"got shape \(2, 28, 28\)"),
        (np.zeros((28, 28, 3), np.uint8), r"got shape \(28, 28, 3\)"),
        (np.full((28, 28), 255.0), r"float images must be in \[0, 1\].*divide by 255"),
        (np.full((28, 28), np.nan), r"NaN"),
        (np.full((28, 28), 300, np.int64), r"0-255"),
        (np.full((28, 28), "a"), r"numeric"),
    ],
)
def test_bad_images_raise_clear_value_errors(predictor, image, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(image)


def test_as_image_scales_uint8():
    image = np.arange(784, dtype=np.int64).reshape(28, 28) % 256
    np.testing.assert_allclose(as_image(image.astype(np.uint8)), image / 255.0, atol=1e-7)


# --- models that do not fit ----------------------------------------------------------


def test_model_with_wrong_input_is_refused():
    model = keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Conv2D(4, 3, name="conv1"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    with pytest.raises(ModelShapeError, match=r"\(32, 32, 1\).*\(28, 28, 1\)"):
        Predictor(model)


def test_model_without_conv_layers_is_refused():
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    with pytest.raises(ModelShapeError, match="no Conv2D layers") as err:
        Predictor(model)
    assert isinstance(err.value, ValueError)  # pages may catch either


def test_model_without_input_is_refused():
    model = keras.Sequential([keras.layers.Conv2D(4, 3), keras.layers.Dense(10)])
    with pytest.raises(ModelShapeError, match=r"keras\.Input"):
        Predictor(model)


def test_model_with_wrong_output_is_refused():
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3), keras.layers.Flatten()]
    )
    with pytest.raises(ModelShapeError, match="10 class probabilities"):
        Predictor(model)


# --- feature maps --------------------------------------------------------------------


def test_feature_maps_have_lab7_shapes(predictor, digits):
    maps = predictor.feature_maps(digits[0][0])
    assert list(maps) == ["conv1", "conv2"]
    assert maps["conv1"].shape == (28, 28, 32)
    assert maps["conv2"].shape == (14, 14, 64)
    assert all(m.min() >= 0 for m in maps.values())  # after ReLU


def test_feature_maps_equal_a_hand_computation(predictor, trained, digits):
    """Recompute both conv layers from their weights with plain TF ops."""
    image = digits[0][5]
    x = tf.constant(to_model_input(image))
    k1, b1 = trained.get_layer("conv1").get_weights()
    k2, b2 = trained.get_layer("conv2").get_weights()
    conv1 = tf.nn.relu(tf.nn.conv2d(x, k1, strides=1, padding="SAME") + b1)
    pooled = tf.nn.max_pool2d(conv1, ksize=2, strides=2, padding="VALID")
    conv2 = tf.nn.relu(tf.nn.conv2d(pooled, k2, strides=1, padding="SAME") + b2)

    maps = predictor.feature_maps(image)
    np.testing.assert_allclose(maps["conv1"], conv1.numpy()[0], atol=1e-4)
    np.testing.assert_allclose(maps["conv2"], conv2.numpy()[0], atol=1e-4)


def test_feature_maps_of_a_separate_relu_layer_are_after_the_relu():
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, padding="same", name="c"),
            keras.layers.ReLU(name="r"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    maps = Predictor(model).feature_maps(np.random.default_rng(0).random((28, 28)))
    assert maps["c"].shape == (28, 28, 8)
    assert maps["c"].min() >= 0


def test_feature_grid_size_gaps_and_scaling():
    rng = np.random.default_rng(1)
    maps = rng.random((14, 14, 64)).astype(np.float32) * np.arange(64)  # channel 0 is dead
    grid = feature_grid(maps, cols=8)
    assert grid.dtype == np.uint8
    assert grid.shape == (8 * 14 + 7, 8 * 14 + 7)
    gaps = [14 + 15 * i for i in range(7)]
    assert (grid[gaps, :] == 255).all() and (grid[:, gaps] == 255).all()
    tiles = [grid[r * 15 : r * 15 + 14, c * 15 : c * 15 + 14] for r in range(8) for c in range(8)]
    assert (tiles[0] == 0).all()  # dead channel stays black
    assert all(t.max() == 255 for t in tiles[1:])  # each channel scaled to its own max
    np.testing.assert_array_equal(tiles[9], np.round(maps[..., 9] / maps[..., 9].max() * 255))


def test_feature_grid_leaves_empty_cells_as_gap():
    grid = feature_grid(np.ones((5, 4, 5)), cols=3, gap=7)
    assert grid.shape == (2 * 5 + 1, 3 * 4 + 2)
    assert (grid[6:, 10:] == 7).all()  # the sixth cell has no channel
    assert (grid[:5, :4] == 255).all()


def test_feature_grid_refuses_bad_input():
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        feature_grid(np.zeros((28, 28)), cols=4)
    with pytest.raises(ValueError, match="cols"):
        feature_grid(np.zeros((28, 28, 4)), cols=0)


# --- saliency ------------------------------------------------------------------------


def _window_means(heat: np.ndarray, size: int) -> np.ndarray:
    """Mean of every size x size window (stride 1), shape (29 - size, 29 - size)."""
    windows = np.lib.stride_tricks.sliding_window_view(heat, (size, size))
    return windows.mean(axis=(2, 3))


@pytest.mark.parametrize("method", ["occlusion", "gradient"])
@pytest.mark.parametrize("measure", ["log-odds", "probability"])
def test_saliency_shape_and_range(predictor, digits, method, measure):
    heat = predictor.saliency(digits[0][0], method=method, measure=measure)
    assert heat.shape == (28, 28) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["occlusion", "gradient"])
@pytest.mark.parametrize("measure", ["log-odds", "probability"])
@pytest.mark.parametrize("blank", [np.zeros((28, 28), np.uint8), np.zeros((28, 28), np.float32)])
def test_saliency_of_a_blank_image_is_zero_not_nan(predictor, blank, method, measure):
    """No ink, nothing to hide: every patch drop and every gradient x input is 0, and
    scaling by a maximum of 0 must leave the map all zeros (not NaN, not all ones)."""
    heat = predictor.saliency(blank, method=method, measure=measure)
    assert heat.shape == (28, 28) and heat.dtype == np.float32
    np.testing.assert_array_equal(heat, np.zeros((28, 28), np.float32))


@pytest.mark.parametrize("measure", ["log-odds", "probability"])
def test_occluding_the_salient_region_hurts_most(predictor, digits, measure):
    """Hide (black out) the 6x6 window the map calls most salient, then the least
    salient window that still holds ink: the first must cost the answer more. A
    background window would be a cheat (blacking out black changes nothing)."""
    images, _ = digits
    size = 6
    for image in images[:8]:
        x = image / 255.0
        probs = predictor.predict(x)
        target = int(np.argmax(probs))
        heat = predictor.saliency(x, target=target, measure=measure)

        means = _window_means(heat, size)
        ink = _window_means((x > 0.3).astype(np.float32), size) >= 0.25
        hot = np.unravel_index(np.argmax(means), means.shape)
        cold = np.unravel_index(np.argmin(np.where(ink, means, np.inf)), means.shape)

        def drop(corner, x=x, probs=probs, target=target):
            r, c = corner
            hidden = x.copy()
            hidden[r : r + size, c : c + size] = 0
            return probs[target] - predictor.predict(hidden)[target]

        assert drop(hot) > drop(cold), f"digit {target}: hot {hot}, cold {cold}"


def test_saliency_target_can_be_chosen_and_is_checked(predictor, digits):
    image = digits[0][0]
    a = predictor.saliency(image, target=0)
    b = predictor.saliency(image, target=7)
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="target"):
        predictor.saliency(image, target=10)
    with pytest.raises(ValueError, match="method"):
        predictor.saliency(image, method="magic")
    with pytest.raises(ValueError, match="measure"):
        predictor.saliency(image, measure="vibes")


# --- threads -------------------------------------------------------------------------


def test_concurrent_calls_give_the_sequential_answers(predictor, mnist):
    """Streamlit runs one script thread per browser session, all sharing one Predictor."""
    _, (x_test, _) = mnist
    threads, per_thread = 8, 20
    images = x_test[: threads * per_thread]
    sequential = np.stack([predictor.predict(im) for im in images])
    maps_before = predictor.feature_maps(images[0])["conv2"]

    results = np.full_like(sequential, np.nan)
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(t * per_thread, (t + 1) * per_thread):
                results[i] = predictor.predict(images[i])
                if i % 5 == 0:  # the other graphs run at the same time too
                    predictor.feature_maps(images[i])
                    predictor.saliency(images[i])
        except BaseException as e:  # re-raised below in the test's thread
            errors.append(e)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    np.testing.assert_allclose(results, sequential, atol=1e-6)
    np.testing.assert_allclose(predictor.feature_maps(images[0])["conv2"], maps_before)


# --- a model from disk ---------------------------------------------------------------


def test_a_model_loaded_from_a_keras_file_works(trained, predictor, digits, tmp_path):
    path = tmp_path / "lab7.keras"
    trained.save(path)
    loaded = Predictor(load_model(path))
    for image in digits[0][:4]:
        np.testing.assert_allclose(loaded.predict(image), predictor.predict(image), atol=1e-6)
        a, b = loaded.feature_maps(image), predictor.feature_maps(image)
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_allclose(a[name], b[name], atol=1e-5)
        np.testing.assert_allclose(loaded.saliency(image), predictor.saliency(image), atol=1e-4)
