"""The frame every page runs in: page config and the sidebar with the page menu and
the session's model choice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from mnist_demo.models import ModelRef, available_models, default_model
from mnist_demo.ui import classroom
from mnist_demo.ui.resources import registry, registry_notice
from mnist_demo.ui.widgets import ago

MODEL_KEY = "model_key"  # the lab pages' model, per browser session
DRAW_MODEL_KEY = "draw_model_key"  # the Draw page's model
DEFAULTS_KEY = "model_defaults"  # the defaults this session was last given, per key


@dataclass(frozen=True)
class AppPage:
    path: str  # relative to the entry script
    title: str
    icon: str
    url_path: str = ""  # the page's URL (not the default one's: that is the root)

    @property
    def url(self) -> str:
        return self.url_path or Path(self.path).stem


PAGES = (  # the first is the default, at the app's root URL
    AppPage("app_pages/home.py", "Home", ":material/school:"),
    AppPage("app_pages/train.py", "Train", ":material/model_training:"),
    AppPage("app_pages/browse.py", "Test set", ":material/grid_view:", url_path="test_set"),
    AppPage("app_pages/misclassified.py", "Misclassified", ":material/error:"),
    AppPage("app_pages/draw.py", "Draw", ":material/draw:"),
    AppPage("app_pages/class.py", "Class", ":material/groups:"),
    AppPage("app_pages/join.py", "Join", ":material/qr_code_2:"),
    AppPage("app_pages/experiment.py", "Experiment", ":material/science:"),
    AppPage("app_pages/leaderboard.py", "Leaderboard", ":material/leaderboard:"),
)


def navigation() -> StreamlitPage:
    """The entry script's st.navigation over PAGES, its menu drawn by `sidebar` on
    every page (st.page_link), Streamlit's own hidden.

    The page files are in app_pages/, not pages/: Streamlit serves a folder named
    `pages` beside the entry script in its older multipage mode until st.navigation
    has run once in the process, and that mode knows the pages only by file name (a
    fresh server's first visit to /test_set, browse.py, was "Page not found"). Without
    one, every request runs the entry script, deep links from the first included.
    """
    return st.navigation(
        [
            st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url, default=p is PAGES[0])
            for p in PAGES
        ],
        position="hidden",
    )


def page_setup(page_file: str, for_drawings: bool = False) -> ModelRef:
    """Every page starts here: page config, the shared sidebar, and the model it chose
    (Draw has its own choice: drawings are read best by another model than the lab's).

    `page_file` (the page's __file__) is not used any more: it served a deep-link
    detour that the old `pages/` folder mode needed. The sidebar is drawn here rather
    than in the entry script so that a page run alone still has it.
    """
    del page_file
    classroom.print_instructor_link_once()
    classroom.restore_from_cookie()
    classroom.consume_code_in_url()
    st.set_page_config(page_title="Digit Lab", page_icon="✍️", layout="wide")
    return sidebar(for_drawings)


# --- the sidebar ----------------------------------------------------------------------


def sidebar(for_drawings: bool = False) -> ModelRef:
    """The model this page shows, chosen per browser session, and which model the other
    pages use. A new session starts on the models `models.default_model` picks, and
    follows them when they change (the instructor makes a run active, or the class's
    model for Draw) unless it chose another model itself. A student is offered the
    shipped models, the instructor's runs and their own finished experiments
    (`models.available_models`)."""
    reg = registry()
    models = {
        m.key: m
        for m in available_models(reg, role=classroom.role(), student=classroom.session_tag())
    }
    keys = {False: MODEL_KEY, True: DRAW_MODEL_KEY}
    given = st.session_state.setdefault(DEFAULTS_KEY, {})
    for drawings, key in keys.items():
        default = default_model(reg, for_drawings=drawings).key
        current = st.session_state.get(key)
        if current not in models or (current == given.get(key) and default != current):
            st.session_state[key] = default
        given[key] = default
    this, other = keys[for_drawings], keys[not for_drawings]
    with st.sidebar:
        for page in PAGES:
            st.page_link(page.path, label=page.title, icon=page.icon)
        st.divider()
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
        st.divider()
        classroom.role_panel()
    return ref


def _training_badge() -> None:
    running = registry().running()
    if running:
        # No epoch count here: the sidebar is drawn when a page loads, not on every poll.
        st.info(f"Run {running[0].id} is training: watch it on the Train page.", icon="⏳")
