"""Drawing on the real canvas component with the mouse, shared by the e2e modules."""

import math
import re

from playwright.sync_api import expect


def stroke(page, points):
    canvas = page.locator("canvas.upper-canvas")
    # Mouse coordinates are the viewport's, and the canvas moves: after Clear the page
    # loses the network views below it and scrolls back (measured: y 76 -> 307 px). A
    # stroke placed by a stale box misses the canvas. hover() scrolls the canvas into
    # view and waits until its box is stable.
    canvas.hover()
    box = canvas.bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=2)
    page.mouse.up()


def line(a, b, n=20):
    return [(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n) for i in range(n + 1)]


VERTICAL = line((140, 45), (140, 235))
LOOP = [
    (140 + 60 * math.sin(t / 40 * 2 * math.pi), 140 - 90 * math.cos(t / 40 * 2 * math.pi))
    for t in range(43)
]
SEVEN = line((75, 60), (205, 60)) + line((205, 60), (120, 235))[1:]


def prediction_is(page, digit: str) -> None:
    metric = page.get_by_test_id("stMetric").filter(has_text="Prediction")
    expect(metric.get_by_test_id("stMetricValue")).to_have_text(re.compile(rf"^{digit}\??$"))
