"""Test set: the 10,000 test images with the model's answers, filtered and sorted."""

import streamlit as st

from mnist_demo import ui
from mnist_demo.evaluation import ORDERS, select

ANY = "any"
DETAIL_KEY = "test_set_detail"

ref = ui.page_setup(__file__)
st.title("The test set")
st.caption(f"Model: **{ref.name}**. Click a digit to see its probabilities.")
with ui.user_errors():
    result = ui.evaluation(ref)
    _, (x_test, _) = ui.dataset()

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
st.markdown(f"**{len(indices):,}** of {result.n:,} test images match.")


def show_detail(index: int | None) -> None:
    if index is not None:
        st.session_state[DETAIL_KEY] = index


ui.digit_gallery(indices, result, x_test, key="test-set", on_pick=show_detail)

st.subheader("One image, in detail")
st.number_input(
    "Go to test image",
    min_value=0,
    max_value=result.n - 1,
    value=None,
    placeholder="0–9999",
    step=1,
    key="go_to",
    on_change=lambda: show_detail(st.session_state.go_to),
)
if DETAIL_KEY in st.session_state:
    ui.digit_detail(st.session_state[DETAIL_KEY], result, x_test)
else:
    st.caption("Click a digit above, or type an index.")
