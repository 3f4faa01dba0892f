"""The frame every page runs in: page config, the deep-link detour, and the sidebar
with the page menu and the session's model choice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from mnist_demo.runs import ModelRef, available_models, default_model
from mnist_demo.training import current_job
from mnist_demo.ui import classroom
from mnist_demo.ui.resources import registry, registry_notice
from mnist_demo.ui.widgets import ago

MODEL_KEY = "model_key"  # the lab pages' model, per browser session
DRAW_MODEL_KEY = "draw_model_key"  # the Draw page's model
ENTRY_KEY = "entry_ran"
DEEP_LINK_KEY = "deep_link"


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
    AppPage("pages/home.py", "Home", ":material/school:"),
    AppPage("pages/train.py", "Train", ":material/model_training:"),
    AppPage("pages/browse.py", "Test set", ":material/grid_view:", url_path="test_set"),
    AppPage("pages/misclassified.py", "Misclassified", ":material/error:"),
    AppPage("pages/draw.py", "Draw", ":material/draw:"),
    AppPage("pages/class.py", "Class", ":material/groups:"),
    AppPage("pages/join.py", "Join", ":material/qr_code_2:"),
)


def navigation() -> StreamlitPage:
    """The entry script's st.navigation over PAGES, its menu drawn by `sidebar`.

    Streamlit serves a `pages/` folder in its older multipage mode until an entry
    script has called st.navigation once in the process: a fresh server's first run
    sends that mode's menu, the raw file names, before our script starts (and a click
    on one could end in "Page not found"). The config option
    client.showSidebarNavigation = false hides that menu from the first message on, but
    also hides st.navigation's own sidebar menu: so the menu is ours, page links drawn
    by `sidebar` on every page.
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

    Until the entry script has called st.navigation once in the process (see
    `navigation`), a deep link (say /draw) to a freshly started server runs the page
    alone, under the old mode's page URLs, where Home is /home: a Home link clicked
    there ends in "Page not found" at the next refresh (the app's Home is /). So such a
    first visit detours through the entry script, which sends it back here. The
    sidebar is drawn here rather than in the entry script so that a page run alone (as
    AppTest does) still has it.
    """
    classroom.print_instructor_link_once()
    classroom.restore_from_cookie()
    classroom.consume_code_in_url()  # before any detour: switch_page drops the query
    if ENTRY_KEY not in st.session_state:
        app_root = Path(page_file).resolve().parents[1]
        st.session_state[DEEP_LINK_KEY] = Path(page_file).resolve().relative_to(app_root).as_posix()
        st.switch_page("streamlit_app.py")
    st.set_page_config(page_title="Digit Lab", page_icon="✍️", layout="wide")
    return sidebar(for_drawings)


def entry_ran() -> None:
    """Called by the entry script after st.navigation; finishes a deep link's detour."""
    st.session_state[ENTRY_KEY] = True
    target = st.session_state.pop(DEEP_LINK_KEY, None)
    if target:
        st.switch_page(target)


# --- the sidebar ----------------------------------------------------------------------


def sidebar(for_drawings: bool = False) -> ModelRef:
    """The model this page shows, chosen per browser session, and which model the other
    pages use. A new session starts on the models `runs.default_model` picks."""
    reg = registry()
    models = {m.key: m for m in available_models(reg)}
    keys = {False: MODEL_KEY, True: DRAW_MODEL_KEY}
    for drawings, key in keys.items():
        if st.session_state.get(key) not in models:
            st.session_state[key] = default_model(reg, for_drawings=drawings).key
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
    job = current_job(registry())
    if job is not None and job.is_running:
        # No epoch count here: the sidebar is drawn when a page loads, not on every poll.
        s = job.snapshot()
        st.info(f"Run {s.run_id} is training: watch it on the Train page.", icon="⏳")
