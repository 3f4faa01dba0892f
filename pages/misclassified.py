"""Misclassified: what the model gets wrong (the lab's questions b and e), the confusion
matrix to click into, per-digit scores, and which errors another model fixes."""

import pandas as pd
import streamlit as st

from mnist_demo import charts, ui
from mnist_demo.evaluation import compare, select
from mnist_demo.runs import available_models

ANY = "any"
DETAIL_KEY = "misclassified_detail"
PAIR_KEYS = ("pair_true", "pair_predicted")

ref = ui.page_setup(__file__)
st.title("Misclassified")
with ui.user_errors():
    result = ui.evaluation(ref)
    _, (x_test, _) = ui.dataset()

wrong = result.misclassified_count
st.subheader(
    f"{wrong} of {result.n:,} test images misclassified "
    f"({100 * wrong / result.n:.2f} %) by {ref.name}"
)


def show_detail(index: int) -> None:
    st.session_state[DETAIL_KEY] = index


def pick_cell() -> None:
    """A click on the heatmap sets the pair selectors (one source of truth)."""
    cells = st.session_state["confusion"].selection.get("cell", [])
    true, predicted = (cells[0]["true"], cells[0]["predicted"]) if cells else (ANY, ANY)
    if true == predicted:  # the diagonal holds right answers: show every mistake instead
        true, predicted = ANY, ANY
    st.session_state.pair_true, st.session_state.pair_predicted = true, predicted


def clear_pair() -> None:
    st.session_state.pair_true = st.session_state.pair_predicted = ANY


for k in PAIR_KEYS:
    st.session_state.setdefault(k, ANY)

matrix, gallery = st.columns([1, 1.5], gap="large")
with matrix:
    st.markdown("**Confusion matrix** — click a cell to see those mistakes")
    st.altair_chart(charts.confusion_chart(result.confusion), on_select=pick_cell, key="confusion")
    c1, c2, c3 = st.columns([1, 1, 0.8], vertical_alignment="bottom")
    c1.selectbox("True digit", [ANY, *range(10)], key="pair_true")
    c2.selectbox("Predicted as", [ANY, *range(10)], key="pair_predicted")
    c3.button("Show all", on_click=clear_pair)

true_digit, predicted_digit = st.session_state.pair_true, st.session_state.pair_predicted
mistakes = select(
    result,
    true_digit=None if true_digit == ANY else true_digit,
    predicted_digit=None if predicted_digit == ANY else predicted_digit,
    outcome="wrong",
    order="wrong_confidence",
)
with gallery:
    if true_digit == ANY and predicted_digit == ANY:
        st.markdown(f"**All {len(mistakes)} mistakes**, most confident first")
    else:
        st.markdown(
            f"**{len(mistakes)} mistakes** with true digit {true_digit} "
            f"predicted as {predicted_digit}, most confident first"
        )
    ui.digit_gallery(mistakes, result, x_test, key="mistakes", on_pick=show_detail, columns=7)
    if DETAIL_KEY in st.session_state:
        ui.digit_detail(st.session_state[DETAIL_KEY], result, x_test)

st.header("Per digit")
st.dataframe(
    pd.DataFrame(result.per_class()),
    hide_index=True,
    column_config={
        "precision": st.column_config.NumberColumn(format="percent"),
        "recall": st.column_config.NumberColumn(format="percent"),
    },
)

st.header("Compare with another model")
others = [m for m in available_models(ui.registry()) if m.key != ref.key]
if not others:
    st.caption("Train a model on the Train page to compare it with this one.")
    st.stop()
other = st.selectbox(
    "Second model",
    others,
    index=None,
    placeholder="Choose a model to compare",
    format_func=lambda m: m.label,
)
if other is None:
    st.stop()  # scoring a second model costs seconds: only on request
with ui.user_errors():
    second = ui.evaluation(other)
diff = compare(result, second)
a, b, c = st.columns(3)
a.metric("Errors it fixes", len(diff["fixed"]))
b.metric("Errors it introduces", len(diff["introduced"]))
c.metric("Errors both make", len(diff["both_wrong"]))
fixed_tab, introduced_tab = st.tabs(["Fixed by the second model", "Introduced by it"])
with fixed_tab:
    st.caption(f"Captions show {ref.name}'s answers.")
    ui.digit_gallery(diff["fixed"], result, x_test, key="fixed", on_pick=show_detail)
with introduced_tab:
    st.caption(f"Captions show {other.name}'s answers.")
    ui.digit_gallery(diff["introduced"], second, x_test, key="introduced", on_pick=show_detail)
