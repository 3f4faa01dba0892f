"""Every MNIST_DEMO_* setting, its default and its meaning, in one place (README's
Configuration table lists the same). Each comes from an environment variable with a
default, so a test, a classroom server or a lecture hall can change it without editing
code; the supervisor (serve/hall.py) sets them for the processes it starts.

(Named config, not settings: "settings" are the class's settings in the store, which
the instructor changes from a page.)"""

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
    return Path(os.environ.get(HOME_ENV, Path.home() / ".mnist_demo")).expanduser()


def data_dir() -> Path:
    """The MNIST cache folder; separate from the home so tests can share one download."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else home() / "data"


def registry_path() -> Path:
    return home() / "runs.sqlite"


HOME_ENV = "MNIST_DEMO_HOME"  # the data home (default ~/.mnist_demo)
DATA_ENV = "MNIST_DEMO_DATA"  # the MNIST cache (default <home>/data)
DATABASE_URL_ENV = "MNIST_DEMO_DATABASE_URL"  # the store (default the SQLite file in the home)
SOLO_ENV = "MNIST_DEMO_SOLO"  # 1: every browser session is the instructor (make run)
CODE_ENV = "MNIST_DEMO_INSTRUCTOR_CODE"  # the instructor's code (default: random per start)
TRUSTED_PROXY_ENV = "MNIST_DEMO_TRUSTED_PROXY"  # the hall's nginx: its X-Forwarded-For counts
SERVER_ENV = "MNIST_DEMO_SERVER"  # "server 2 of 2": the sidebar names the replica (hall)
RUN_CPUS_ENV = "MNIST_DEMO_RUN_CPUS"  # CPUs per training run (default: all of them)
STOP_GRACE_ENV = "MNIST_DEMO_STOP_GRACE_S"  # an ignored stop is cancelled after this (20 s)
MODEL_CACHE_ENV = "MNIST_DEMO_MODEL_CACHE"  # models kept warm per server (8)

DEFAULT_MODEL_CACHE = 8
DEFAULT_STOP_GRACE_S = 20.0


def stop_grace_s() -> float:
    """A worker that ignores a stop request this long is cancelled through Ray."""
    try:
        return float(os.environ.get(STOP_GRACE_ENV, "").strip() or DEFAULT_STOP_GRACE_S)
    except ValueError:
        return DEFAULT_STOP_GRACE_S


def run_cpus() -> int:
    """CPUs per training run: MNIST_DEMO_RUN_CPUS, or all of this machine's (a run on an
    idle laptop uses every core; a second run waits rather than halving the first)."""
    every = max(1, os.cpu_count() or 1)
    try:
        raw = os.environ.get(RUN_CPUS_ENV, "").strip()
        return max(1, int(raw)) if raw else every
    except ValueError:
        return every


def model_cache_size() -> int:
    """How many models (and their traced predictors) a server keeps warm: a class easily
    uses more than four (shipped, active, a few runs being compared); each Lab 7 model
    holds about 13 MB. MNIST_DEMO_MODEL_CACHE overrides it (at least 1)."""
    raw = os.environ.get(MODEL_CACHE_ENV, "").strip()
    try:
        return max(1, int(raw)) if raw else DEFAULT_MODEL_CACHE
    except ValueError:
        return DEFAULT_MODEL_CACHE
