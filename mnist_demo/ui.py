"""Streamlit helpers shared by the pages: heavy objects cached once per server, the
sidebar's model choice, and turning user-fixable errors into `st.error`.

Caches are keyed on paths (and a model file's mtime), not on nothing: a test or a
second server in the same process with another MNIST_DEMO_HOME gets its own objects,
and a retrained model file is never served stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from mnist_demo import config
from mnist_demo.data import Arrays, load_mnist
from mnist_demo.errors import DigitLabError
from mnist_demo.evaluation import Evaluation, evaluate
from mnist_demo.model import ModelFileError, load_model
from mnist_demo.runs import (
    ModelRef,
    RegistryCorruptError,
    RunRegistry,
    available_models,
    default_model_key,
)


def _keep_keras_state_between_reruns() -> None:
    """Streamlit calls `keras.backend.clear_session()` after every script run (and so
    after every fragment poll), meant for apps that build a model per run. Here models
    are long-lived, shared, and trained in a background thread: each call clears
    TensorFlow's kernel cache and forces a full garbage collection. Measured on the
    Train page: a run watched by one browser trained 10x slower. Make it a no-op in the
    app's process; nothing in Digit Lab relies on it."""
    import keras

    keras.backend.clear_session = lambda *args, **kwargs: None


_keep_keras_state_between_reruns()

POLL_RUNNING_S = 1.0  # live charts while a run trains
POLL_IDLE_S = 3.0  # notice a run started from another browser


# --- cached resources -----------------------------------------------------------------


@st.cache_resource(show_spinner="Loading MNIST…")
def _dataset(data_dir: str) -> Arrays:
    return load_mnist()


def dataset() -> Arrays:
    return _dataset(str(config.data_dir()))


@st.cache_data(show_spinner=False)
def model_summary(preset: str) -> list[dict[str, object]]:
    """The summary table of a preset's architecture: built once, not on every rerun."""
    from mnist_demo.model import build_model, summary_rows

    return summary_rows(build_model(preset, seed=None, compile=False))


@st.cache_resource(show_spinner=False)
def _registry(path: str) -> tuple[RunRegistry, str | None]:
    """Open the registry once per server. A corrupt file is moved aside and rebuilt from
    the runs' own files; runs left 'running' by a dead server become 'interrupted'."""
    notice = None
    try:
        registry = RunRegistry(Path(path))
    except RegistryCorruptError as e:
        registry, aside = RunRegistry.recover(Path(path))
        notice = (
            f"The run registry was unreadable ({e.__cause__}). It was moved to {aside} "
            f"and rebuilt from the run folders ({len(registry.list_runs())} runs recovered)."
        )
    registry.mark_interrupted()
    return registry, notice


def registry() -> RunRegistry:
    return _registry(str(config.registry_path()))[0]


def registry_notice() -> str | None:
    return _registry(str(config.registry_path()))[1]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        raise ModelFileError(
            f"the model file {path} is missing; pick another model in the sidebar"
        ) from None


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _model(path: str, mtime: float):
    return load_model(Path(path))


@st.cache_resource(max_entries=4, show_spinner="Scoring the 10,000 test images…")
def _evaluation(path: str, mtime: float, data_dir: str) -> Evaluation:
    _, (x_test, y_test) = dataset()
    return evaluate(_model(path, mtime), x_test, y_test)


def evaluation(ref: ModelRef) -> Evaluation:
    """The model's answers on the whole test set: computed once per model and server."""
    return _evaluation(str(ref.path), _mtime(ref.path), str(config.data_dir()))


@st.cache_resource(max_entries=4, show_spinner="Warming up the model…")
def _predictor(path: str, mtime: float):
    from mnist_demo.inference import Predictor

    return Predictor(_model(path, mtime))


def predictor(ref: ModelRef):
    return _predictor(str(ref.path), _mtime(ref.path))


# --- the shell ------------------------------------------------------------------------

MODEL_KEY = "model_key"  # the lab pages' model, per browser session
DRAW_MODEL_KEY = "draw_model_key"  # the Draw page's model
ENTRY_KEY = "entry_ran"
DEEP_LINK_KEY = "deep_link"


def page_setup(page_file: str, for_drawings: bool = False) -> ModelRef:
    """Every page starts here: page config, the shared sidebar, and the model it chose
    (Draw has its own choice: drawings are read best by another model than the lab's).

    Streamlit treats a `pages/` folder as its older multipage mode until the entry
    script has called st.navigation once in the process: a deep link (say /draw) to a
    freshly started server then runs the page alone, with raw file names in the menu.
    Such a first visit detours through the entry script, which sends it back here. The
    sidebar is drawn here rather than in the entry script so that a page run alone (as
    AppTest does) still has it.
    """
    if ENTRY_KEY not in st.session_state:
        app_root = Path(page_file).resolve().parents[1]
        st.session_state[DEEP_LINK_KEY] = Path(page_file).resolve().relative_to(app_root).as_posix()
        st.switch_page("streamlit_app.py")
    st.set_page_config(page_title="Digit Lab", page_icon="✍️", layout="wide")
    return sidebar(for_drawings)


def entry_ran() -> None:
    """Called by the entry script after st.navigation; finishes a deep link's detour."""
    st.session_state[ENTRY_KEY] = True
    target = st.session_state.pop(DEEP_LINK_KEY, None)
    if target:
        st.switch_page(target)


# --- the sidebar ----------------------------------------------------------------------


def sidebar(for_drawings: bool = False) -> ModelRef:
    """The model this page shows, chosen per browser session, and which model the other
    pages use. A new session starts on the defaults of `default_model_key`."""
    reg = registry()
    models = {m.key: m for m in available_models(reg)}
    keys = {False: MODEL_KEY, True: DRAW_MODEL_KEY}
    for drawings, key in keys.items():
        if st.session_state.get(key) not in models:
            st.session_state[key] = default_model_key(reg, for_drawings=drawings)
    this, other = keys[for_drawings], keys[not for_drawings]
    with st.sidebar:
        notice = registry_notice()
        if notice:
            st.warning(notice)
        st.selectbox(
            "Model for drawings" if for_drawings else "Model for the lab pages",
            list(models),
            key=this,
            format_func=lambda key: models[key].label,
            help="Which trained model this page uses. Train new ones on the Train page.",
        )
        ref = models[st.session_state[this]]
        details = []
        if ref.test_accuracy is not None:
            details.append(f"test accuracy **{ref.test_accuracy:.2%}**")
        if ref.trained_at:
            details.append(f"trained {ago(ref.trained_at)}")
        st.caption(" · ".join(details) or "not evaluated yet")
        other_name = models[st.session_state[other]].name
        st.caption(
            f"Home, Test set and Misclassified use **{other_name}**."
            if for_drawings
            else f"Draw uses **{other_name}**."
        )
        _training_badge()
    return ref


def _training_badge() -> None:
    from mnist_demo.training import current_job

    job = current_job(registry())
    if job is not None and job.is_running:
        # No epoch count here: the sidebar is drawn when a page loads, not on every poll.
        s = job.snapshot()
        st.info(f"Run {s.run_id} is training: watch it on the Train page.", icon="⏳")


def ago(timestamp: float) -> str:
    seconds = max(0, time.time() - timestamp)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# --- errors ---------------------------------------------------------------------------


@contextmanager
def user_errors() -> Iterator[None]:
    """Show a problem the user can fix as `st.error` and stop the page there; the
    server and the other sessions carry on. Bugs still raise."""
    try:
        yield
    except DigitLabError as e:
        st.error(str(e), icon="⚠️")
        st.stop()


# --- digits from the test set: the gallery and the detail view two pages share --------

GALLERY_PAGE_SIZE = 50


def digit_gallery(
    indices, result: Evaluation, images, key: str, on_pick, columns: int = 10
) -> None:
    """A paged, clickable grid of test images captioned 'true → predicted · confidence'.
    A click calls `on_pick(test_index)` once (a callback, so a selection that persists
    in the chart does not override a later choice made elsewhere)."""
    from mnist_demo import charts

    pages = max(1, -(-len(indices) // GALLERY_PAGE_SIZE))
    page = 1
    if pages > 1:
        page = st.columns([1, 4])[0].number_input(
            f"Page (of {pages})", min_value=1, max_value=pages, value=1, key=f"{key}-page"
        )
    shown = indices[(page - 1) * GALLERY_PAGE_SIZE : page * GALLERY_PAGE_SIZE]
    if len(shown) == 0:
        st.info("No test image matches.")
        return
    captions = [
        f"{result.labels[i]} → {result.predictions[i]} · {result.confidence[i]:.0%}" for i in shown
    ]
    chart = charts.digit_gallery_chart(
        images[shown], shown, captions, ~result.correct[shown], columns=columns
    )
    chart_key = f"{key}-chart-{page}"

    def picked() -> None:
        points = st.session_state[chart_key].selection.get("digit", [])
        if points:
            on_pick(int(points[0]["index"]))

    st.altair_chart(chart, on_select=picked, key=chart_key, width="content")


def vega_lite(chart, where=None) -> None:
    """Draw a `charts.VegaLite` full width, in `where` (a column) or the page."""
    (where or st).vega_lite_chart(chart.data, chart.spec, width="stretch")


def digit_detail(index: int, result: Evaluation, images) -> None:
    """One test image large, with the model's probabilities and top three: the lab's
    question (d) for any n."""
    from mnist_demo import charts
    from mnist_demo.evaluation import top_k

    true, predicted = int(result.labels[index]), int(result.predictions[index])
    picture, numbers = st.columns([1, 1.6])
    picture.image(charts.upscale(images[index], 8), caption=f"Test image {index}", width="stretch")
    with numbers:
        right = true == predicted
        st.metric(
            "Prediction",
            str(predicted),
            delta=f"right: the label is {true}" if right else f"wrong: the label is {true}",
            delta_color="normal" if right else "inverse",
            delta_arrow="off",
        )
        st.html(charts.probability_bars(result.probabilities[index]))
        top = top_k(result.probabilities[index])
        st.write("Top 3: " + ", ".join(f"**{d}** {p:.2%}" for d, p in top))
