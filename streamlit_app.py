"""Digit Lab: the entry point. Navigation over pages/; each page draws the shared
sidebar itself through `ui.page_setup` (see there why)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st

from mnist_demo import ui

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/school:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/test_set.py", title="Test set", icon=":material/grid_view:"),
    st.Page("pages/misclassified.py", title="Misclassified", icon=":material/error:"),
    st.Page("pages/draw.py", title="Draw", icon=":material/draw:"),
    st.Page("pages/class.py", title="Class", icon=":material/groups:"),
    st.Page("pages/join.py", title="Join", icon=":material/qr_code_2:"),
]

page = st.navigation(PAGES)
ui.entry_ran()
page.run()
