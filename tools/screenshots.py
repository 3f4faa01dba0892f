"""Screenshots of every page, as a projector (1280x720) and a phone (390x844) show them:
`python -m tools.screenshots OUT_DIR [--url URL]` writes OUT_DIR/<page>-<size>.png
(the first screen and the whole page). With no --url it starts the app on a fresh data
home and stops it afterwards. For looking at the pages, not for the tests."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

SIZES = {"projector": (1280, 720), "phone": (390, 844)}


def main() -> None:
    from playwright.sync_api import sync_playwright

    from mnist_demo.ui.sidebar import PAGES
    from tools.accessibility import wait_for_page
    from tools.app_server import INSTRUCTOR_CODE, AppServer, launch_chromium

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--url", help="a running app (its instructor code must be the tests')")
    parser.add_argument("--pages", nargs="*", help="page titles (default: every page)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = None if args.url else AppServer(Path(tmp) / "home").start()
        base = args.url or server.url
        try:
            with sync_playwright() as p:
                browser = launch_chromium(p)
                for size, (width, height) in SIZES.items():
                    context = browser.new_context(viewport={"width": width, "height": height})
                    page = context.new_page()
                    wait_for_page(page, f"{base}/?code={INSTRUCTOR_CODE}", "Home")
                    for app_page in PAGES:
                        if args.pages and app_page.title not in args.pages:
                            continue
                        url = base if app_page is PAGES[0] else f"{base}/{app_page.url}"
                        wait_for_page(page, url, app_page.title)
                        name = app_page.title.lower().replace(" ", "-")
                        page.screenshot(path=args.out / f"{name}-{size}.png")
                        whole_page(page, args.out / f"{name}-{size}-full.png", width, height)
                        print(args.out / f"{name}-{size}.png")
                    context.close()
                browser.close()
        finally:
            if server is not None:
                server.stop()


def whole_page(page, path: Path, width: int, height: int) -> None:
    """The whole page: Streamlit scrolls its main area inside the window, so a full-page
    screenshot is the window; the window is made as tall as the page for a moment."""
    tall = page.evaluate("""() => document.querySelector('[data-testid="stMain"]').scrollHeight""")
    page.set_viewport_size({"width": width, "height": min(max(tall, height), 8000)})
    page.wait_for_timeout(3000)  # elements newly in view are drawn (placeholders before)
    page.screenshot(path=path)
    page.set_viewport_size({"width": width, "height": height})


if __name__ == "__main__":
    main()
