"""Misclassified: what the model gets wrong (the lab's questions b and e), the confusion
matrix to click into, per-digit scores, and which errors another model fixes."""

import pandas as pd
import streamlit as st

from mnist_demo import ui
from mnist_demo.evaluation import compare
from mnist_demo.models import available_models

ref = ui.page_setup(__file__)
st.title("Misclassified")
with ui.user_errors():
    data = ui.choose_dataset(ref, key="misclassified_dataset")
result, images = data.result, data.images
if result.n == 0:
    st.info("No class drawings yet: students send them from the Draw page.")
    st.stop()

wrong = result.misclassified_count
st.subheader(
    f"{wrong} of {result.n:,} {data.noun}s misclassified "
    f"({100 * wrong / result.n:.2f} %) by {ref.name}"
)
ui.confusion_explorer(result, images, key="misclassified", noun=data.noun)

st.header("Per digit")
st.dataframe(
    pd.DataFrame(
        {  # "—" for a digit never predicted (no precision) or never drawn (no recall)
            **row,
            "precision": ui.shown(row["precision"], "{:.2%}"),
            "recall": ui.shown(row["recall"], "{:.2%}"),
        }
        for row in result.per_class()
    ),
    hide_index=True,
)

st.header("Compare with another model")
others = [
    m
    for m in available_models(ui.registry(), role=ui.role(), student=ui.session_tag())
    if m.key != ref.key
]
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
    second = ui.datasets.scored(other, data.kind).result
diff = compare(result, second)
a, b, c = st.columns(3)
a.metric("Errors it fixes", len(diff["fixed"]))
b.metric("Errors it introduces", len(diff["introduced"]))
c.metric("Errors both make", len(diff["both_wrong"]))


def show_detail(index: int) -> None:
    st.session_state["misclassified-detail"] = index  # shown beside the matrix above


fixed_tab, introduced_tab = st.tabs(["Fixed by the second model", "Introduced by it"])
with fixed_tab:
    st.caption(f"Captions show {ref.name}'s answers.")
    ui.digit_gallery(
        diff["fixed"], result, images, key="fixed", on_pick=show_detail, noun=data.noun
    )
with introduced_tab:
    st.caption(f"Captions show {other.name}'s answers.")
    ui.digit_gallery(
        diff["introduced"], second, images, key="introduced", on_pick=show_detail, noun=data.noun
    )
