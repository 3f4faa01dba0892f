"""A fresh server's first visitor: no raw file-name menu, no "Page not found".

Streamlit serves a folder named pages/ beside the entry script in its old multipage
mode until the entry script's st.navigation has run once in the process; the page files
used to be there. That mode's sidebar menu (streamlit app, class, draw, home, ...)
showed for about 2 s of a fresh server's first load, a click on its "home" ended in a
"Page not found" dialog, and so did a first visit to /test_set (its file is browse.py):
the old mode knows pages by file name only. The pages are in app_pages/ now. Each test
here needs a server no browser has visited yet, so each starts its own (the conftest's
`app_server`); a recorder in the page samples the DOM from the very first render, at
every change and every 50 ms.
"""

from __future__ import annotations

import time

from playwright.sync_api import expect

from mnist_demo.ui.sidebar import PAGES

NAV_LINKS = "[data-testid=stSidebarNav] a, [data-testid=stSidebar] [data-testid=stPageLink] a"
# Installed before any page script runs: the menu labels ever shown, and whether a "Page
# not found" dialog ever appeared (an icon's ligature precedes a label on its own line).
RECORDER = f"""
(() => {{
  const seen = (window.digitLabSeen = {{ labels: new Set(), notFound: false }});
  const look = () => {{
    for (const a of document.querySelectorAll({NAV_LINKS!r})) {{
      // the label without its Material icon's ligature ("school" before "Home")
      const icon = a.querySelector('[data-testid="stIconMaterial"]');
      const text = icon ? a.innerText.replace(icon.innerText, "") : a.innerText;
      seen.labels.add(text.trim().split("\\n").pop().trim());
    }}
    if (document.body && document.body.innerText.includes("Page not found"))
      seen.notFound = true;
  }};
  new MutationObserver(look).observe(document, {{ childList: true, subtree: true }});
  setInterval(look, 50);
}})();
"""
TITLES = {p.title for p in PAGES}
HEADINGS = {  # each page's h1
    "Home": "Lab 7 — CNN with Keras",
    "Train": "Train the CNN",
    "Test set": "The test set",
    "Misclassified": "Misclassified",
    "Draw": "Draw a digit",
    "Class": "The class's drawings",
    "Join": "Join the class",
}
URLS = {p.title: "" if p is PAGES[0] else p.url for p in PAGES}
FIRST_LOAD_S = 120  # a fresh server imports TensorFlow and loads a model first


def open_recorded(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    context.add_init_script(RECORDER)
    return context, context.new_page()


def menu_link(page, label: str):
    # exactly: a substring match would take "Misclassified" for "Class"
    return page.get_by_test_id("stSidebar").get_by_role("link", name=label, exact=True)


def recorded(page) -> tuple[set[str], bool]:
    seen = page.evaluate("() => [[...window.digitLabSeen.labels], window.digitLabSeen.notFound]")
    return set(seen[0]), seen[1]


def on_page(page, server, title: str) -> None:
    expect(page.locator("h1").first).to_have_text(HEADINGS[title], timeout=FIRST_LOAD_S * 1000)
    expect(page).to_have_url(f"{server.url}/{URLS[title]}")


def test_the_first_visitor_sees_only_the_apps_menu_and_each_link_opens_its_page(
    app_server, browser
):
    context, page = open_recorded(browser)
    page.goto(app_server.url, wait_until="commit")
    clicked: list[str] = []
    deadline = time.monotonic() + FIRST_LOAD_S
    while len(clicked) < len(PAGES):  # each link clicked as soon as it is there
        assert time.monotonic() < deadline, f"menu links clicked: {clicked}"
        labels = [
            text.split("\n")[-1].strip() for text in page.locator(NAV_LINKS).all_inner_texts()
        ]
        fresh = [label for label in labels if label not in clicked]
        if not fresh:
            page.wait_for_timeout(50)
            continue
        menu_link(page, fresh[0]).click()
        clicked.append(fresh[0])
        if fresh[0] in HEADINGS:
            on_page(page, app_server, fresh[0])
    labels, not_found = recorded(page)
    context.close()
    assert labels == TITLES, f"menu entries that are not page titles: {labels - TITLES}"
    assert clicked == [p.title for p in PAGES]
    assert not not_found


def test_a_deep_link_to_a_fresh_server_and_a_refresh_show_the_right_page(app_server, browser):
    context, page = open_recorded(browser)
    page.goto(f"{app_server.url}/draw", wait_until="commit")
    on_page(page, app_server, "Draw")
    expect(page.locator("canvas.upper-canvas")).to_be_visible()
    seen = [recorded(page)]
    page.reload(wait_until="commit")
    on_page(page, app_server, "Draw")
    menu_link(page, "Home").click()
    on_page(page, app_server, "Home")
    seen.append(recorded(page))
    page.reload(wait_until="commit")  # Home's URL is the root, whichever way it was reached
    on_page(page, app_server, "Home")
    expect(page.locator(NAV_LINKS)).to_have_count(len(PAGES))
    seen.append(recorded(page))
    context.close()
    for labels, not_found in seen:
        assert labels <= TITLES, f"menu entries that are not page titles: {labels - TITLES}"
        assert not not_found


def test_a_fresh_servers_first_visit_to_test_set_shows_the_test_set(app_server, browser):
    """/test_set is the Test set page's URL, not its file's name (app_pages/browse.py)."""
    context, page = open_recorded(browser)
    page.goto(f"{app_server.url}/test_set", wait_until="commit")
    on_page(page, app_server, "Test set")
    expect(page.locator(NAV_LINKS)).to_have_count(len(PAGES))
    seen = [recorded(page)]
    page.reload(wait_until="commit")
    on_page(page, app_server, "Test set")
    seen.append(recorded(page))
    context.close()
    for labels, not_found in seen:
        assert labels <= TITLES, f"menu entries that are not page titles: {labels - TITLES}"
        assert not not_found, '"Page not found" was shown'
