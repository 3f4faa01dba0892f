"""Test set: the 10,000 test images with the model's answers, filtered and sorted."""

import streamlit as st

from mnist_demo import ui
from mnist_demo.evaluation import ORDERS, select
from mnist_demo.ui.widgets import ANY

DETAIL_KEY = "test_set_detail"

ref = ui.page_setup(__file__)
st.title("The test set")
st.caption(f"Model: **{ref.name}**. Click a digit to see its probabilities.")
with ui.user_errors():
    data = ui.choose_dataset(ref, key="test_set_dataset")
result, images = data.result, data.images
if data.skipped:
    st.warning(f"{data.skipped} class drawing(s) could not be read and are left out.")
if result.n == 0:
    st.info("No class drawings yet: students send them from the Draw page.")
    st.stop()

digits = [ANY, *range(10)]
c1, c2, c3, c4 = st.columns([1, 1, 1.3, 1.6])
true_digit = c1.selectbox("True digit", digits)
predicted_digit = c2.selectbox("Predicted digit", digits)
outcome = c3.segmented_control(
    "Answers", ["all", "right", "wrong"], default="all", format_func=str.capitalize
)
order = c4.selectbox("Sort", list(ORDERS)[:3], format_func=ORDERS.get)
low, high = st.slider(
    "Confidence (probability of the predicted digit)", 0, 100, (0, 100), 1, format="%d%%"
)

indices = select(
    result,
    true_digit=None if true_digit == ANY else true_digit,
    predicted_digit=None if predicted_digit == ANY else predicted_digit,
    outcome=outcome or "all",
    confidence=(low / 100, high / 100),
    order=order,
)
st.markdown(f"**{len(indices):,}** of {result.n:,} {data.noun}s match.")


def show_detail(index: int | None) -> None:
    if index is not None:
        st.session_state[DETAIL_KEY] = index


# The detail sits beside the grid (as on Misclassified): below it, a click seemed to do
# nothing on a projector, the answer being off-screen.
grid, detail = st.columns([1.6, 1], gap="large")
with grid:
    ui.digit_gallery(
        indices, result, images, key="test-set", on_pick=show_detail, columns=5, noun=data.noun
    )
with detail:
    st.subheader("One image, in detail")
    st.number_input(
        f"Go to {data.noun}",
        min_value=0,
        max_value=result.n - 1,
        value=None,
        placeholder=f"0–{result.n - 1}",
        step=1,
        key="go_to",
        on_change=lambda: show_detail(st.session_state.go_to),
    )
    if st.session_state.get(DETAIL_KEY, result.n) < result.n:  # (the other set may be larger)
        ui.digit_detail(st.session_state[DETAIL_KEY], result, images, noun=data.noun)
    else:
        st.caption("Click a digit, or type its number.")
