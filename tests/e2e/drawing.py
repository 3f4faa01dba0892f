"""Drawing on the real canvas component with the mouse or a finger, and reading what it
sends the app; shared by the e2e modules."""

import base64
import io
import math
import re
import time

import numpy as np
from PIL import Image
from playwright.sync_api import Error as PlaywrightError
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


# --- strokes anywhere, with the mouse or a finger, and what the app receives -----------

BLANK_PROMPT = "Draw a digit on the black square"
INK_JS = """c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] > 128) n++;
  return n;
}"""


def ready_canvas(page) -> dict:
    """The canvas's viewport box once it is on screen, settled and blank (after Clear the
    old canvas lingers for a moment before its fresh replacement mounts)."""
    canvas = page.locator("canvas.upper-canvas")
    ink = page.locator("canvas.dc-canvas.lower-canvas")
    deadline = time.monotonic() + 30
    while True:
        try:
            canvas.scroll_into_view_if_needed(timeout=5_000)  # waits until stable
            if ink.evaluate(INK_JS, timeout=5_000) == 0:
                box = canvas.bounding_box()
                if box:
                    return box
        except PlaywrightError:  # replaced mid-way by a rerun: look again
            pass
        if time.monotonic() > deadline:
            raise AssertionError("no blank canvas on the page")
        page.wait_for_timeout(100)


def mouse_strokes(page, strokes, box: dict | None = None) -> None:
    """Each stroke (x, y canvas pixels) drawn pen down with the mouse, one after another."""
    box = box or ready_canvas(page)
    for points in strokes:
        page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()


def touch_stroke(page, points, box: dict | None = None) -> None:
    """One finger drawn along `points` (canvas pixels): raw touch events through the
    DevTools protocol (touchStart, touchMove..., touchEnd), as a phone sends them; no
    hover or mouse event precedes them. Needs a context with has_touch=True."""
    box = box or ready_canvas(page)
    cdp = getattr(page, "_digit_lab_cdp", None)
    if cdp is None:
        cdp = page._digit_lab_cdp = page.context.new_cdp_session(page)

    def touch(kind: str, x: float | None = None, y: float | None = None) -> None:
        where = [] if x is None else [{"x": box["x"] + x, "y": box["y"] + y, "id": 1}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": where})

    touch("touchStart", *points[0])
    for x, y in points[1:]:
        touch("touchMove", x, y)
    touch("touchEnd")


class SentDrawings:
    """What the canvas sends the app: each WebSocket message from the page that carries
    a drawing (its PNG, as `CanvasResult.image_data` decodes it, and its stroke count).
    Attach before page.goto."""

    PNG = re.compile(rb"data:image/png;base64,([A-Za-z0-9+/=]+)")

    def __init__(self, page):
        self.messages: list[bytes] = []
        page.on("websocket", lambda ws: ws.on("framesent", self._on_frame))

    def _on_frame(self, payload) -> None:
        data = payload if isinstance(payload, bytes) else payload.encode()
        if b'"objects"' in data:
            self.messages.append(data)

    def __len__(self) -> int:
        return len(self.messages)

    def wait_new(self, page, since: int, timeout_s: float = 5.0, quiet_s: float = 0.3) -> bool:
        """True once a drawing newer than message `since` was sent and none followed for
        `quiet_s` (the canvas sends 0.2 s after the last stroke ends); False if none came."""
        deadline = time.monotonic() + timeout_s
        while len(self) <= since:
            if time.monotonic() > deadline:
                return False
            page.wait_for_timeout(50)
        seen = len(self)
        while True:
            page.wait_for_timeout(quiet_s * 1000)
            if len(self) == seen:
                return True
            seen = len(self)

    def wait_strokes(self, page, count: int, timeout_s: float = 10.0) -> int:
        """The stroke count of the latest drawing sent, once it is `count` (or at the
        timeout). On a busy machine the canvas may send between two strokes of one digit
        (0.2 s after a stroke ends): the later send carries them all; a lost stroke never
        arrives."""
        deadline = time.monotonic() + timeout_s
        while self.strokes() < count and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        return self.strokes()

    def strokes(self, i: int = -1) -> int:
        return self.messages[i].count(b'"type":"Path"')

    def image(self, i: int = -1) -> np.ndarray | None:
        """The sent drawing as an RGBA array, None for a blank canvas (no image sent)."""
        found = self.PNG.search(self.messages[i])
        if not found:
            return None
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(found.group(1)))))


def open_draw(browser, server, **context_options):
    """A new browser session on the Draw page, its canvas ready and blank; `page.sent`
    records the drawings the page sends."""
    context = browser.new_context(**context_options)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.sent = SentDrawings(page)
    page.goto(f"{server.url}/draw")
    expect(page.locator("canvas.upper-canvas")).to_be_visible(timeout=90_000)
    expect(page.get_by_text(BLANK_PROMPT)).to_be_visible()
    return context, page


PHONE = {"width": 390, "height": 844}
# a phone's browser: small viewport, retina pixels, touch events
PHONE_CONTEXT = {"viewport": PHONE, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


def shown_picture(page) -> np.ndarray | None:
    """The 28x28 picture the Draw page says the model saw (its 8x enlargement, decoded),
    None while there is none or it is being replaced."""
    seen = page.get_by_test_id("stImage").filter(has_text="What the model saw").locator("img")
    try:
        src = seen.get_attribute("src", timeout=1_000)
        png = page.request.get(src) if src else None
    except PlaywrightError:
        return None
    if png is None or not png.ok:
        return None
    return np.asarray(Image.open(io.BytesIO(png.body())).convert("L"))
