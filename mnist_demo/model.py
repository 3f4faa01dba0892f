"""The Lab 7 CNN, read top to bottom.

Lab 7's text says the second convolution is 5x5, its code says (2, 2). Preset `lab7`
follows the code (the numbers the workbook reports came from it), `lab7-5x5` the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from mnist_demo.errors import DigitLabError

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
LAB_SEED = 7
LAB_EPOCHS = 12
LAB_BATCH_SIZE = 128
LAB_LEARNING_RATE = 1e-3  # Keras's Adam default, which the lab uses


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    second_kernel: tuple[int, int]


PRESETS: dict[str, Preset] = {
    "lab7": Preset("lab7", "Lab 7 as coded: second conv 2x2", (2, 2)),
    "lab7-5x5": Preset("lab7-5x5", "Lab 7 as written: second conv 5x5", (5, 5)),
}


class UnknownPresetError(DigitLabError, ValueError):
    pass


class ModelFileError(DigitLabError):
    """A model file is missing or not a loadable Keras model."""


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(
            f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None


def build_model(
    preset: str = "lab7",
    learning_rate: float = LAB_LEARNING_RATE,
    seed: int | None = LAB_SEED,
    compile: bool = True,
) -> keras.Model:
    """The workbook's Sequential CNN. Seeding here makes the initial weights repeatable."""
    p = get_preset(preset)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Conv2D(32, (5, 5), padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(pool_size=(2, 2), name="pool1"),
            layers.Conv2D(64, p.second_kernel, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(pool_size=(2, 2), name="pool2"),
            layers.Dropout(0.25, name="dropout1"),
            layers.Flatten(name="flatten"),
            layers.Dense(1000, activation="relu", name="dense1"),
            layers.Dropout(0.5, name="dropout2"),
            layers.Dense(NUM_CLASSES, activation="softmax", name="output"),
        ],
        name=p.name.replace("-", "_"),
    )
    if compile:
        # Keras 3 compile() must get keywords: positional arguments land elsewhere.
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model


def save_model(model: keras.Model, path: Path) -> None:
    """Save weights and architecture without the optimizer state (13 MB instead of 38)
    to a temporary name, then rename, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # from_config gives an uncompiled twin (clone_model in Keras 3.15 shares the optimizer).
    bare = model.__class__.from_config(model.get_config())
    bare.set_weights(model.get_weights())
    tmp = path.with_name(path.name + ".tmp.keras")
    try:
        bare.save(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def load_model(path: Path) -> keras.Model:
    """Load a saved model for inference; a missing or broken file is a ModelFileError."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises several types for a bad zip / config
        raise ModelFileError(f"model file {path} could not be loaded: {e}") from e


def summary_rows(model: keras.Model) -> list[dict[str, object]]:
    """The model summary as rows (layer, type, output shape, parameters) for a table."""
    return [
        {
            "layer": layer.name,
            "type": type(layer).__name__,
            "output shape": str(tuple(layer.output.shape)),
            "parameters": layer.count_params(),
        }
        for layer in model.layers
    ]
