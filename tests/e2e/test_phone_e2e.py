"""The Draw page on a phone (390x844, touch): the answer is in sight while drawing, and
"How the model sees your drawing" shows to_mnist's own steps. One server for the module.

On a phone Streamlit stacks the columns, so the answer's metric lands below the canvas,
out of sight while drawing; a one-line answer above the canvas is shown on narrow
screens only.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from mnist_demo.charts import upscale
from mnist_demo.preprocess import ink_map, squash_to_28, to_mnist
from tests.e2e.drawing import (
    BLANK_PROMPT,
    PHONE,
    PHONE_CONTEXT,
    SEVEN,
    line,
    mouse_strokes,
    open_draw,
    ready_canvas,
    touch_stroke,
)

PHONE_LINE = ".st-key-phone-answer"
# A small 7 in the canvas's top-left corner: squashed whole to 28x28 it stays a few
# pixels in a corner; through the steps it fills the 20x20 box in the middle.
SMALL_SEVEN = line((15, 15), (70, 15), 8) + line((70, 15), (35, 85), 10)[1:]
STEP_CAPTIONS = [
    "0. Your drawing",
    "1. The ink found",
    "2. Cropped to the ink",
    "3. MNIST's pen width",
    "4. Shrunk into 20×20",
    "5. Centred by mass in 28×28",
]
STRIP_SCALE = 3  # app_pages/draw.py STEP_SIDE (100 px) // 28: a 28x28 is shown 3x enlarged


@pytest.fixture(scope="module")
def phone(browser, server):
    context, page = open_draw(browser, server, **PHONE_CONTEXT)
    yield page
    context.close()


@pytest.fixture(scope="module")
def desktop(browser, server):
    context, page = open_draw(browser, server, viewport={"width": 1400, "height": 1000})
    yield page
    context.close()


def clear(page) -> None:
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.get_by_text(BLANK_PROMPT)).to_be_visible()


def in_viewport(box: dict, viewport: dict) -> bool:
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
        and box["y"] + box["height"] <= viewport["height"]
    )


def test_on_a_phone_the_answer_is_in_view_after_a_touch_stroke(phone):
    box = ready_canvas(phone)
    before = len(phone.sent)
    touch_stroke(phone, SEVEN, box)
    assert phone.sent.wait_new(phone, before), "the stroke never reached the app"
    metric = phone.get_by_test_id("stMetric").filter(has_text="Prediction")
    answer = metric.get_by_test_id("stMetricValue")
    expect(answer).to_have_text(re.compile(r"^\d\??$"))
    line_ = phone.locator(PHONE_LINE)
    expect(line_).to_contain_text(f"Prediction: {answer.inner_text()} ·")
    expect(line_).to_be_visible()
    # where the finger was: neither the canvas nor the answer has moved off screen
    assert in_viewport(line_.bounding_box(), PHONE), line_.bounding_box()
    canvas = phone.locator("canvas.upper-canvas").bounding_box()
    assert in_viewport(canvas, PHONE) and canvas["y"] == box["y"], (canvas, box)
    clear(phone)


def test_on_a_wide_screen_only_the_metric_shows_the_answer(desktop):
    mouse_strokes(desktop, [SEVEN])
    expect(desktop.get_by_test_id("stMetric").filter(has_text="Prediction")).to_be_visible()
    expect(desktop.locator(PHONE_LINE)).to_be_hidden()
    clear(desktop)


def strip_picture(page, caption: str) -> np.ndarray | None:
    """The decoded picture of the step whose caption starts with `caption`, None while it
    is not there or being replaced."""
    images = page.get_by_test_id("stImage").filter(has_text=caption).locator("img")
    try:
        png = page.request.get(images.first.get_attribute("src", timeout=1_000))
    except PlaywrightError:
        return None
    if not png.ok:
        return None
    return np.asarray(Image.open(io.BytesIO(png.body())).convert("L"))


def without_picture(page) -> np.ndarray | None:
    box = page.locator(".st-key-without-steps img")
    try:
        png = page.request.get(box.first.get_attribute("src", timeout=1_000))
    except PlaywrightError:
        return None
    return np.asarray(Image.open(io.BytesIO(png.body())).convert("L")) if png.ok else None


def wait_for(page, get, expected: np.ndarray, what: str) -> None:
    for _ in range(300):
        if np.array_equal(get(), expected):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{what}: never showed the expected picture")


def test_the_steps_are_to_mnists_own_and_the_squashed_canvas_is_beside_them(phone):
    box = ready_canvas(phone)
    before = len(phone.sent)
    touch_stroke(phone, SMALL_SEVEN, box)
    assert phone.sent.wait_new(phone, before), "the stroke never reached the app"
    drawing = phone.sent.image()
    phone.get_by_text("Show the steps").tap()
    strip = phone.locator(".st-key-preprocessing-steps")
    expect(strip.get_by_text("would read")).to_be_visible()
    captions = strip.get_by_test_id("stImageCaption").all_inner_texts()
    assert len(captions) == len(STEP_CAPTIONS), captions  # the squashed one has none
    assert all(c.startswith(s) for c, s in zip(captions, STEP_CAPTIONS, strict=True)), captions

    seen = upscale(to_mnist(drawing), STRIP_SCALE)
    wait_for(phone, lambda: strip_picture(phone, "5. Centred"), seen, "the last step")
    squashed = upscale(squash_to_28(ink_map(drawing)), STRIP_SCALE)
    wait_for(phone, lambda: without_picture(phone), squashed, "the squashed canvas")
    # the lesson: squashed, the small corner digit is a few pixels in a corner
    assert squashed[: 10 * STRIP_SCALE, : 10 * STRIP_SCALE].sum() == squashed.sum() > 0
    expect(phone.locator(".st-key-without-steps")).to_contain_text(
        re.compile(r"the model would read \d\??")
    )
    clear(phone)
