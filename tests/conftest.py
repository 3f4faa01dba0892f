"""Shared fixtures. Tests never touch the user's data home: the session gets its own
MNIST_DEMO_HOME, and MNIST_DEMO_DATA points at the verified cache `make setup` built,
so the real dataset is read once from disk rather than fetched per test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_demo import config

os.environ["MNIST_DEMO_DATA"] = str(config.data_dir())
os.environ["MNIST_DEMO_HOME"] = tempfile.mkdtemp(prefix="digit-lab-tests-")

import numpy as np
import pytest

from mnist_demo.data import load_mnist


@pytest.fixture(scope="session")
def mnist():
    """The real, verified MNIST."""
    return load_mnist()


@pytest.fixture(scope="session")
def tiny_mnist(mnist):
    """A few hundred real images: enough for a loss to fall, fast enough for a unit test."""
    (x_train, y_train), (x_test, y_test) = mnist
    return (x_train[:600], y_train[:600]), (x_test[:200], y_test[:200])


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty data home for one test."""
    monkeypatch.setenv("MNIST_DEMO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(7)
