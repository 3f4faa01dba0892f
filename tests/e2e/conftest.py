"""Browser tests: the real app in a real server, driven by Debian's Chromium.

Playwright's own browser download can't be relied on (`make test` installs Debian's
chromium instead), so the browser is launched from /usr/bin/chromium.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tools.app_server import AppServer, launch_chromium

# expect() waits 5 s by default; the first answer of a cold server loads and traces a
# model, which takes longer than that on a busy 2-core CI machine.
expect.set_options(timeout=30_000)


def pytest_collection_modifyitems(items):
    # The hook sees every collected test, not only this folder's: mark only ours.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def app_home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def app_server(app_home):
    server = AppServer(app_home).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """One server for a whole module, for modules whose tests can share it (each test in
    its own browser session); `app_server` is a fresh one per test."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    app = AppServer(tmp_path_factory.mktemp(name) / "home").start()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def new_page(browser):
    """Each call opens a page in a fresh context: a separate browser session."""
    contexts = []

    def open_page(width: int = 1400, height: int = 1000):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        ctx.set_default_timeout(30_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield open_page
    for ctx in contexts:
        ctx.close()
