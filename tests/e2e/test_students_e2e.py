"""A student's identity in real Chromium: the signed cookie survives a reload, so the
class-send limit is not reset by one, and a student who reloaded can still take back
their own last drawing (and only theirs)."""

from __future__ import annotations

import numpy as np
from playwright.sync_api import expect

from mnist_demo.class_set import SENDS_PER_MINUTE, ClassSet
from mnist_demo.store import Store
from mnist_demo.students import COOKIE
from tests.e2e.drawing import LOOP, VERTICAL, prediction_is, stroke


def student_tag(page) -> str:
    """The tag in the browser's signed student cookie (written with the first page)."""
    for _ in range(150):
        found = [c["value"] for c in page.context.cookies() if c["name"] == COOKIE]
        if found:
            return found[0].split(".")[0]
        page.wait_for_timeout(100)
    raise AssertionError("the browser kept no student cookie")


def draw(page, points, read: str) -> None:
    expect(page.locator("canvas.upper-canvas")).to_be_visible(timeout=90_000)
    stroke(page, points)
    prediction_is(page, read)


def send(page, meant: str) -> None:
    pills = page.get_by_test_id("stButtonGroup").filter(has_text="digit you meant")
    choice = pills.get_by_role("radio", name=meant, exact=True)
    if choice.get_attribute("aria-checked") != "true":
        choice.click()
    page.get_by_role("button", name="Send to the class").click()


def other_drawing(seed: int) -> np.ndarray:
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 10:18] = np.random.default_rng(seed).integers(1, 255, (16, 8), dtype=np.uint8)
    return image


def class_set_of(server) -> ClassSet:
    """The server's class set, opened from this process as a second server would."""
    return ClassSet(Store(server.home / "runs.sqlite"))


def test_a_student_who_reloads_after_twelve_sends_is_still_refused(app_server, new_page):
    page = new_page(1400, 1300)
    page.goto(f"{app_server.url}/draw")
    draw(page, VERTICAL, "1")
    send(page, "1")
    expect(page.get_by_text("Sent: you meant 1")).to_be_visible()
    tag = student_tag(page)
    store = class_set_of(app_server)
    for i in range(SENDS_PER_MINUTE - 1):  # the rest of this student's minute, sent
        store.add(other_drawing(i), i % 10, session=tag)
    assert store.count() == SENDS_PER_MINUTE

    page.reload()  # a new Streamlit session: once, this reset the budget
    draw(page, LOOP, "0")
    assert student_tag(page) == tag, "the reload kept the student's identity"
    send(page, "0")
    expect(page.get_by_text("Too many drawings sent: at most 12 per minute")).to_be_visible()
    assert store.count() == SENDS_PER_MINUTE

    other = new_page(1400, 1300)  # another student is not held up
    other.goto(f"{app_server.url}/draw")
    draw(other, LOOP, "0")
    send(other, "0")
    expect(other.get_by_text("Sent: you meant 0")).to_be_visible()
    assert student_tag(other) != tag


def test_after_a_reload_a_student_takes_back_their_own_last_drawing(app_server, new_page):
    page = new_page(1400, 1300)
    page.goto(f"{app_server.url}/draw")
    draw(page, VERTICAL, "1")
    send(page, "1")
    expect(page.get_by_text("Sent: you meant 1")).to_be_visible()
    tag = student_tag(page)
    store = class_set_of(app_server)
    theirs = store.add(other_drawing(1), 4, session="0123456789abcdef")  # someone else's, newer

    page.reload()
    draw(page, LOOP, "0")  # the Take back button is under an answer
    page.get_by_role("button", name="Take back").click()
    expect(page.get_by_text("Your last drawing is out of the class set")).to_be_visible()
    left = store.newest()
    assert [d.id for d in left] == [theirs.id], "the student's own drawing went, only it"
    assert all(d.session != tag for d in left)
    page.get_by_role("button", name="Take back").click()
    expect(page.get_by_text("no drawing in the class set to take back")).to_be_visible()
