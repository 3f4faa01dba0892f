"""Small pieces pages share: user-fixable errors as `st.error`, times as text, charts
(a model's recorded training curves among them), and the gallery and detail view of
test-set digits (Home, Test set and Misclassified)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import streamlit as st

from mnist_demo import charts, models, progress
from mnist_demo.errors import DigitLabError
from mnist_demo.evaluation import Evaluation, select, top_k
from mnist_demo.ui.resources import registry

# --- errors ---------------------------------------------------------------------------


@contextmanager
def user_errors(stop: bool = True) -> Iterator[None]:
    """Show a problem the user can fix as `st.error` and stop the page there (what
    follows needs what failed); with `stop=False` only the rest of the block is skipped,
    for a section the rest of the page does not depend on. The server and the other
    sessions carry on. Bugs still raise."""
    try:
        yield
    except DigitLabError as e:
        st.error(str(e), icon="⚠️")
        if stop:
            st.stop()


def setting_toggle(
    label: str, *, value: bool, change: Callable[[bool], None], help: str | None = None
) -> None:
    """A toggle for a setting the core may refuse (a session locked meanwhile): the
    refusal is shown under it, and the toggle goes back to what is stored."""
    key, error_key = f"toggle-{label}", f"toggle-{label}-error"

    def on_change() -> None:
        try:
            change(st.session_state[key])
        except DigitLabError as e:
            st.session_state[error_key] = str(e)
            st.session_state[key] = not st.session_state[key]

    st.toggle(label, value=value, key=key, on_change=on_change, help=help)
    error = st.session_state.pop(error_key, None)
    if error:
        st.error(error, icon="⚠️")


# --- time as text ---------------------------------------------------------------------


def ago(timestamp: float) -> str:
    """'3 minutes ago': how long since a Unix time, in the largest whole unit."""
    seconds = max(0, time.time() - timestamp)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


duration = progress.duration  # '2 min 05 s': defined once, beside the progress text


def shown(value: Any, fmt: str = "{}") -> str:
    """A table cell as text: `fmt` applied to the value, or "—" when there is none.
    st.dataframe draws a missing value as "None" whatever a Styler says, so tables give
    it text."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return progress.MISSING
    return fmt.format(value)


# --- charts and digits -----------------------------------------------------------------

GALLERY_PAGE_SIZE = 50


def digit_gallery(
    indices: np.ndarray,
    result: Evaluation,
    images: np.ndarray,
    key: str,
    on_pick: Callable[[int], None],
    columns: int = 10,
    noun: str = "test image",
) -> None:
    """A paged, clickable grid of test images captioned 'true → predicted · confidence'.
    A click calls `on_pick(test_index)` once (a callback, so a selection that persists
    in the chart does not override a later choice made elsewhere)."""
    pages = max(1, -(-len(indices) // GALLERY_PAGE_SIZE))
    page = 1
    if pages > 1:
        page = st.columns([1, 4])[0].number_input(
            f"Page (of {pages})", min_value=1, max_value=pages, value=1, key=f"{key}-page"
        )
    shown = indices[(page - 1) * GALLERY_PAGE_SIZE : page * GALLERY_PAGE_SIZE]
    if len(shown) == 0:
        st.info(f"No {noun} matches.")
        return
    captions = [
        f"{result.labels[i]} → {result.predictions[i]} · {result.confidence[i]:.0%}" for i in shown
    ]
    chart = charts.digit_gallery_chart(
        images[shown], shown, captions, ~result.correct[shown], columns=columns, noun=noun
    )
    chart_key = f"{key}-chart-{page}"

    def picked() -> None:
        points = st.session_state[chart_key].selection.get("digit", [])
        if points:
            on_pick(int(points[0]["index"]))

    st.altair_chart(chart, on_select=picked, key=chart_key, width="content")


def vega_lite(chart: charts.VegaLite, where: Any = None) -> None:
    """Draw a `charts.VegaLite` full width, in `where` (a column) or the page."""
    (where or st).vega_lite_chart(chart.data, chart.spec, width="stretch")


def recorded_history(ref: models.ModelRef) -> dict[str, list[float]]:
    """The per-epoch history recorded when the model was trained: a run's from the
    registry, a shipped model's from the .json beside its file; {} if none was kept."""
    if ref.key in models.SHIPPED:
        # runs.py reads (and caches) a shipped model's .json for the sidebar already
        return models.shipped_info(ref.path.with_suffix(".json")).get("history", {})
    return registry().get(int(ref.key)).history


def epoch_charts(history: dict[str, list[float]]) -> None:
    """The lab's two plots side by side: "Model - Accuracy" and "Model - Loss"."""
    left, right = st.columns(2)
    for column, metric in ((left, "accuracy"), (right, "loss")):
        vega_lite(charts.epoch_chart(history, metric), column)


def digit_detail(
    index: int, result: Evaluation, images: np.ndarray, noun: str = "test image"
) -> None:
    """One test image large, with the model's probabilities and top three: the lab's
    question (d) for any n."""
    true, predicted = int(result.labels[index]), int(result.predictions[index])
    picture, numbers = st.columns([1, 1.6])
    picture.image(
        charts.upscale(images[index], 8),
        caption=f"{noun.capitalize()} {index}",
        width="stretch",
        alt=f"{noun.capitalize()} {index}: a handwritten {true}",
    )
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


# --- the confusion matrix to click into (Misclassified, Class) ---------------------------

ANY = "any"


def confusion_explorer(
    result: Evaluation, images: np.ndarray, key: str, noun: str = "test image"
) -> None:
    """The confusion matrix beside the gallery of mistakes: a click on a cell (or the two
    selectors, one source of truth) shows those mistakes, most confident first, and a
    click on a digit its probabilities."""
    true_key, predicted_key, detail_key = f"{key}-true", f"{key}-predicted", f"{key}-detail"
    chart_key = f"{key}-confusion"
    st.session_state.setdefault(true_key, ANY)
    st.session_state.setdefault(predicted_key, ANY)

    def pick_cell() -> None:
        cells = st.session_state[chart_key].selection.get("cell", [])
        true, predicted = (cells[0]["true"], cells[0]["predicted"]) if cells else (ANY, ANY)
        if true == predicted:  # the diagonal holds right answers: show every mistake
            true, predicted = ANY, ANY
        st.session_state[true_key], st.session_state[predicted_key] = true, predicted

    def clear_pair() -> None:
        st.session_state[true_key] = st.session_state[predicted_key] = ANY

    def show_detail(index: int) -> None:
        st.session_state[detail_key] = index

    matrix, gallery = st.columns([1, 1.5], gap="large")
    with matrix:
        st.markdown("**Confusion matrix** — click a cell to see those mistakes")
        st.altair_chart(
            charts.confusion_chart(result.confusion), on_select=pick_cell, key=chart_key
        )
        c1, c2, c3 = st.columns([1, 1, 0.8], vertical_alignment="bottom")
        c1.selectbox("True digit", [ANY, *range(10)], key=true_key)
        c2.selectbox("Predicted as", [ANY, *range(10)], key=predicted_key)
        c3.button("Show all", on_click=clear_pair, key=f"{key}-all")

    true_digit, predicted_digit = st.session_state[true_key], st.session_state[predicted_key]
    mistakes = select(
        result,
        true_digit=None if true_digit == ANY else true_digit,
        predicted_digit=None if predicted_digit == ANY else predicted_digit,
        outcome="wrong",
        order="wrong_confidence",
    )
    with gallery:
        if true_digit == ANY and predicted_digit == ANY:
            n = len(mistakes)
            st.markdown(f"**All {n} mistake{'s' if n != 1 else ''}**, most confident first")
        else:
            st.markdown(
                f"**{len(mistakes)} mistakes** with true digit {true_digit} "
                f"predicted as {predicted_digit}, most confident first"
            )
        digit_gallery(
            mistakes,
            result,
            images,
            key=f"{key}-mistakes",
            on_pick=show_detail,
            columns=5,  # 92 px tiles: five fit beside the matrix at 1280 px
            noun=noun,
        )
        index = st.session_state.get(detail_key)
        if index is not None and index < result.n:
            digit_detail(index, result, images, noun=noun)
