"""The supervisor's faults as a browser sees them (issue 30), in real Chromium:

- `python -m mnist_demo serve` (make run): the Train page follows a run; the web server
  is SIGKILLed mid-run; the supervisor starts it again (the engine untouched, the run
  never interrupted) and the same page, reconnected by itself, shows the run live again
  and then finished, every point in the store.
- A plain `streamlit run streamlit_app.py`: the Train page says the engine is not
  running (a page never starts one), and once the server stops nothing of it is left.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time

import pytest
from playwright.sync_api import expect

from mnist_demo.classroom import OWNER
from mnist_demo.recipe import TrainConfig
from mnist_demo.serve import hall as hall_module
from tests.conftest import wait_for
from tests.e2e.test_train_e2e import PROGRESS, progress_position
from tests.test_supervisor import (
    STOP_S,
    Serve,
    _new_home,
    _pids,
    health,
    kill_all,
    none_left,
    plain_streamlit,
    say_stopped_and_nothing_left,
    wait_running,
)
from tools.hall_process import processes_of

# long enough to be training still when the page is back (a restart takes 5-30 s here)
RUN = TrainConfig(epochs=10, batch_size=32, train_size=2000, test_size=300, seed=7)


def _position(page) -> int:
    with contextlib.suppress(Exception):  # the fragment may redraw while read
        return progress_position(page)[1]
    return 0


def positions_seen(page, timeout_s: float, enough: int | None = None) -> set[int]:
    """The progress positions the page shows within timeout_s (sooner once `enough`)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (enough is None or len(seen) < enough):
        with contextlib.suppress(Exception):  # the fragment may redraw while read
            seen.add(progress_position(page)[1])
        page.wait_for_timeout(100)
    return seen


def test_a_killed_web_server_comes_back_and_the_page_shows_the_run_live_again(new_page):
    home = _new_home("serve-e2e")
    serve = Serve(home, port=hall_module.pick_port(0, set()))
    try:
        serve.start()
        registry = serve.registry
        page = new_page()
        page.goto(f"{serve.url}/train")  # solo: this browser is the instructor
        expect(page.get_by_role("heading", name="Train the CNN")).to_be_visible(timeout=90_000)
        run = registry.submit(RUN, role=OWNER)
        wait_running(registry, run.id)
        expect(page.get_by_text(PROGRESS).first).to_be_visible(timeout=90_000)
        before = positions_seen(page, 2)
        web = _pids(home, b"streamlit", b"run")
        engine = _pids(home, b"mnist_demo engine")
        assert len(web) == 1 and len(engine) == 1
        os.kill(web[0], signal.SIGKILL)
        killed = time.monotonic()
        wait_for(
            lambda: (
                "web server ended (killed by SIGKILL): starting it again in 1 s" in serve.output
            ),
            30,
            "the supervisor to say it starts the web server again",
        )
        wait_for(lambda: health(f"{serve.url}/_stcore/health") == 200, 120, "the server", 0.2)
        again = _pids(home, b"streamlit", b"run")
        assert len(again) == 1 and again != web
        # the same page, not reloaded: Streamlit's client reconnects and reruns, and the
        # run (which went on meanwhile) is live on it again
        wait_for(lambda: _position(page) > max(before, default=0), 180, "the page live again", 0.2)
        back = time.monotonic() - killed
        # a freshly started server's first reruns can be slow beside other work (a full
        # suite saw 2 moves in 30 s): live means it keeps moving, given a minute to show it
        moving = positions_seen(page, 60, enough=3)
        assert len(moving) >= 3, f"after the restart the page moved only {len(moving)} times"
        finished = re.compile(rf"Run {run.id} · lab7 · finished")
        expect(page.get_by_text(finished)).to_be_visible(timeout=300_000)
        ended = registry.get(run.id)
        assert ended.status == "finished" and ended.error is None, (ended.status, ended.error)
        points = registry.points(run.id)
        assert [p[0] for p in points] == list(range(len(points)))  # every point, in order
        assert points[-1][1] == pytest.approx(RUN.epochs)  # up to the end of the last epoch
        assert ended.epochs_done == RUN.epochs and ended.auto_resumes == 0  # never interrupted
        assert _pids(home, b"mnist_demo engine") == engine  # the engine went on, untouched
        registry.store.dispose()
        say_stopped_and_nothing_left(serve)
        print(f"the page showed the run live again {back:.0f} s after the kill")
    finally:
        serve.stop(STOP_S)
        kill_all(home)
        shutil.rmtree(home, ignore_errors=True)


def test_a_plain_streamlit_run_says_the_engine_is_not_running_and_leaves_nothing(new_page):
    home = _new_home("plain-e2e")
    port = hall_module.pick_port(0, set())
    proc = plain_streamlit(home, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: health(f"{url}/_stcore/health") == 200, 120, "streamlit", 0.3)
        page = new_page()
        page.goto(f"{url}/train")
        expect(page.get_by_text("The training engine is not running")).to_be_visible(timeout=90_000)
        page.wait_for_timeout(3000)
        assert processes_of(home) == [proc.pid]  # no engine, no Ray: the server alone
        page.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert none_left(home, 10) == []
    shutil.rmtree(home, ignore_errors=True)
