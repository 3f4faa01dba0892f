import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from mnist_demo import config
from mnist_demo.data import one_hot, to_model_input
from mnist_demo.errors import ModelFileError
from mnist_demo.evaluation import evaluate
from mnist_demo.model import (
    STEPS_PER_EXECUTION,
    UnknownPresetError,
    build_model,
    load_model,
    save_model,
    summary_rows,
)

LAB7_LAYERS = [
    ("Conv2D", (None, 28, 28, 32), 832),
    ("MaxPooling2D", (None, 14, 14, 32), 0),
    ("Conv2D", (None, 14, 14, 64), 8256),  # 2x2 kernel, as the lab's code has it
    ("MaxPooling2D", (None, 7, 7, 64), 0),
    ("Dropout", (None, 7, 7, 64), 0),
    ("Flatten", (None, 3136), 0),
    ("Dense", (None, 1000), 3_137_000),
    ("Dropout", (None, 1000), 0),
    ("Dense", (None, 10), 10_010),
]


def layer_list(model):
    return [(type(la).__name__, tuple(la.output.shape), la.count_params()) for la in model.layers]


def test_lab7_matches_the_workbook_code():
    model = build_model("lab7")
    assert layer_list(model) == LAB7_LAYERS
    assert model.count_params() == 3_156_098
    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    assert conv1.kernel_size == (5, 5) and conv1.padding == "same"
    assert conv1.activation.__name__ == "relu"
    assert conv2.kernel_size == (2, 2)
    assert [model.get_layer(n).rate for n in ("dropout1", "dropout2")] == [0.25, 0.5]
    assert model.get_layer("output").activation.__name__ == "softmax"


def test_lab7_5x5_follows_the_workbook_text():
    model = build_model("lab7-5x5")
    assert model.get_layer("conv2").kernel_size == (5, 5)
    assert model.count_params() == 3_156_098 - 8256 + (5 * 5 * 32 * 64 + 64)


def test_compiled_with_adam_categorical_crossentropy_and_accuracy():
    model = build_model("lab7", learning_rate=0.01)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    compiled = model.get_compile_config()
    assert compiled["loss"] == "categorical_crossentropy"
    assert compiled["metrics"] == ["accuracy"]


def test_same_seed_same_initial_weights():
    a, b = build_model(seed=7), build_model(seed=7)
    c = build_model(seed=8)
    assert np.array_equal(a.get_weights()[0], b.get_weights()[0])
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


QUICK_MAX_PARAMS = 70_000  # about 2 % of Lab 7's 3.16 M


def test_quick_preset_is_small_and_follows_a_one_cycle_schedule():
    model = build_model("quick", learning_rate=0.01, total_steps=100)
    assert model.count_params() < QUICK_MAX_PARAMS
    assert [model.get_layer(f"conv{i}").filters for i in (1, 2, 3)] == [24, 48, 96]
    assert all(model.get_layer(f"conv{i}_bn").momentum == 0.9 for i in (1, 2, 3))
    assert model.output_shape == (None, 10)
    schedule = keras.optimizers.schedules.deserialize(model.optimizer.get_config()["learning_rate"])
    rate = [float(schedule(step)) for step in (0, 20, 60, 100)]
    # warm-up over the first fifth from a tenth of the peak, then down to 1 % of it
    assert rate[0] == pytest.approx(0.001) and rate[1] == pytest.approx(0.01)
    assert rate[1] > rate[2] > rate[3] and rate[3] == pytest.approx(0.0001, rel=0.01)
    assert model.get_compile_config()["steps_per_execution"] == STEPS_PER_EXECUTION


def test_quick_preset_learns_from_a_small_subset(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    x, y = x_train[:3000], y_train[:3000]
    epochs, batch = 3, 64
    model = build_model(
        "quick", learning_rate=0.01, seed=7, total_steps=epochs * -(-len(x) // batch)
    )
    model.fit(to_model_input(x), one_hot(y), batch_size=batch, epochs=epochs, verbose=0)
    assert evaluate(model, x_test[:1000], y_test[:1000]).accuracy > 0.9


def test_unknown_preset_names_the_choices():
    with pytest.raises(UnknownPresetError, match="lab7, lab7-5x5"):
        build_model("resnet")


def test_save_drops_optimizer_state_and_round_trips(tmp_path):
    model = build_model()
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    model.fit(x, np.eye(10)[[1, 2, 3, 4]], epochs=1, verbose=0)  # creates Adam's state
    path = tmp_path / "m.keras"
    save_model(model, path)
    assert path.stat().st_size < 15e6  # 3.2 M float32 weights ~ 12.6 MB, no Adam moments
    assert not list(tmp_path.glob("*.tmp*"))
    loaded = load_model(path)
    assert np.allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


def test_load_model_errors_are_clear(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.keras")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="is damaged"):
        load_model(broken)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(config.DEFAULT_MODEL_PATH.read_bytes()[:100_000])  # a cut copy
    with pytest.raises(ModelFileError, match="is damaged") as caught:
        load_model(truncated)
    assert "not found" not in str(caught.value).lower()  # it exists: say what is wrong


def test_summary_rows_for_the_table():
    rows = summary_rows(build_model())
    assert [r["layer"] for r in rows][:2] == ["conv1", "pool1"]
    assert sum(r["parameters"] for r in rows) == 3_156_098
    assert rows[0]["output shape"] == "(None, 28, 28, 32)"


# --- models anyone can load -------------------------------------------------------------

_PLAIN_KERAS = """
import sys
import numpy as np
import keras
images = np.load(sys.argv[1])
for path in sys.argv[2:]:
    model = keras.models.load_model(path)
    np.save(path + ".probs.npy", np.asarray(model(images, training=False)))
assert not any(name.startswith("mnist_demo") for name in sys.modules), "imported mnist_demo"
print("loaded", len(sys.argv) - 2)
"""


@pytest.mark.slow
def test_shipped_and_saved_models_load_in_plain_keras(tmp_path, mnist):
    """A shipped model (and any model Digit Lab saves, even the robust preset with its
    training-only augmentation) loads with `keras.models.load_model` in a Python that
    never imports mnist_demo, and gives the same answers as in the app."""
    from mnist_demo import config
    from mnist_demo.data import to_model_input

    _, (x_test, _) = mnist
    images = to_model_input(x_test[:64])
    np.save(tmp_path / "images.npy", images)
    saved = tmp_path / "robust.keras"
    save_model(build_model("robust", seed=3), saved)
    paths = [config.DEFAULT_MODEL_PATH, config.ROBUST_MODEL_PATH, saved]
    copies = [tmp_path / f"{i}.keras" for i in range(len(paths))]
    for path, copy in zip(paths, copies, strict=True):
        copy.write_bytes(path.read_bytes())  # the probabilities are written beside the copy
    result = subprocess.run(
        [sys.executable, "-c", _PLAIN_KERAS, tmp_path / "images.npy", *copies],
        cwd=tmp_path,  # not the repository: `import mnist_demo` would fail there
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"loaded {len(paths)}" in result.stdout
    for path, copy in zip(paths, copies, strict=True):
        plain = np.load(str(copy) + ".probs.npy")
        ours = np.asarray(load_model(path)(images, training=False))
        np.testing.assert_allclose(plain, ours, atol=1e-6, err_msg=str(path))
