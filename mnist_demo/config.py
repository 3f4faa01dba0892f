"""Where Digit Lab keeps its files. Every location comes from an environment variable
with a default, so a test or a classroom server can move them without editing code."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
DEFAULT_MODEL_PATH = ASSETS_DIR / "default_model.keras"
DEFAULT_MODEL_INFO_PATH = ASSETS_DIR / "default_model.json"
ROBUST_MODEL_PATH = ASSETS_DIR / "robust_model.keras"


def home() -> Path:
    """The data home: run registry, trained models and (by default) the MNIST cache."""
    return Path(os.environ.get("MNIST_DEMO_HOME", Path.home() / ".mnist_demo")).expanduser()


def data_dir() -> Path:
    """The MNIST cache folder; separate from the home so tests can share one download."""
    env = os.environ.get("MNIST_DEMO_DATA")
    return Path(env).expanduser() if env else home() / "data"


def registry_path() -> Path:
    return home() / "runs.sqlite"


DEFAULT_MODEL_CACHE = 8


def model_cache_size() -> int:
    """How many models (and their traced predictors) a server keeps warm: a class easily
    uses more than four (shipped, active, a few runs being compared); each Lab 7 model
    holds about 13 MB. MNIST_DEMO_MODEL_CACHE overrides it (at least 1)."""
    raw = os.environ.get("MNIST_DEMO_MODEL_CACHE", "").strip()
    try:
        return max(1, int(raw)) if raw else DEFAULT_MODEL_CACHE
    except ValueError:
        return DEFAULT_MODEL_CACHE
