"""Digit Lab: the entry point. Navigation over app_pages/ (listed in `ui.sidebar.PAGES`;
not pages/, a name Streamlit treats as its old multipage mode); each page draws the
shared sidebar, menu included, itself through `ui.page_setup` (see there why).

A fresh server's first visitor would otherwise stare at a blank page while TensorFlow is
imported (4-7 s on 2 cores): so, while it is not imported yet, this script paints the
page's frame, the title and a line saying what is loading before it imports anything
heavy, and clears them once it is loaded. Every request runs this script first, a
deep link such as /draw too."""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st

from mnist_demo.quiet import tensorflow_notices_filtered

APP_TITLE = "Digit Lab"
LOADING = "Loading TensorFlow and the model…"

loading = None
if "tensorflow" not in sys.modules:  # only the first runs of a fresh server wait
    st.set_page_config(page_title=APP_TITLE, page_icon="✍️", layout="wide")
    loading = st.empty()
    with loading.container():
        st.title(APP_TITLE)
        st.caption(LOADING)

with tensorflow_notices_filtered():  # its start-up notices are not for the terminal
    from mnist_demo.ui import sidebar  # (imports TensorFlow: after the paint)

if loading is not None:  # loaded: the page draws itself from here (a page that stops
    loading.empty()  # early, st.stop, would otherwise leave the line standing)
from mnist_demo import config  # noqa: E402
from mnist_demo.store import StoreUnavailableError  # noqa: E402

STORE_DOWN = "The class's database is not answering — retrying. Nothing is lost."
RETRY_S = 2.0

try:
    page = sidebar.navigation()
    # The lecture hall (`make hall`) names each replica, so an instructor can tell which
    # one answered and when one is down; a single server sets nothing and shows nothing.
    if server_name := os.environ.get(config.SERVER_ENV, "").strip():
        st.sidebar.caption(f"Answered by {server_name}")
    page.run()
except StoreUnavailableError:
    # PostgreSQL restarting (the supervisor starts it again), SQLite locked: one plain
    # line, and the page comes back by itself when the store answers.
    st.warning(STORE_DOWN, icon=":material/hourglass_top:")
    time.sleep(RETRY_S)
    st.rerun()
