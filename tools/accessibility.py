"""axe-core in a real page: the WCAG 2.2 A/AA checks the accessibility test runs on every
page, and `python -m tools.accessibility` prints per page (counts and what failed).

axe-core comes with the PyPI package `axe-playwright-python` (its axe.min.js, no network);
we inject that file ourselves and call `axe.run` with real JSON arguments (the package's
own wrapper passes the context through Python's repr)."""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from axe_playwright_python.base import AXE_SCRIPT

# The rules of WCAG 2.0, 2.1 and 2.2 at levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = ("critical", "serious")

# Parts of the page that are Streamlit's own widgets, not the app's content, each with the
# upstream issue that tracks it. Kept narrow: one selector per known problem.
STREAMLIT_OWN: dict[str, str] = {}


def run_axe(page, exclude: dict[str, str] | None = None) -> list[dict]:
    """axe-core's violations on the page as it is now (AXE_TAGS rules), the selectors in
    `exclude` (default STREAMLIT_OWN) left out."""
    exclude = STREAMLIT_OWN if exclude is None else exclude
    page.evaluate(AXE_SCRIPT)
    context = {"exclude": [[selector] for selector in exclude]}  # and the rest: all
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}
    results = page.evaluate("([context, options]) => axe.run(context, options)", [context, options])
    return results["violations"]


def blocking(violations: list[dict]) -> list[dict]:
    """The critical and serious ones: what the test refuses."""
    return [v for v in violations if v.get("impact") in BLOCKING]


def describe(violations: list[dict]) -> str:
    """One line per rule and element: what a developer needs to find it."""
    lines = []
    for v in violations:
        for node in v["nodes"]:
            target = " ".join(str(t) for t in node["target"])
            lines.append(f"  {v['impact']:8} {v['id']}: {target} — {v['help']}")
    return "\n".join(lines)


def counts(violations: list[dict]) -> Counter:
    """Affected elements by impact."""
    found: Counter = Counter()
    for v in violations:
        found[v["impact"]] += len(v["nodes"])
    return found


def main() -> None:
    """Start the app, visit every page in Chromium at 1280x720 and print axe's findings."""
    from playwright.sync_api import sync_playwright

    from mnist_demo.ui.sidebar import PAGES
    from tools.app_server import INSTRUCTOR_CODE, AppServer, launch_chromium

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--all", action="store_true", help="minor and moderate ones too")
    parser.add_argument(
        "--no-exclude", action="store_true", help="check Streamlit's own widgets too"
    )
    parser.add_argument("--url", help="a running app (started with the tests' instructor code)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None if args.url else AppServer(Path(tmp) / "home").start()
        base = args.url or server.url
        try:
            with sync_playwright() as p:
                browser = launch_chromium(p)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                wait_for_page(page, f"{base}/?code={INSTRUCTOR_CODE}", "Home")
                for app_page in PAGES:
                    url = base if app_page is PAGES[0] else f"{base}/{app_page.url}"
                    wait_for_page(page, url, app_page.title)
                    found = run_axe(page, {} if args.no_exclude else None)
                    shown = found if args.all else blocking(found)
                    print(f"{app_page.title}: {dict(counts(found))}")
                    if shown:
                        print(describe(shown))
                browser.close()
        finally:
            if server is not None:
                server.stop()


# Streamlit's frontend marks its root element when the page's script has run to the end.
PAGE_DRAWN_JS = """() => document.querySelector('[data-testid="stApp"]')
    ?.getAttribute("data-test-script-state") === "notRunning"
  && document.querySelector('[data-testid="stMainBlockContainer"] h1')"""


def wait_for_page(page, url: str, title: str, timeout_ms: int = 120_000) -> None:
    """Open `url` and wait until Streamlit has finished running the page's script."""
    page.goto(url)
    page.get_by_test_id("stSidebar").wait_for(state="attached", timeout=timeout_ms)
    page.wait_for_function(PAGE_DRAWN_JS, timeout=timeout_ms)
    page.wait_for_timeout(500)  # charts and images settle


if __name__ == "__main__":
    main()
