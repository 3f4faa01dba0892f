"""Settings in files that a test would otherwise never read."""

import tomllib
from pathlib import Path

from mnist_demo.ui.sidebar import PAGES

ROOT = Path(__file__).resolve().parents[1]


def test_students_never_see_tracebacks_with_server_paths():
    """An unexpected error shows its kind only; the traceback stays in the server log
    (user mistakes are st.error messages with what to do, not exceptions)."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] in ("type", "none")


def test_there_is_no_pages_folder_and_the_apps_menu_lists_every_page():
    """A folder named pages/ beside the entry script puts Streamlit in its old multipage
    mode until st.navigation first runs, where a fresh server's first deep link (say
    /test_set, browse.py) is "Page not found": the page files are in app_pages/. The
    app's own menu (ui.sidebar.PAGES) must offer every page file, each once."""
    assert not (ROOT / "pages").exists()
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "app_pages").glob("*.py"))
    assert files
    assert sorted(p.path for p in PAGES) == files
    assert len({p.title for p in PAGES}) == len(PAGES)
    assert len({p.url for p in PAGES}) == len(PAGES)


def test_no_page_file_is_named_like_a_test_and_the_test_sets_url_stays():
    """pytest collects test_*.py, so a page is never named like one; the Test set page
    (app_pages/browse.py) keeps the URL /test_set that links and bookmarks already use."""
    assert not [p.path for p in PAGES if Path(p.path).name.startswith("test_")]
    assert {p.title: p.url for p in PAGES}["Test set"] == "test_set"
