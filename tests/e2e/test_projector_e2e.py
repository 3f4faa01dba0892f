"""The room sees the run: on a 1280x720 projector, a Quick demo click puts the live chart
on the first screen within seconds and it keeps moving; the progress line never shows a
time estimate before the run has measured its pace, never "batch 0/0", and names the
scoring on the test images; the class's browsers all see it end; a second click asks
before it queues another run."""

import re
import time

import pytest
from playwright.sync_api import expect

from mnist_demo import live, queue
from mnist_demo.classroom import OWNER
from mnist_demo.runs import RunRegistry
from tools.accessibility import wait_for_page
from tools.app_server import AppServer, Engine

PROJECTOR = {"width": 1280, "height": 720}
POSITION = re.compile(r"Epoch (\d+)/(\d+) · batch (\d+)/(\d+)")
WATCHERS = 8  # the class's browsers beside the projector (the server's capacity for a
# class is measured by benchmarks/classroom_train.py)
CHART_IN_VIEW_S = 60  # click -> the live chart on screen (seconds on a warm quiet engine; a
# shared machine in a full suite has taken longer: this checks where it shows, not speed)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("projector-e2e") / "home"


@pytest.fixture(scope="module")
def server(home):
    engine = Engine(home).start()
    app = AppServer(home).start()
    yield app
    app.stop()
    engine.stop()


@pytest.fixture
def registry(home, server):
    reg = RunRegistry(home / "runs.sqlite")
    yield reg
    for run in queue.waiting(reg) + reg.running():  # leave nothing training
        reg.request_stop(run.id, role=OWNER)


@pytest.fixture
def projector(browser, server):
    context = browser.new_context(viewport=PROJECTOR)
    context.set_default_timeout(60_000)
    page = context.new_page()
    wait_for_page(page, server.instructor_url, "Home")
    wait_for_page(page, f"{server.url}/train", "Train")
    yield page
    context.close()


def progress_text(page) -> str | None:
    """The progress bar's line, or None while there is none (or it is being redrawn)."""
    try:
        bar = page.get_by_test_id("stProgress")
        return bar.first.inner_text(timeout=200) if bar.count() else None
    except Exception:  # replaced by a rerun while read
        return None


def batches_done(text: str) -> int | None:
    found = POSITION.search(text)
    if not found:
        return None
    epoch, _, batch, per_epoch = map(int, found.groups())
    return (epoch - 1) * per_epoch + batch


def open_start_controls(page) -> None:
    """Unfold "Start another run" (folded under the run while it is on the first screen)."""
    quick, fold = (
        page.get_by_role("button", name="Quick demo"),
        page.get_by_text("Start another run"),
    )
    expect(fold).to_be_visible()  # the run is on the first screen: the controls are folded
    if not quick.is_visible():
        fold.click()
    expect(quick).to_be_visible()


def in_first_screen(box: dict | None) -> bool:
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= PROJECTOR["height"]


def test_a_quick_demo_takes_the_first_screen_honestly_and_a_second_click_asks(
    projector, registry, server, new_page
):
    """...while WATCHERS more browsers (the class) follow the same run: every one shows
    it finished, with its result, within seconds of the end (a class once saw 'running'
    minutes after it)."""
    page = projector
    watchers = []
    for _ in range(WATCHERS):
        watcher = new_page(1000, 800)
        watcher.goto(f"{server.url}/train")
        watchers.append(watcher)
    for watcher in watchers:
        expect(watcher.get_by_role("heading", name="Train the CNN")).to_be_visible(timeout=90_000)
    time.sleep(5)  # the engine keeps a Quick demo warm once idle (training.Spare)
    page.get_by_role("button", name="Quick demo").click()
    clicked = time.monotonic()

    # the batch chart, on the first screen without scrolling, within seconds
    chart = page.get_by_test_id("stVegaLiteChart").first
    expect(chart).to_be_visible(timeout=CHART_IN_VIEW_S * 1000)
    page.wait_for_timeout(500)  # laid out
    assert page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollTop") == 0
    assert in_first_screen(chart.bounding_box()), chart.bounding_box()
    in_view_s = time.monotonic() - clicked
    assert in_view_s < CHART_IN_VIEW_S
    # the settings form folded away below the run
    expect(page.get_by_role("button", name="Start training")).to_be_hidden()
    first = chart.screenshot()

    # follow the run to its end: every progress line true when shown
    texts: list[str] = []
    later = None  # the chart a few seconds on, while the run still trains
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        text = progress_text(page)
        if text and (not texts or texts[-1] != text):
            texts.append(text)
        if (
            later is None
            and time.monotonic() - clicked > in_view_s + 3
            and POSITION.search(text or "")
        ):
            later = chart.screenshot()
        if registry.list_runs()[0].ended and text is None:
            break
        page.wait_for_timeout(100)
    run = registry.list_runs()[0]
    assert run.status == "finished", (run.status, run.error, texts[-5:])
    assert not any("0/0" in t for t in texts), texts
    for t in texts:  # an estimate only once the run's own batches measured the pace
        if "left" in t:
            assert (batches_done(t) or 0) > live.PACE_MIN_BATCHES, t
    # before that, it says it is measuring (a busy page may first look later than that)
    early = [t for t in texts if POSITION.search(t) and batches_done(t) <= live.PACE_MIN_BATCHES]
    assert all("measuring the pace" in t for t in early), early
    assert any(t.startswith("Scoring the model on the 10,000 test images") for t in texts), [
        t for t in texts if not POSITION.search(t)
    ]
    # the chart kept moving while the run trained
    positions = {batches_done(t) for t in texts if POSITION.search(t)}
    assert len(positions) >= 20, f"the projector's view moved only {len(positions)} times"
    assert later is not None and later != first, "the live chart did not move"
    finished = re.compile(rf"Run {run.id} · quick · finished")
    for watcher in watchers:  # within seconds of the projector, not minutes
        expect(watcher.get_by_text(finished)).to_be_visible(timeout=15_000)
        expect(
            watcher.get_by_test_id("stMetric").filter(has_text="Test accuracy").first
        ).to_be_visible()
    for watcher in watchers:
        watcher.context.close()  # the rest of the test is the projector's alone

    # the result stays on the first screen, once: one block of final figures
    result = page.get_by_test_id("stMetric").filter(has_text="Test accuracy")
    expect(result).to_have_count(1)
    assert in_first_screen(result.bounding_box()), result.bounding_box()
    assert run.test_accuracy > 0.97, run.test_accuracy  # the demo teaches what it should

    # a second Quick demo while one trains asks first, showing the queue
    open_start_controls(page)
    page.get_by_role("button", name="Quick demo").click()  # starts run 2 (engine free)
    expect(page.get_by_text(re.compile(r"Run \d+ · quick · (running|queued)"))).to_be_visible()
    open_start_controls(page)
    page.get_by_role("button", name="Quick demo").click()
    confirm = page.locator(".st-key-confirm-queue")
    expect(confirm).to_contain_text("Queue it?")
    assert len(registry.list_runs()) == 2  # nothing queued without an answer
    confirm.get_by_role("button", name="Queue it").click()
    expect(confirm).to_be_hidden()
    queued = registry.list_runs()[0]
    assert len(registry.list_runs()) == 3 and queued.status == "queued"
    waiting = re.compile(rf"Waiting: .*#\d run {queued.id} \(quick\)")
    expect(page.get_by_text(waiting).first).to_be_visible()
