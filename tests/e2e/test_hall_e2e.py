"""The lecture hall in real Chromium, every browser through its nginx: one hall for the
module (`python -m mnist_demo hall`: PostgreSQL, the engine, two replicas, nginx), each
browser pinned to a replica by the proxy's own cookie (dl_replica), which the sidebar
confirms ("Answered by server 2 of 2").

- The instructor on replica 1 starts a Quick demo; a student on replica 2 sees it live,
  and stopped once the instructor stops it.
- Two students on different replicas send drawings; both appear on the Class wall.
- Replica 1 is killed (SIGKILL); its student reloads onto replica 2 with the same
  identity (the student cookie) and everything they sent still on the wall.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mnist_demo.serve import hall as hall_module
from tests.e2e.drawing import LOOP, SEVEN, VERTICAL
from tests.e2e.test_class_e2e import draw_and_send
from tests.e2e.test_train_e2e import PROGRESS, open_as_instructor, progress_position
from tools.hall_process import HallProcess

pytestmark = pytest.mark.skipif(
    hall_module.missing_packages() != [],
    reason="needs Debian's nginx and postgresql (make nginx postgres)",
)

IDENTITY = re.compile(r"You are (.+)")


@pytest.fixture(scope="module")
def hall():
    home = Path(tempfile.mkdtemp(prefix="digit-lab-hall-e2e-"))
    home.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    running = HallProcess(home, port=hall_module.pick_port(0, set()), replicas=2).start()
    yield running
    running.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def on_replica(browser, hall):
    """A fresh browser (its own session) that the proxy sends to replica `i`."""
    contexts = []

    def open_page(i: int, width: int = 1400, height: int = 1300):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        ctx.set_default_timeout(30_000)
        ctx.add_cookies([{"name": "dl_replica", "value": f"r{i}", "url": hall.url}])
        contexts.append(ctx)
        return ctx.new_page()

    yield open_page
    for ctx in contexts:
        ctx.close()


def answered_by(page, i: int, timeout_s: float = 120) -> None:
    expect(
        page.get_by_test_id("stSidebar").get_by_text(f"Answered by server {i} of 2")
    ).to_be_visible(timeout=timeout_s * 1000)


def identity(page) -> str:
    label = page.get_by_test_id("stSidebar").get_by_text(IDENTITY).first
    expect(label).to_be_visible(timeout=60_000)
    return IDENTITY.search(label.inner_text()).group(1).strip()


def test_a_quick_demo_on_one_replica_is_live_and_then_stopped_on_the_other(hall, on_replica):
    """What one replica does, the other shows: the run live point by point, then its
    end. (A Quick demo watched to its finish and its accuracy: test_train_e2e.py.)"""
    teacher = on_replica(1)
    open_as_instructor(teacher, hall)
    answered_by(teacher, 1)
    student = on_replica(2)
    student.goto(f"{hall.url}/train")
    answered_by(student, 2)
    teacher.goto(f"{hall.url}/train")
    expect(teacher.get_by_role("heading", name="Train the CNN")).to_be_visible(timeout=90_000)
    expect(student.get_by_role("heading", name="Train the CNN")).to_be_visible(timeout=90_000)
    teacher.get_by_role("button", name="Quick demo").click()

    running = re.compile(r"Run (\d+) · quick · (queued|running)")
    expect(student.get_by_text(running).first).to_be_visible(timeout=120_000)
    expect(student.get_by_text(PROGRESS).first).to_be_visible(timeout=120_000)
    seen: set[int] = set()
    for _ in range(1200):  # 100 ms apart: up to 2 minutes on a loaded machine
        if len(seen) >= 5:
            break
        with contextlib.suppress(Exception):  # the fragment may redraw while read
            seen.add(progress_position(student)[1])
        student.wait_for_timeout(100)
    assert len(seen) >= 5, f"the student's view moved only {len(seen)} times: not live"
    teacher.get_by_role("button", name="Stop").click()
    stopped = re.compile(r"Run \d+ · quick · stopped")
    expect(student.get_by_text(stopped)).to_be_visible(timeout=60_000)
    expect(teacher.get_by_text(stopped)).to_be_visible(timeout=30_000)
    answered_by(student, 2, timeout_s=5)


def test_students_on_both_replicas_send_both_on_the_wall_and_losing_a_replica_loses_nothing(
    hall, on_replica
):
    teacher = on_replica(2)  # the projector stays on the replica that survives
    open_as_instructor(teacher, hall)
    teacher.goto(f"{hall.url}/class")
    answered_by(teacher, 2)
    tiles = teacher.locator("figure.digit-lab-tile")
    before = tiles.count()

    alice, bob = on_replica(1), on_replica(2)
    draw_and_send(alice, hall.url, VERTICAL, read="1", meant="1")
    answered_by(alice, 1)
    draw_and_send(bob, hall.url, LOOP, read="0", meant="6")
    answered_by(bob, 2)
    expect(tiles).to_have_count(before + 2, timeout=15_000)
    expect(tiles.nth(0)).to_contain_text("6 → 0")  # newest first: bob's, then alice's
    expect(tiles.nth(1)).to_contain_text("1 → 1")
    alice_is = identity(alice)
    alice_tile = tiles.nth(1).get_attribute("data-drawing-id")

    # replica 1 dies as in a crash
    pid = hall.replica_pid(1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    alice.reload()
    answered_by(alice, 2)  # the proxy passed her on, and now routes her there
    assert any(c["name"] == "dl_replica" and c["value"] == "r2" for c in alice.context.cookies()), (
        alice.context.cookies()
    )
    assert identity(alice) == alice_is, "the student lost their identity"
    alice.goto(f"{hall.url}/class")
    answered_by(alice, 2)
    wall = alice.locator("figure.digit-lab-tile")
    expect(wall).to_have_count(before + 2, timeout=60_000)
    expect(alice.locator(f'figure.digit-lab-tile[data-drawing-id="{alice_tile}"]')).to_have_count(1)
    # and she carries on: another drawing reaches the wall
    draw_and_send(alice, hall.url, SEVEN, read="7", meant="7")
    expect(tiles).to_have_count(before + 3, timeout=15_000)
    assert identity(alice) == alice_is
