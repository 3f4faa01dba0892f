"""Digit Lab: the entry point. Navigation over pages/ (listed in `ui.sidebar.PAGES`);
each page draws the shared sidebar, menu included, itself through `ui.page_setup` (see
there why)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_demo.ui import sidebar

page = sidebar.navigation()
sidebar.entry_ran()
page.run()
