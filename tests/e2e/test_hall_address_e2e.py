"""The client address through the lecture hall's nginx, in real Chromium (issue 31).

The hall's nginx listens on every interface; a browser that opens it at this machine's
LAN address is a client from the network, as a student's laptop is: nginx sees the LAN address and
overwrites X-Forwarded-For with it; the replica trusts that header from nginx (on
loopback, MNIST_DEMO_TRUSTED_PROXY) and from no one else. A student whose browser forges
X-Forwarded-For gets a seat in the real address's group, never the forged one's.
(A forged header straight to a plain server: tests/e2e/test_fair_class_e2e.py.)
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mnist_demo import classroom, students
from mnist_demo.serve import hall as hall_module
from mnist_demo.serve.postgres import LocalPostgres
from mnist_demo.store import Store
from mnist_demo.students import COOKIE
from tools.hall_process import HallProcess

LAN = classroom.lan_address()

pytestmark = [
    pytest.mark.skipif(
        hall_module.missing_packages() != [],
        reason="needs Debian's nginx and postgresql (make nginx postgres)",
    ),
    pytest.mark.skipif(LAN.startswith("127."), reason="this machine has no LAN address"),
]


@pytest.fixture(scope="module")
def hall():
    home = Path(tempfile.mkdtemp(prefix="digit-lab-hall-address-"))
    home.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    running = HallProcess(
        home, port=hall_module.pick_port(0, set()), replicas=1, listen="0.0.0.0"
    ).start()
    yield running
    running.stop()
    shutil.rmtree(home, ignore_errors=True)


def test_through_the_halls_nginx_the_real_address_counts_not_a_forged_one(hall, browser):
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.66"})
    try:
        page = context.new_page()
        page.goto(f"http://{LAN}:{hall.port}/experiment")  # from the network, as a laptop
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text(re.compile(r"You are "))).to_be_visible(timeout=120_000)
        sidebar.get_by_text(re.compile(r"You are ")).click()
        sidebar.get_by_role("textbox", name="Nickname (optional)").fill("Remote")
        sidebar.get_by_role("button", name="Save nickname").click()
        expect(sidebar.get_by_text("The class sees you as Remote.")).to_be_visible()
        tag = next(c["value"] for c in context.cookies() if c["name"] == COOKIE).split(".")[0]
    finally:
        context.close()
    store = Store(LocalPostgres(hall.home / "hall" / "postgres", hall.postgres_port).url)
    seat = students.get(store, tag)
    assert seat is not None and seat.network == LAN, seat  # nginx's view, not the header's
