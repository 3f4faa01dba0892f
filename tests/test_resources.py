"""The server's caches: sized for a class, and scoring a model's test set only once."""

from __future__ import annotations

import keras
import pytest

from mnist_demo import config
from mnist_demo.models import ModelRef
from mnist_demo.ui import resources


def tiny_model_file(path, seed: int):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(path)
    return ModelRef(str(seed), f"tiny {seed}", path, None, None, None)


def test_a_class_worth_of_models_never_rescores_the_test_set(tmp_path, monkeypatch):
    """Once the cache held four models: with more in use, every page switch scored the
    10,000 test images again (4-16 s while training)."""
    scored = []
    real_evaluate = resources.evaluate

    def counting(model, images, labels):
        scored.append(model.name)
        return real_evaluate(model, images[:200], labels[:200])  # the count is the point

    monkeypatch.setattr(resources, "evaluate", counting)
    resources._evaluation.clear()
    refs = [tiny_model_file(tmp_path / f"m{i}.keras", i) for i in range(6)]
    for _ in range(3):  # browsing between six models, three times over
        for ref in refs:
            resources.evaluation(ref)
    assert len(scored) == 6


@pytest.mark.parametrize(("value", "expected"), [("", 8), ("12", 12), ("0", 1), ("x", 8)])
def test_the_number_of_warm_models_is_a_setting(monkeypatch, value, expected):
    monkeypatch.setenv("MNIST_DEMO_MODEL_CACHE", value)
    assert config.model_cache_size() == expected
    assert resources.MODEL_CACHE >= 8
