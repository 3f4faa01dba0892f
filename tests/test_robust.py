"""The `robust` preset: augmentation that only acts in training, batch norm, a learning
rate schedule, small enough to ship, and trainable and loadable the same way as Lab 7."""

import json

import keras
import numpy as np
import pytest

from mnist_demo import queue, training
from mnist_demo.classroom import OWNER
from mnist_demo.config import ASSETS_DIR
from mnist_demo.data import one_hot, to_model_input
from mnist_demo.evaluation import evaluate
from mnist_demo.inference import Predictor
from mnist_demo.model import (
    ARCHITECTURES,
    DEFAULT_SCHEDULE_STEPS,
    FINAL_LR_FRACTION,
    DrawingAugmentation,
    RandomStrokeWidth,
    build_model,
    load_model,
    save_model,
)
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import RunRegistry

ROBUST_PATH = ASSETS_DIR / "robust_model.keras"
MAX_BYTES = 5_000_000
SHIPPED_MIN_ACCURACY = 0.996  # issue 7's target; the shipped 25-epoch model has 99.65 %


@pytest.fixture(scope="module")
def robust():
    return build_model("robust", seed=7, total_steps=100)


@pytest.fixture(scope="module")
def images(tiny_mnist):
    (x_train, _), _ = tiny_mnist
    return to_model_input(x_train[:32])


def types(layers):
    return [type(layer).__name__ for layer in layers]


def test_robust_has_augmentation_batch_norm_and_a_small_head(robust):
    assert robust.input_shape == (None, 28, 28, 1)
    assert robust.output_shape == (None, 10)
    augment = robust.layers[0]
    assert isinstance(augment, DrawingAugmentation) and augment.name == "augment"
    assert types(augment.steps) == [
        "RandomStrokeWidth",
        "RandomRotation",
        "RandomTranslation",
        "RandomZoom",
    ]
    _, rotate, shift, zoom = augment.steps
    assert rotate.factor == pytest.approx((-10 / 360, 10 / 360))
    assert (shift.height_factor, shift.width_factor) == (0.1, 0.1)
    assert zoom.height_factor == 0.1
    # borders fill with background, never reflected ink
    assert {rotate.fill_mode, shift.fill_mode, zoom.fill_mode} == {"constant"}
    kinds = types(robust.layers)
    assert kinds.count("Conv2D") == 5 and kinds.count("BatchNormalization") == 6
    assert kinds.count("Dropout") == 3
    assert [robust.get_layer(f"conv{i}").filters for i in range(1, 6)] == [32, 32, 64, 64, 128]
    output = robust.get_layer("output")
    assert output.units == 10 and output.activation.__name__ == "softmax"
    assert 200_000 <= robust.count_params() <= 1_000_000
    assert 4 * robust.count_params() <= MAX_BYTES  # float32 weights fit the 5 MB budget


def test_compiled_like_lab7_with_warmup_and_cosine_decay(robust):
    assert isinstance(robust.optimizer, keras.optimizers.Adam)
    compiled = robust.get_compile_config()
    assert compiled["loss"] == "categorical_crossentropy"
    assert compiled["metrics"] == ["accuracy"]
    model = build_model("robust", learning_rate=2e-3, seed=7, total_steps=1000)
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    rates = [float(schedule(step)) for step in (0, 50, 500, 1000, 5000)]
    assert rates[0] == pytest.approx(2e-4)  # warm-up starts at a tenth of the peak
    assert rates[1] == pytest.approx(2e-3)  # peak after 5 % of the run
    assert rates[1] > rates[2] > rates[3]
    assert rates[3] == pytest.approx(2e-3 * FINAL_LR_FRACTION, rel=1e-3)
    assert rates[4] == pytest.approx(rates[3])  # a longer run stays at the floor


def test_without_a_step_count_the_schedule_spans_a_default_run():
    schedule = build_model("robust", seed=7).optimizer._learning_rate
    assert float(schedule(DEFAULT_SCHEDULE_STEPS)) == pytest.approx(1e-5, rel=1e-3)


def test_lab7_presets_ignore_the_step_count():
    model = build_model("lab7", learning_rate=0.01, total_steps=1000)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    assert model.count_params() == 3_156_098
    assert not ARCHITECTURES["lab7"].schedule and not ARCHITECTURES["lab7-5x5"].schedule


def test_augmentation_changes_inputs_only_in_training(robust, images):
    augment = robust.get_layer("augment")
    trained = np.asarray(augment(images, training=True))
    assert trained.shape == images.shape
    assert not np.allclose(trained, images, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(augment(images, training=False)), images)
    # no flag means inference (Keras's own random layers would default to training)
    np.testing.assert_array_equal(np.asarray(augment(images)), images)
    a, b = robust(images, training=False), robust(images, training=False)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(robust(images)), np.asarray(a))


def test_stroke_width_thickens_and_thins(images):
    ink = images.sum(axis=(1, 2, 3))
    always = RandomStrokeWidth(probability=1.0, seed=3)
    ratio = np.asarray(always(images, training=True)).sum(axis=(1, 2, 3)) / ink
    assert (ratio > 1.05).any() and (ratio < 0.95).any()  # both pens show up
    assert ratio.min() > 0.3  # thinner, not erased
    never = RandomStrokeWidth(probability=0.0, seed=3)
    np.testing.assert_allclose(np.asarray(never(images, training=True)), images)
    config = always.get_config()
    assert (config["probability"], config["seed"]) == (1.0, 3)
    assert RandomStrokeWidth.from_config(config).probability == 1.0


def test_a_few_batches_on_real_images_bring_the_loss_down(tiny_mnist):
    (x_train, y_train), _ = tiny_mnist
    x, y = to_model_input(x_train), one_hot(y_train)
    model = build_model("robust", learning_rate=3e-3, seed=7, total_steps=4 * 10)
    history = model.fit(x, y, batch_size=60, epochs=4, verbose=0, shuffle=True)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]


def test_saved_model_is_the_inference_model_with_the_same_answers(robust, images, tmp_path):
    path = tmp_path / "robust.keras"
    save_model(robust, path)
    assert path.stat().st_size <= MAX_BYTES
    loaded = load_model(path)
    # the augmentation only acts in training, so the saved model leaves it out...
    assert [layer.name for layer in loaded.layers] == [
        layer.name for layer in robust.layers if layer.name != "augment"
    ]
    assert not any(isinstance(layer, DrawingAugmentation) for layer in loaded.layers)
    # ...and answers exactly as the trained one does
    np.testing.assert_array_equal(
        np.asarray(loaded(images, training=False)), np.asarray(robust(images, training=False))
    )


def test_predictor_shows_every_conv_layer(robust, images):
    predictor = Predictor(robust, warm_up=False)
    assert predictor.conv_names == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    probs = predictor.predict(images[0, :, :, 0])
    assert probs.shape == (10,) and probs.sum() == pytest.approx(1, abs=1e-4)


def test_a_training_job_gives_the_schedule_the_run_length(tmp_path, tiny_mnist, monkeypatch):
    seen = {}
    real = training.build_model

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "build_model", spy)
    config = TrainConfig(preset="robust", epochs=1, batch_size=100, train_size=600, test_size=200)
    registry = RunRegistry(tmp_path / "runs.sqlite")
    registry.submit(config, role=OWNER)
    run = training.train_run(registry, queue.claim_next(registry, "test"), tiny_mnist)
    assert run.status == "finished"
    assert seen["total_steps"] == 6  # 1 epoch x 600 / 100 batches


@pytest.mark.slow
def test_shipped_robust_model_scores_what_its_json_says_on_mnist(mnist):
    if not ROBUST_PATH.exists():
        pytest.skip(f"{ROBUST_PATH} not shipped")
    assert ROBUST_PATH.stat().st_size <= MAX_BYTES
    info = json.loads(ROBUST_PATH.with_suffix(".json").read_text())
    assert info["config"]["preset"] == "robust"
    _, (x_test, y_test) = mnist
    result = evaluate(load_model(ROBUST_PATH), x_test, y_test)
    accuracy = result.accuracy
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-4)
    # the file was rewritten as an inference model: every one of the 10k answers is kept
    assert result.misclassified_count == info["misclassified"]
    assert accuracy >= SHIPPED_MIN_ACCURACY
