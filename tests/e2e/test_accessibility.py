"""Readable by everyone: axe-core's WCAG 2.2 A/AA rules on every page in Chromium, as the
instructor sees it (every control shown) and as a phone shows Draw after a stroke. No
critical or serious violation in the app's own content (tools/accessibility.py: the rules,
and the parts of Streamlit's own widgets left out, each with its upstream issue).

One server and one browser for the module; the pages are visited in turn."""

import pytest

from mnist_demo.ui.sidebar import PAGES
from tests.e2e.drawing import SEVEN, mouse_strokes, prediction_is
from tools.accessibility import blocking, describe, run_axe, wait_for_page


@pytest.fixture(scope="module")
def instructor(browser, server):
    """One browser session, unlocked with the instructor link, at a projector's size."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(60_000)
    page = context.new_page()
    wait_for_page(page, server.instructor_url, "Home")
    yield page
    context.close()


@pytest.mark.parametrize("app_page", PAGES, ids=[p.title for p in PAGES])
def test_no_serious_accessibility_violation_on_the_page(instructor, server, app_page):
    url = server.url if app_page is PAGES[0] else f"{server.url}/{app_page.url}"
    wait_for_page(instructor, url, app_page.title)
    found = blocking(run_axe(instructor))
    assert not found, f"{app_page.title}:\n{describe(found)}"


def test_no_serious_accessibility_violation_on_a_phone_with_an_answer(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        wait_for_page(page, f"{server.url}/draw", "Draw")
        mouse_strokes(page, [SEVEN])
        prediction_is(page, "7")  # the answer, its bars and the 28x28 are on the page
        found = blocking(run_axe(page))
        assert not found, describe(found)
    finally:
        context.close()
