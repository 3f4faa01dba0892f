"""Digit Lab: entry point. Navigation over pages/, and the sidebar every page shares."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st

from mnist_demo import ui

st.set_page_config(page_title="Digit Lab", page_icon="✍️", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/school:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/test_set.py", title="Test set", icon=":material/grid_view:"),
    st.Page("pages/misclassified.py", title="Misclassified", icon=":material/error:"),
    st.Page("pages/draw.py", title="Draw", icon=":material/draw:"),
]

page = st.navigation(PAGES)
st.session_state[ui.MODEL_REF_KEY] = ui.sidebar()
ui.follow_deep_link()
page.run()
