"""Heavy objects, made once per server and shared by every browser session: MNIST,
the run registry, models, their test-set evaluations and their predictors.

Caches are keyed on paths (and a model file's mtime), not on nothing: a test or a
second server in the same process with another MNIST_DEMO_HOME gets its own objects,
and a retrained model file is never served stale.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

import keras
import sqlalchemy as sa
import streamlit as st

from mnist_demo import config
from mnist_demo.class_set import ClassSet, Snapshot
from mnist_demo.data import Arrays, load_mnist
from mnist_demo.errors import ModelFileError
from mnist_demo.evaluation import Evaluation, evaluate
from mnist_demo.inference import Predictor
from mnist_demo.model import build_model, load_model, summary_rows
from mnist_demo.models import ModelRef
from mnist_demo.reader import Reader
from mnist_demo.runs import RegistryCorruptError, RunRegistry
from mnist_demo.store import Store, StoreError, database_url


def _keep_keras_state_between_reruns() -> None:
    """Streamlit calls `keras.backend.clear_session()` after every script run (and so
    after every fragment poll), meant for apps that build a model per run. Here models
    are long-lived, shared, and trained in a background thread: each call clears
    TensorFlow's kernel cache and forces a full garbage collection. Measured on the
    Train page: a run watched by one browser trained 10x slower. Make it a no-op in the
    app's process; nothing in Digit Lab relies on it."""
    keras.backend.clear_session = lambda *args, **kwargs: None


_keep_keras_state_between_reruns()


# --- cached resources -----------------------------------------------------------------


@st.cache_resource(show_spinner="Loading MNIST…")
def _dataset(data_dir: str) -> Arrays:
    return load_mnist()


def dataset() -> Arrays:
    """Verified MNIST, loaded once per server."""
    return _dataset(str(config.data_dir()))


@st.cache_data(show_spinner=False)
def model_summary(preset: str) -> list[dict[str, Any]]:
    """The summary table of a preset's architecture: built once, not on every rerun."""
    return summary_rows(build_model(preset, seed=None, compile=False))


@st.cache_resource(show_spinner=False)
def _registry(url: str) -> tuple[RunRegistry, str | None]:
    """Open the store and its registry once per server: the one Store of the process,
    which the class set shares. A SQLite file that is not a database is moved aside and
    rebuilt from the runs' and drawings' own files. Opening only reads: on a full or
    read-only data home the pages that read still work (runs left 'running' by a dead
    server are marked 'interrupted' when the disk allows it)."""
    notice = None
    try:
        registry = RunRegistry(Store(url))
    except RegistryCorruptError as e:
        path = sa.make_url(url).database if url.startswith("sqlite") else None
        if not path:
            raise
        try:
            registry, aside = RunRegistry.recover(Path(path))
        except (OSError, StoreError):  # e.g. a read-only home: nothing can be rebuilt
            raise e from None
        why = e.__cause__ or e
        moved = f"It was moved to {aside} and rebuilt" if aside else "It was rebuilt"
        notice = (
            f"The run registry was unusable ({why}). {moved} from the run folders "
            f"({len(registry.list_runs())} runs recovered)."
        )
    with suppress(StoreError):  # a full or read-only disk: runs stay as they are meanwhile
        registry.mark_interrupted()
    return registry, notice


def registry() -> RunRegistry:
    """The server's run registry (opened, and if need be recovered, once)."""
    return _registry(database_url())[0]


def registry_notice() -> str | None:
    """What recovery did to an unreadable registry at start-up, for the sidebar."""
    return _registry(database_url())[1]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        raise ModelFileError(
            f"the model file {path} is missing; pick another model in the sidebar"
        ) from None


# Models and predictors: a setting (config.model_cache_size). Evaluations are small (10k
# x 10 probabilities) and kept separately and longer, so a model evicted and loaded
# again never means scoring the test set again on a page switch.
MODEL_CACHE = config.model_cache_size()
EVALUATION_CACHE = 64


@st.cache_resource(max_entries=MODEL_CACHE, show_spinner="Loading the model…")
def _model(path: str, mtime: float) -> keras.Model:
    return load_model(Path(path))


@st.cache_resource(max_entries=EVALUATION_CACHE, show_spinner="Scoring the 10,000 test images…")
def _evaluation(path: str, mtime: float, data_dir: str) -> Evaluation:
    _, (x_test, y_test) = dataset()
    return evaluate(_model(path, mtime), x_test, y_test)


def evaluation(ref: ModelRef) -> Evaluation:
    """The model's answers on the whole test set: computed once per model and server."""
    return _evaluation(str(ref.path), _mtime(ref.path), str(config.data_dir()))


@st.cache_resource(max_entries=MODEL_CACHE, show_spinner="Warming up the model…")
def _predictor(path: str, mtime: float) -> Predictor:
    return Predictor(_model(path, mtime))


def predictor(ref: ModelRef) -> Predictor:
    """The model ready for single drawings, traced once per model and server."""
    return _predictor(str(ref.path), _mtime(ref.path))


# --- the class's drawings ---------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _class_store(url: str) -> ClassSet:
    return ClassSet(_registry(url)[0].store)


def class_store() -> ClassSet:
    """The class set, on the same Store (one per process) as the run registry."""
    return _class_store(database_url())


@st.cache_resource(max_entries=EVALUATION_CACHE, show_spinner="Scoring the class drawings…")
def _class_evaluation(
    path: str, mtime: float, store_path: str, set_id: int | None, version: int
) -> tuple[Snapshot, Evaluation]:
    snapshot = class_store().snapshot(set_id)
    return snapshot, evaluate(_model(path, mtime), snapshot.images, snapshot.labels)


def class_evaluation(ref: ModelRef, set_id: int | None = None) -> tuple[Snapshot, Evaluation]:
    """The model's answers on the class set (default: the current one), computed once
    per model and class-set version, as the test set's are."""
    store = class_store()
    chosen = store.current_set() if set_id is None else set_id
    return _class_evaluation(
        str(ref.path), _mtime(ref.path), str(store.path), chosen, store.version()
    )


def reader(ref: ModelRef) -> Reader:
    """The model ready to read drawings (reader.Reader): the cached predictor with the
    novelty rule beside the model file. Not cached itself: making one costs a hash of
    the softmax layer's weights (about 0.2 ms for the robust model), and the rule file
    is re-read only when it changes (novelty.load_rule), so a rule fitted while the
    server runs is used at once."""
    return Reader(predictor(ref), ref.path)
