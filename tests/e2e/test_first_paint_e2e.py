"""A fresh server's first page paints at once: the page frame, the app's title and a
line saying what is loading. Importing TensorFlow (4-7 s on a busy 2-core machine) and
loading the model come after that paint, not before it; the page's own content
replaces the line when they are done.

The test needs a server no browser has visited yet (the conftest's `app_server`). A
recorder in the page notes, from the very first render, when each of these first
appears (ms since navigation start): the title, the loading line, and Home's heading,
which needs TensorFlow. It logs those times and asserts only their order.
"""

from __future__ import annotations

import json

from playwright.sync_api import expect

APP_TITLE = "Digit Lab"
LOADING = "Loading TensorFlow and the model…"
HOME_HEADING = "Lab 7 — CNN with Keras"
FIRST_LOAD_S = 120  # a fresh server imports TensorFlow and loads a model first

RECORDER = f"""
(() => {{
  const seen = (window.digitLabFirstPaint = {{}});
  const note = (name, found) => {{
    if (found && !(name in seen)) seen[name] = Math.round(performance.now());
  }};
  const look = () => {{
    if (!document.body) return;
    const headings = [...document.querySelectorAll("h1")].map((h) => h.innerText.trim());
    note("title", headings.includes({APP_TITLE!r}));
    note("loading", document.body.innerText.includes({LOADING!r}));
    note("content", headings.includes({HOME_HEADING!r}));
  }};
  new MutationObserver(look).observe(document, {{
    childList: true, subtree: true, characterData: true,
  }});
  setInterval(look, 20);
}})();
"""


def test_a_fresh_server_paints_the_title_and_what_is_loading_before_tensorflow(
    app_server, browser, tmp_path
):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    context.add_init_script(RECORDER)
    page = context.new_page()
    page.goto(app_server.url, wait_until="commit")

    loading = page.get_by_text(LOADING)
    expect(loading).to_be_visible()
    expect(page.locator("h1").first).to_have_text(APP_TITLE)
    shot = tmp_path / "first_paint.png"
    page.screenshot(path=shot)
    expect(page.locator("h1").first).to_have_text(HOME_HEADING, timeout=FIRST_LOAD_S * 1000)
    expect(loading).to_have_count(0)  # the line goes once the page is there
    seen = page.evaluate("() => window.digitLabFirstPaint")
    context.close()

    print(f"\nfirst paint, ms since navigation start: {json.dumps(seen)}; screenshot {shot}")
    assert {"title", "loading", "content"} <= seen.keys(), seen
    assert seen["title"] < seen["content"], seen
    assert seen["loading"] < seen["content"], seen
