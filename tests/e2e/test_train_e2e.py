"""A whole class watching one run: the instructor (opened with the instructor link)
starts it, a student's browser watches it live but cannot stop it, the instructor stops
it; and a server crash leaves the run interrupted but usable."""

import contextlib
import io
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tools.app_server import AppServer

PROGRESS = re.compile(r"Epoch (\d+)/(\d+) · batch (\d+)/(\d+)")


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


def start_small_run(page, base_url: str, epochs: int | None = None) -> None:
    """A run on 5,000 images from the Train page's form (the lab's 12 epochs, or `epochs`)."""
    page.goto(f"{base_url}/train")
    expect(page.get_by_role("heading", name="Train the CNN")).to_be_visible(timeout=60_000)
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(3):  # 60,000 -> 30,000 -> 10,000 -> 5,000 images
        slider.press("ArrowLeft")
    expect(page.get_by_text("5,000", exact=True)).to_be_visible()
    if epochs is not None:
        page.get_by_label("Epochs", exact=True).fill(str(epochs))
        page.get_by_label("Epochs", exact=True).press("Tab")
    page.get_by_role("button", name="Start training").click()
    if epochs is not None:
        expect(page.get_by_text(f"Epoch 1/{epochs}")).to_be_visible(timeout=60_000)


def progress_position(page) -> tuple[int, int]:
    text = page.get_by_text(PROGRESS).first.inner_text()
    epoch, _, batch, per_epoch = map(int, PROGRESS.search(text).groups())
    return epoch, (epoch - 1) * per_epoch + batch


def test_the_instructor_starts_a_student_watches_but_cannot_stop_the_instructor_stops(
    app_server, new_page
):
    teacher = new_page()
    open_as_instructor(teacher, app_server)
    start_small_run(teacher, app_server.url)
    expect(teacher.get_by_text(PROGRESS).first).to_be_visible(timeout=60_000)
    _, first = progress_position(teacher)
    for _ in range(120):  # the page polls once a second; a loaded CI machine is slower
        teacher.wait_for_timeout(500)
        _, later = progress_position(teacher)
        if later > first:
            break
    assert later > first, "the live progress did not move"
    expect(teacher.get_by_text("Every batch")).to_be_visible()  # the live batch chart

    student = new_page()
    student.goto(f"{app_server.url}/train")
    expect(student.get_by_text("Run 1 · lab7 · running")).to_be_visible(timeout=60_000)
    expect(student.get_by_text(PROGRESS).first).to_be_visible()
    expect(student.get_by_role("button", name="Start training")).to_be_disabled()
    expect(student.get_by_role("button", name="Stop")).to_be_disabled()
    expect(student.get_by_text("Only the instructor can stop the run.")).to_be_visible()
    # (a forged click on it is refused by Streamlit and by the core: test_roles_app.py)
    expect(teacher.get_by_text("Run 1 · lab7 · running")).to_be_visible()

    teacher.get_by_role("button", name="Stop").click()
    for page in (student, teacher):
        expect(page.get_by_text("Run 1 · lab7 · stopped")).to_be_visible(timeout=30_000)
    teacher.reload()  # a reload keeps the role: it is this browser session's
    history = teacher.get_by_test_id("stDataFrame").last
    expect(history).to_be_visible(timeout=30_000)
    expect(teacher.get_by_text("Run history")).to_be_visible()
    # the grid is a canvas: read the status through the page's accessible text
    expect(history).to_contain_text("stopped", timeout=30_000)


def test_the_join_view_shows_a_qr_code_of_the_address_it_prints(app_server, new_page):
    zxingcpp = pytest.importorskip("zxingcpp")
    page = new_page()
    page.goto(f"{app_server.url}/join")
    expect(page.get_by_role("heading", name="Join the class")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Students connected")).to_be_visible()
    shown = page.get_by_text(re.compile(r"^http://\S+:\d+/$")).inner_text().strip()
    assert shown == f"http://localhost:{app_server.port}/"  # this test server: loopback only
    expect(page.get_by_text("only listens on this computer")).to_be_visible()
    picture = page.get_by_test_id("stImage").locator("img").first
    decoded = zxingcpp.read_barcodes(np.asarray(Image.open(io.BytesIO(picture.screenshot()))))
    assert [d.text for d in decoded] == [shown]
    assert "code=" not in page.content(), "the instructor code is never in a page"


def test_a_run_survives_browsers_closing_and_a_server_crash_leaves_it_interrupted(
    app_home, new_page
):
    server = AppServer(app_home).start()
    try:
        page = new_page()
        open_as_instructor(page, server)
        start_small_run(page, server.url)
        expect(page.get_by_text(PROGRESS).first).to_be_visible(timeout=60_000)
        page.context.close()  # every browser gone: the run carries on in the server
        page = new_page()
        page.goto(f"{server.url}/train")
        expect(page.get_by_text("Test accuracy (last epoch)")).to_be_visible(timeout=60_000)
        epoch, _ = progress_position(page)
        assert epoch >= 2
    finally:
        server.kill()
    restarted = AppServer(app_home).start()
    try:
        page = new_page()
        page.goto(f"{restarted.url}/train")
        expect(page.get_by_text("Latest run: 1 · interrupted")).to_be_visible(timeout=60_000)
        expect(
            page.get_by_text(re.compile(r"interrupted \(the server stopped\) after [1-9]"))
        ).to_be_visible()
        # its last finished epoch's model is offered in the sidebar
        page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
        expect(
            page.get_by_role("option", name=re.compile(r"Run 1 · lab7 \(interrupted\)"))
        ).to_be_visible()
    finally:
        restarted.stop()


def test_a_run_is_made_active_only_once_it_has_ended_and_new_sessions_work(app_server, new_page):
    """Making a run active after its first epoch, while it still trained, once broke
    every new Draw session with a KeyError until the run ended."""
    from tests.e2e.drawing import VERTICAL, prediction_is, stroke

    teacher = new_page()
    open_as_instructor(teacher, app_server)
    start_small_run(teacher, app_server.url)
    expect(teacher.get_by_text("Test accuracy (last epoch)")).to_be_visible(timeout=90_000)
    expect(teacher.get_by_role("button", name="Make this the active model")).to_have_count(0)
    student = new_page()
    student.goto(f"{app_server.url}/draw")
    expect(student.locator("canvas.upper-canvas")).to_be_visible(timeout=60_000)
    stroke(student, VERTICAL)
    prediction_is(student, "1")

    teacher.get_by_role("button", name="Stop").click()
    expect(teacher.get_by_text("Run 1 · lab7 · stopped")).to_be_visible(timeout=60_000)
    teacher.get_by_role("button", name="Make this the active model").click()
    expect(teacher.get_by_role("button", name="Active model")).to_be_visible()
    fresh = new_page()
    fresh.goto(f"{app_server.url}/test_set")
    expect(fresh.get_by_text(re.compile(r"Model: \*?\*?Run 1 · lab7"))).to_be_visible(
        timeout=60_000
    )
    expect(fresh.get_by_text(re.compile(r"of 10,000 test images match"))).to_be_visible()


def test_the_quick_demo_chart_moves_smoothly_and_ends_with_its_result(app_server, new_page):
    """One click trains the quick preset on all 60,000 images; every browser's chart
    redraws several times a second (the page polls 5 times a second for a run this
    short), so the room sees it move rather than jump, and the result follows at once."""
    teacher = new_page()
    open_as_instructor(teacher, app_server)
    teacher.goto(f"{app_server.url}/train")
    teacher.get_by_role("button", name="Quick demo").click()
    expect(teacher.get_by_text(PROGRESS).first).to_be_visible(timeout=60_000)
    seen: set[int] = set()
    for _ in range(1200):  # 100 ms apart: up to 2 minutes on a loaded machine
        progress = teacher.get_by_text(PROGRESS)
        if progress.count():
            # the fragment may redraw between count() and reading it
            with contextlib.suppress(Exception):
                seen.add(progress_position(teacher)[1])
        elif teacher.get_by_text(re.compile(r"Run \d+ · quick · finished")).count():
            break
        teacher.wait_for_timeout(100)
    expect(teacher.get_by_text(re.compile(r"Run \d+ · quick · finished"))).to_be_visible()
    assert len(seen) >= 20, f"the live view redrew only {len(seen)} times: {sorted(seen)}"
    accuracy = teacher.get_by_test_id("stMetric").filter(has_text="Test accuracy").first
    expect(accuracy).to_be_visible()
    value = float(re.search(r"([\d.]+)%", accuracy.inner_text()).group(1))
    assert value > 97.0, accuracy.inner_text()
    expect(
        teacher.get_by_test_id("stMetric").filter(has_text="Misclassified").first
    ).to_be_visible()
