"""The browsing and drawing pages in real Chromium, one server for the module: Home's
shapes as text, a click into the confusion matrix, and digits drawn with the mouse on
the real canvas component."""

import io
import time

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.drawing import LOOP, SEVEN, VERTICAL, line, prediction_is, stroke


@pytest.fixture
def page(server, new_page):
    p = new_page(1400, 1300)
    p.base_url = server.url
    return p


def test_home_shapes_are_text_in_the_page(page):
    """Home's small tables are HTML text (st.table): selectable, copyable, found by
    Ctrl+F and read by screen readers, which st.dataframe's canvas grid is not."""
    page.goto(page.base_url)
    expect(page.get_by_text("2 · Shape the data for the network")).to_be_visible(timeout=90_000)
    # innerText, what a reader sees and copies: a dataframe's grid keeps the cell in a
    # hidden table, in textContent but not innerText (so plain to_contain_text passes)
    expect(page.locator("body")).to_contain_text("(60000, 28, 28, 1)", use_inner_text=True)


def test_a_confusion_cell_filters_the_gallery_to_that_pair(page):
    page.goto(f"{page.base_url}/misclassified")
    expect(page.get_by_text("68 of 10,000 test images misclassified")).to_be_visible(timeout=90_000)
    matrix, gallery = page.get_by_test_id("stVegaLiteChart").nth(0), None
    cells = matrix.locator("g.mark-rect path")
    expect(cells).to_have_count(100)
    cells.nth(4 * 10 + 9).click()  # row true=4, column predicted=9
    expect(page.get_by_text("6 mistakes with true digit 4 predicted as 9")).to_be_visible()
    gallery = page.get_by_test_id("stVegaLiteChart").nth(1)
    expect(gallery.locator("g.mark-rect path")).to_have_count(6)
    captions = gallery.locator("g.mark-text text").all_text_contents()
    assert len(captions) == 6 and all(c.startswith("4 → 9 · ") for c in captions), captions
    gallery.locator("g.mark-rect path").first.click()
    prediction = page.get_by_test_id("stMetric").filter(has_text="Prediction")
    expect(prediction).to_contain_text("9")
    expect(prediction).to_contain_text("wrong: the label is 4")


def test_digits_drawn_with_the_mouse_are_read(page):
    page.goto(f"{page.base_url}/draw")
    expect(page.locator("canvas.upper-canvas")).to_be_visible(timeout=90_000)
    expect(page.get_by_text("Draw a digit on the black square")).to_be_visible()
    first = True
    for points, digit in ((VERTICAL, "1"), (LOOP, "0"), (SEVEN, "7")):
        stroke(page, points)
        prediction_is(page, digit)
        expect(page.get_by_text("What the model saw")).to_be_visible()
        if first:  # feature maps and saliency are on request; they then stay on
            page.get_by_text("Show what the network sees").click()
            first = False
        expect(page.get_by_text("Why " + digit)).to_be_visible()  # saliency follows along
        page.get_by_role("button", name="Clear").click()
        expect(page.get_by_text("Draw a digit on the black square")).to_be_visible()


def drawing_state(page) -> tuple[str, list[str], str, tuple | None]:
    """What the Draw page shows for the drawing now: the answer, every digit's printed
    probability, the canvas's ink (PNG of its drawing layer) and the 28x28 picture the
    model saw (decoded pixels, fetched from the server)."""
    metric = page.get_by_test_id("stMetric").filter(has_text="Prediction")
    answer = metric.get_by_test_id("stMetricValue").inner_text()
    bars = page.locator("[data-digit]").all_inner_texts()
    ink = page.locator("canvas.dc-canvas.lower-canvas").evaluate("c => c.toDataURL('image/png')")
    seen = page.get_by_test_id("stImage").filter(has_text="What the model saw").locator("img")
    png = page.request.get(seen.get_attribute("src"))
    if not png.ok:  # replaced by a rerun since the src was read: not settled yet
        return answer, bars, ink, None
    pixels = np.asarray(Image.open(io.BytesIO(png.body())).convert("L"))
    return answer, bars, ink, (pixels.shape, pixels.tobytes())


def settled_state(page, until, timeout_s: float = 30.0):
    """The page's drawing state once `until(state)` holds and two reads 0.3 s apart
    agree (the answer, bars and picture of one rerun arrive as separate deltas)."""
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        before = drawing_state(page)
        page.wait_for_timeout(300)
        state = drawing_state(page)
        if state == before and state[3] is not None and until(state):
            return state
    return state


def test_undo_takes_back_the_last_stroke(page):
    page.goto(f"{page.base_url}/draw")
    expect(page.locator("canvas.upper-canvas")).to_be_visible(timeout=90_000)
    stroke(page, line((205, 60), (120, 235)))  # the 7's stem alone: a slanted 1
    prediction_is(page, "1")
    one = settled_state(page, lambda s: s[0] == "1")
    assert one[0] == "1" and one[1][1].endswith("%")

    stroke(page, line((75, 60), (205, 60)))  # its top bar: now a 7
    prediction_is(page, "7")
    seven = settled_state(page, lambda s: s[0] == "7" and s[2:] != one[2:])
    assert seven[0] == "7" and seven[1] != one[1]
    assert seven[2] != one[2] and seven[3] != one[3]  # more ink, and the model saw it

    page.get_by_role("button", name="Undo").click()
    undone = settled_state(page, lambda s: s == one)
    # the bar is gone: the same ink, the same 28x28 picture, the same answer as before it
    assert undone[0] == one[0]
    assert undone[1] == one[1]
    assert undone[2] == one[2], "the canvas still shows the undone stroke"
    assert undone[3] == one[3], "the model still sees the undone stroke"
