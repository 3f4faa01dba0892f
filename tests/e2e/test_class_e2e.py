"""The class's own digits in real Chromium: two students draw with the mouse and send,
the instructor's wall shows both within about a second, right and wrong marked, and the
instructor deletes one."""

import time

from playwright.sync_api import expect

from tests.e2e.drawing import LOOP, VERTICAL, prediction_is, stroke
from tests.e2e.test_train_e2e import open_as_instructor

WALL_DEADLINE_S = 2.0  # the promise: on the wall within 2 s of a send


def draw_and_send(page, base_url: str, points, read: str, meant: str) -> float:
    """Draw, check the answer, pick the digit meant, send; the moment the send returned."""
    page.goto(f"{base_url}/draw")
    expect(page.locator("canvas.upper-canvas")).to_be_visible(timeout=90_000)
    stroke(page, points)
    prediction_is(page, read)
    pills = page.get_by_test_id("stButtonGroup").filter(has_text="digit you meant")
    if meant != read:
        pills.get_by_role("radio", name=meant, exact=True).click()
    page.get_by_role("button", name="Send to the class").click()
    expect(page.get_by_text(f"Sent: you meant {meant}")).to_be_visible()
    return time.monotonic()


def test_two_students_send_and_the_instructor_sees_both_and_deletes_one(app_server, new_page):
    teacher = new_page(1400, 1300)
    open_as_instructor(teacher, app_server)
    teacher.goto(f"{app_server.url}/class")
    expect(teacher.get_by_text("No drawings yet")).to_be_visible(timeout=90_000)
    tiles = teacher.locator("figure.digit-lab-tile")

    alice, bob = new_page(1400, 1300), new_page(1400, 1300)
    draw_and_send(alice, app_server.url, VERTICAL, read="1", meant="1")
    expect(tiles).to_have_count(1, timeout=10_000)  # the wall's first drawing redraws more
    sent = draw_and_send(bob, app_server.url, LOOP, read="0", meant="6")  # read wrong
    expect(tiles).to_have_count(2, timeout=10_000)
    seen_after = time.monotonic() - sent
    assert seen_after <= WALL_DEADLINE_S + 0.5, f"on the wall {seen_after:.1f} s after the send"

    assert tiles.nth(0).get_attribute("data-correct") == "false"  # newest first: bob's
    expect(tiles.nth(0)).to_contain_text("6 → 0")
    assert tiles.nth(1).get_attribute("data-correct") == "true"
    expect(tiles.nth(1)).to_contain_text("1 → 1")
    expect(teacher.get_by_text("this class at 50.0%")).to_be_visible()

    wrong_id = tiles.nth(0).get_attribute("data-drawing-id")
    box = teacher.get_by_label("Drawing # (under each tile)")
    box.fill(wrong_id)
    box.press("Enter")
    teacher.get_by_role("button", name="Delete", exact=True).click()
    expect(tiles).to_have_count(1, timeout=10_000)
    expect(tiles.first).to_contain_text("1 → 1")

    # a student's Class page has no such tools, only the reason
    alice.goto(f"{app_server.url}/class")
    expect(alice.get_by_text("Only the instructor can hide, delete or archive")).to_be_visible(
        timeout=60_000
    )
    expect(alice.get_by_role("button", name="Delete", exact=True)).to_have_count(0)
