"""How long until a page is on screen: the server's cold start, and each page switch.

Each round starts `streamlit run streamlit_app.py` on a free loopback port with a fresh
temporary MNIST_DEMO_HOME (MNIST_DEMO_DATA points at the existing verified cache, so
nothing is fetched), and Chromium (already running) opens the Home page as soon as the
server answers its health check. Cold start = from the server process's start until
Home shows "The answers" and the metric "(b) Misclassified" (which needs MNIST, the
shipped model and its 10,000 test predictions).

Then, in the same browser page, each sidebar link is clicked in turn (Train, Test set,
Misclassified, Draw, Home), twice: the first visit runs each page with the server's
caches partly cold, the second is warm. A switch is timed from the click until the
page's own content is visible:

    Train          "Run history"
    Test set       "test images match"
    Misclassified  "Per digit"
    Draw           the canvas (canvas.upper-canvas) and "Draw a digit on the black square"
    Home           "The answers" and the metric "(b) Misclassified"

Prints figures, asserts nothing. Targets: cold start <= 8 s, warm switch <= 1.5 s.

    .venv/bin/python benchmarks/page_load.py [--quick] [--rounds 3]
"""

from __future__ import annotations

import time

import common
from common import VIEWPORT, fmt, stats, verdict

from tools.app_server import launch_chromium

TARGET_COLD_S = 8.0
TARGET_SWITCH_S = 1.5
TIMEOUT_MS = 180_000
PAGES = ["Train", "Test set", "Misclassified", "Draw", "Home"]


def markers(page, name: str) -> list:
    """Locators that are visible once page `name` has rendered its content."""
    if name == "Home":
        metric = page.get_by_test_id("stMetric").filter(has_text="(b) Misclassified")
        return [page.get_by_text("The answers").first, metric.get_by_test_id("stMetricValue")]
    if name == "Draw":
        return [
            page.locator("canvas.upper-canvas"),
            page.get_by_text("Draw a digit on the black square"),
        ]
    text = {"Train": "Run history", "Test set": "test images match", "Misclassified": "Per digit"}
    return [page.get_by_text(text[name]).first]


def wait_rendered(page, name: str) -> None:
    for locator in markers(page, name):
        locator.wait_for(state="visible", timeout=TIMEOUT_MS)


def one_round(browser, i: int, pages: list[str]) -> dict:
    with common.app_server("digit-lab-pageload-", wait_healthy=False) as server:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        try:
            health_s = server.wait_healthy()
            page.goto(server.url + "/", timeout=TIMEOUT_MS)
            wait_rendered(page, "Home")
            cold_s = time.monotonic() - server.started_at
            rss_after = {"Home (cold)": common.tree_rss_bytes(server.pid)}
            switches: dict[str, list[float]] = {name: [] for name in pages}
            nav = page.get_by_test_id("stSidebar")  # the app's own menu (ui.sidebar.PAGES)
            for _visit in range(2):
                for name in pages:
                    link = nav.get_by_role("link", name=name, exact=True)
                    t = time.monotonic()
                    link.click()
                    wait_rendered(page, name)
                    switches[name].append(time.monotonic() - t)
                    if _visit == 0:
                        rss_after[name] = common.tree_rss_bytes(server.pid)
            rss = common.tree_rss_bytes(server.pid)
            exceptions = page.get_by_test_id("stException").count()
        except Exception:
            print(f"  round {i + 1} failed; server log tail:\n{server.log_tail()}")
            raise
        finally:
            context.close()
    print(
        f"  round {i + 1}: server healthy {health_s:5.2f} s, Home rendered {cold_s:5.2f} s; "
        + ", ".join(f"{n} {s[0]:.2f}/{s[1]:.2f}" for n, s in switches.items())
        + f" s (first/second); server RSS {rss / 2**20:.0f} MB"
        + (f"; {exceptions} stException on screen" if exceptions else "")
    )
    print(
        "           server RSS after each first visit: "
        + ", ".join(f"{n} {v / 2**20:.0f}" for n, v in rss_after.items())
        + " MB"
    )
    return {"health": health_s, "cold": cold_s, "switches": switches, "rss": rss}


def main() -> None:
    parser = common.ArgumentParser(__doc__, rounds=1, pages=["Train", "Home"])
    parser.add_argument("--rounds", type=int, default=3, help="server cold starts (default 3)")
    parser.add_argument("--pages", nargs="+", choices=PAGES, default=PAGES, help="Home last")
    args = parser.parse_args()
    pages = args.pages

    from playwright.sync_api import sync_playwright

    common.header(__doc__)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            rounds = [one_round(browser, i, pages) for i in range(args.rounds)]
        finally:
            browser.close()

    print()
    cold = [r["cold"] for r in rounds]
    print(f"server process start -> health check OK   {fmt([r['health'] for r in rounds], 's')}")
    print(f"server process start -> Home rendered     {fmt(cold, 's')}")
    print("page switch, click -> content visible (seconds)")
    print(f"  {'page':<14}{'first visit (cold caches)':<44}second visit (warm)")
    warm_medians = {}
    for name in pages:
        first = [r["switches"][name][0] for r in rounds]
        second = [r["switches"][name][1] for r in rounds]
        warm_medians[name] = stats(second)[0]
        print(f"  {name:<14}{fmt(first, 's'):<44}{fmt(second, 's')}")
    print(f"server RSS after the tour: {fmt([r['rss'] / 2**20 for r in rounds], 'MB', 0)}")

    print()
    slowest = max(warm_medians, key=warm_medians.get)
    first_all = [r["switches"][n][0] for r in rounds for n in pages]
    second_all = [r["switches"][n][1] for r in rounds for n in pages]
    print(
        f"ratio first/second visit (median over all switches): "
        f"{stats(first_all)[0] / stats(second_all)[0]:.2f}; cold start / warm Home switch: "
        f"{stats(cold)[0] / warm_medians['Home']:.1f}"
    )
    med = stats(cold)[0]
    print(
        f"target cold start <= {TARGET_COLD_S:.0f} s: median {med:.2f} s, "
        f"{verdict(med <= TARGET_COLD_S)}"
    )
    ok = all(v <= TARGET_SWITCH_S for v in warm_medians.values())
    print(
        f"target warm page switch <= {TARGET_SWITCH_S} s (median per page): slowest {slowest} "
        f"{warm_medians[slowest]:.2f} s, {verdict(ok)}"
    )


if __name__ == "__main__":
    main()
