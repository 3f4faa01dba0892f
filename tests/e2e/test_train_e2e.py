"""A whole class watching one run, trained by the engine (a real local Ray), never by a
web server: the instructor (opened with the instructor link) starts it, a student's
browser watches it live but cannot stop it, the instructor stops it; two servers on one
store show the same live run; a web server killed mid-run and started again shows the run
still training with every point it missed. (A class watching a Quick demo to its end:
test_projector_e2e.py.)"""

import contextlib
import io
import os
import re
import signal

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from mnist_demo import queue
from mnist_demo.runs import RunRegistry
from tools.app_server import AppServer, Engine

PROGRESS = re.compile(r"Epoch (\d+)/(\d+) · batch (\d+)/(\d+)")
RUNNING = re.compile(r"Run (\d+) · lab7 · running")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("train-e2e") / "home"


@pytest.fixture(scope="module")
def engine(home):
    """One engine for the module's servers (they share its store)."""
    running = Engine(home).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server(home, engine):
    app = AppServer(home).start()
    yield app
    app.stop()


@pytest.fixture
def registry(home, engine):
    return RunRegistry(home / "runs.sqlite")


@pytest.fixture(autouse=True)
def no_run_left(registry):
    """Each test starts with nothing queued or running (a previous test's run is stopped)."""
    yield
    from mnist_demo.classroom import OWNER

    for run in queue.waiting(registry) + registry.running():
        registry.request_stop(run.id, role=OWNER)


def open_as_instructor(page, server: AppServer) -> None:
    """The instructor link unlocks the session; the code then leaves the address bar."""
    page.goto(server.instructor_url)
    expect(page.get_by_test_id("stSidebar").get_by_text("Instructor")).to_be_visible(timeout=60_000)
    assert "code=" not in page.url, page.url
    for _ in range(100):  # the browser keeps a token (not the code): reloads stay unlocked
        if any(c["name"] == "digit_lab_instructor" for c in page.context.cookies()):
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError("the instructor's browser kept no token")


def start_small_run(page, base_url: str, epochs: int | None = None) -> int:
    """A run on 5,000 images from the Train page's form (the lab's 12 epochs, or
    `epochs`); returns its id once it trains."""
    page.goto(f"{base_url}/train")
    expect(page.get_by_role("heading", name="Train the CNN")).to_be_visible(timeout=60_000)
    unfold_start_controls(page)
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(3):  # 60,000 -> 30,000 -> 10,000 -> 5,000 images
        slider.press("ArrowLeft")
    expect(page.get_by_text("5,000", exact=True)).to_be_visible()
    if epochs is not None:
        page.get_by_label("Epochs", exact=True).fill(str(epochs))
        page.get_by_label("Epochs", exact=True).press("Tab")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(RUNNING)).to_be_visible(timeout=60_000)
    return int(RUNNING.search(page.get_by_text(RUNNING).inner_text()).group(1))


def unfold_start_controls(page) -> None:
    """The settings and Quick demo fold under the run while a run is on the first screen
    (training, or ended within minutes: a previous test's): unfold them."""
    quick, fold = (
        page.get_by_role("button", name="Quick demo"),
        page.get_by_text("Start another run"),
    )
    for _ in range(600):  # until the page has drawn one or the other
        if quick.is_visible() or fold.is_visible():
            break
        page.wait_for_timeout(100)
    if not quick.is_visible():
        fold.click()
    expect(quick).to_be_visible()


def shows(page, text, server: AppServer, timeout_s: float = 180) -> None:
    """`text` appears on a page of `server` (a cold server on a loaded 2-core machine
    takes a while to import TensorFlow); on failure, the server's log says why."""
    try:
        expect(page.get_by_text(text)).to_be_visible(timeout=timeout_s * 1000)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- server log ---\n{server.log_tail()}") from None


def progress_position(page) -> tuple[int, int]:
    text = page.get_by_text(PROGRESS).first.inner_text()
    epoch, _, batch, per_epoch = map(int, PROGRESS.search(text).groups())
    return epoch, (epoch - 1) * per_epoch + batch


def moves(page, timeout_s: float = 60) -> bool:
    """The live progress advances."""
    expect(page.get_by_text(PROGRESS).first).to_be_visible(timeout=60_000)
    _, first = progress_position(page)
    for _ in range(int(timeout_s * 2)):
        page.wait_for_timeout(500)
        with contextlib.suppress(Exception):  # the fragment may redraw while read
            if progress_position(page)[1] > first:
                return True
    return False


def test_the_instructor_starts_a_student_watches_but_cannot_stop_the_instructor_stops(
    server, registry, new_page
):
    teacher = new_page()
    open_as_instructor(teacher, server)
    run_id = start_small_run(teacher, server.url)
    assert moves(teacher), "the live progress did not move"
    expect(teacher.get_by_text("Every batch")).to_be_visible()  # the live batch chart
    assert registry.get(run_id).pid != server.pid  # trained by a worker, not the server

    student = new_page()
    student.goto(f"{server.url}/train")
    expect(student.get_by_text(f"Run {run_id} · lab7 · running")).to_be_visible(timeout=60_000)
    expect(student.get_by_text(PROGRESS).first).to_be_visible()
    unfold_start_controls(student)  # folded under the run while it trains
    expect(student.get_by_role("button", name="Start training")).to_be_disabled()
    expect(student.get_by_role("button", name="Stop")).to_be_disabled()
    expect(student.get_by_text("Only the instructor can stop the run.")).to_be_visible()
    # (a forged click on it is refused by Streamlit and by the core: test_roles_app.py)

    teacher.get_by_role("button", name="Stop").click()
    for page in (student, teacher):
        expect(page.get_by_text(f"Run {run_id} · lab7 · stopped")).to_be_visible(timeout=60_000)
    teacher.reload()  # a reload keeps the role: it is this browser session's
    history = teacher.get_by_test_id("stDataFrame").last
    expect(history).to_be_visible(timeout=30_000)
    expect(history).to_contain_text("stopped", timeout=30_000)


def test_the_join_view_shows_a_qr_code_of_the_address_it_prints(server, new_page):
    zxingcpp = pytest.importorskip("zxingcpp")
    page = new_page()
    page.goto(f"{server.url}/join")
    expect(page.get_by_role("heading", name="Join the class")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Students connected")).to_be_visible()
    shown = page.get_by_text(re.compile(r"^http://\S+:\d+/$")).inner_text().strip()
    assert shown == f"http://localhost:{server.port}/"  # this test server: loopback only
    expect(page.get_by_text("it only answers on this computer")).to_be_visible()
    picture = page.get_by_test_id("stImage").locator("img").first
    decoded = zxingcpp.read_barcodes(np.asarray(Image.open(io.BytesIO(picture.screenshot()))))
    assert [d.text for d in decoded] == [shown]
    assert "code=" not in page.content(), "the instructor code is never in a page"


def test_two_servers_show_one_live_run_and_a_killed_server_misses_nothing(
    home, engine, server, registry, new_page
):
    """Two Streamlit servers on one store both follow the run live; the second is killed
    (SIGKILL) mid-run and started again: the run trained on meanwhile, and the restarted
    server shows it live, from every point in the store (none missing)."""
    from mnist_demo.classroom import OWNER

    teacher = new_page()
    open_as_instructor(teacher, server)
    run_id = start_small_run(teacher, server.url)  # the lab's 12 epochs: long enough
    second = AppServer(home).start()
    try:
        watcher = new_page()
        watcher.goto(f"{second.url}/train")
        shows(watcher, f"Run {run_id} · lab7 · running", second)
        assert moves(watcher), "the second server's view did not move"
    finally:
        second.kill()
    points_before = len(registry.points(run_id))
    restarted = AppServer(home).start()
    try:
        watcher = new_page()
        watcher.goto(f"{restarted.url}/train")
        shows(watcher, f"Run {run_id} · lab7 · running", restarted)
        assert moves(watcher), "the restarted server's view did not move"
        assert len(registry.points(run_id)) > points_before  # it trained on meanwhile
        registry.request_stop(run_id, role=OWNER)
        shows(watcher, f"Run {run_id} · lab7 · stopped", restarted)
    finally:
        restarted.stop()
    seqs = [s for s, _, _, _ in registry.points(run_id)]
    assert seqs == list(range(len(seqs)))  # every batch's point, none lost or doubled
    positions = [p for _, p, _, _ in registry.points(run_id)]
    assert positions == sorted(positions)


def test_a_killed_worker_s_run_is_resumed_by_the_engine_and_the_page_shows_it_finish(
    server, registry, new_page
):
    teacher = new_page()
    open_as_instructor(teacher, server)
    run_id = start_small_run(teacher, server.url, epochs=3)
    expect(teacher.get_by_text("Test accuracy after epoch")).to_be_visible(timeout=120_000)
    worker = registry.get(run_id).pid
    os.kill(worker, signal.SIGKILL)  # the worker dies as in a crash; Ray restarts it
    # the engine marks it interrupted and puts it back in the queue by itself: the page
    # follows it to the end, from its last finished epoch, with nothing to click
    expect(teacher.get_by_text(f"Run {run_id} · lab7 · finished")).to_be_visible(timeout=240_000)
    run = registry.get(run_id)
    assert run.auto_resumes == 1 and run.resume
    assert run.epochs_done == 3 and all(len(v) == 3 for v in run.history.values())
    assert not registry.resume_path(run_id).exists()
