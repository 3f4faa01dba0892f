"""A class at once: 30 students draw a digit on one server at the same moment.

One local server (fresh temporary MNIST_DEMO_HOME) is warmed up as an instructor would:
Home opened (MNIST, the shipped model and its test predictions load) and one digit
drawn. Then N students (30 by default) each open /draw in their own browser context
(their own Streamlit session) concurrently; when all have the canvas, all of them draw
a vertical stroke with the mouse on the real canvas (`canvas.upper-canvas`: move, mouse
down, several moves, mouse up) at the same time, while 3 more contexts open /test_set.

Per student: the latency from mouse-up until the `stMetric` labelled "Prediction"
shows a value, and what it reads (a vertical stroke should be "1"). Errors: exceptions
(timeouts counted apart), `stException` elements on a page, JavaScript page errors. The
server's memory: VmRSS of the streamlit process and its children, before the students
come, the peak while they work (sampled every 0.2 s in a thread), and after they leave.

The browsers run on the same 2 cores as the server, so latencies include their load:
rendering takes ~0.5 CPU-seconds per drawing per browser, the server ~0.03. For the
server's own capacity, with the browsers out of its way, see classroom_server.py.
Prints figures, asserts nothing. Targets: no errors, p95 latency <= 1 s, RSS <= 2 GB.

    .venv/bin/python benchmarks/classroom.py [--quick] [--students 30] [--watchers 3]
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import common
from common import app_server, fmt, percentile, spread, verdict

from mnist_demo.preprocess import CANVAS_SIZE

TARGET_P95_S = 1.0
TARGET_RSS_BYTES = 2 * 2**30
SAMPLE_EVERY_S = 0.2
LOAD_TIMEOUT_MS = 300_000
ANSWER_TIMEOUT_MS = 60_000


class RssSampler(threading.Thread):
    """Samples a process tree's RSS every SAMPLE_EVERY_S; `mark(name)` opens a phase."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, str, int]] = []
        self.phase = "before"
        self._done = threading.Event()

    def mark(self, phase: str) -> None:
        self.phase = phase

    def run(self) -> None:
        while not self._done.is_set():
            self.samples.append((time.monotonic(), self.phase, common.tree_rss_bytes(self.pid)))
            self._done.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def values(self, phase: str) -> list[int]:
        return [rss for _, p, rss in self.samples if p == phase]


async def draw_vertical(page, x_offset: float) -> float:
    """A '1' on the canvas; returns time.monotonic() right after mouse-up."""
    box = await page.locator("canvas.upper-canvas").bounding_box()
    x = box["x"] + CANVAS_SIZE / 2 + x_offset
    top, bottom = box["y"] + 45, box["y"] + 235
    await page.mouse.move(x, top)
    await page.mouse.down()
    moves = 12
    for k in range(1, moves + 1):
        await page.mouse.move(x, top + (bottom - top) * k / moves, steps=2)
    await page.mouse.up()
    return time.monotonic()


# Timed inside the page, with the browser's own clock: from the mouseup event's dispatch
# until the Prediction metric holds a value in the DOM and the next frame has been
# produced. A MutationObserver costs nothing while waiting, unlike a driver polling 30
# pages; it is armed before the stroke, so no update can slip past.
ARM_JS = """() => {
  const find = () => {
    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
      if (!m.textContent.includes("Prediction")) continue;
      const v = m.querySelector('[data-testid="stMetricValue"]');
      if (v && v.textContent.trim()) return v.textContent.trim();
    }
    return null;
  };
  window.__digitLab = new Promise((resolve) => {
    let up = null;
    const obs = new MutationObserver(() => check());
    const check = () => {
      if (up === null) return;
      const value = find();
      if (value === null) return;
      obs.disconnect();
      const seen = performance.now();
      requestAnimationFrame(() => resolve({
        dom_ms: seen - up, frame_ms: performance.now() - up, value: value,
      }));
    };
    document.addEventListener("mouseup", () => { up = performance.now(); check(); },
                              { capture: true, once: true });
    obs.observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}"""
# Polled every POLL_MS (not every animation frame) so 30 waiting pages stay cheap.
POLL_MS = 200
# The canvas component (components v2) lives in a shadow root: look inside those too.
DRAW_READY_JS = """() => {
  const deep = (root, sel) => {
    const hit = root.querySelector(sel);
    if (hit) return hit;
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) { const h = deep(el.shadowRoot, sel); if (h) return h; }
    }
    return null;
  };
  const c = deep(document, "canvas.upper-canvas");
  return !!c && c.getBoundingClientRect().width > 0 &&
    document.body.textContent.includes("Draw a digit on the black square");
}"""
# The page is done when the answer's picture is shown and the (off by default) "inside
# the network" section has drawn its toggle.
PAGE_DONE_JS = """() => document.body.textContent.includes("What the model saw") &&
  document.body.textContent.includes("Show what the network sees")"""
TEST_SET_JS = """() => document.body.textContent.includes("test images match")"""


def prediction_value(page):
    metric = page.get_by_test_id("stMetric").filter(has_text="Prediction")
    return metric.get_by_test_id("stMetricValue")


async def wait_js(page, js: str, timeout_ms: int) -> None:
    await page.wait_for_function(js, polling=POLL_MS, timeout=timeout_ms)


async def open_draw(browser, url: str) -> tuple:
    context, page = await common.new_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    t = time.monotonic()
    await page.goto(url + "/draw", timeout=LOAD_TIMEOUT_MS)
    await wait_js(page, DRAW_READY_JS, LOAD_TIMEOUT_MS)
    return context, page, errors, time.monotonic() - t


class WireClock:
    """The split between browser and server, from Chromium's network layer (CDP): when
    the drawing left (the first WebSocket frame sent that carries a PNG data URL) and
    when the answer came back (the first frame received after it that names the
    "Prediction" metric). Both timestamps come from the browser's network stack, not
    from a renderer that may be waiting for CPU."""

    def __init__(self):
        self.sent: float | None = None
        self.received: float | None = None

    @staticmethod
    def _payload(params: dict) -> bytes:
        frame = params["response"]
        data = frame["payloadData"]
        return base64.b64decode(data) if frame["opcode"] == 2 else data.encode()

    def on_sent(self, params: dict) -> None:
        if self.sent is None and b"data:image/png" in self._payload(params):
            self.sent = params["timestamp"]

    def on_received(self, params: dict) -> None:
        waiting = self.sent is not None and self.received is None
        if waiting and b"Prediction" in self._payload(params):
            self.received = params["timestamp"]

    @property
    def server_s(self) -> float | None:
        if self.sent is None or self.received is None:
            return None
        return self.received - self.sent


async def student(browser, url: str, i: int, go: asyncio.Event, ready: list) -> dict:
    out: dict = {"i": i} | dict.fromkeys(
        ["load_s", "latency_s", "driver_s", "server_s", "answer", "error"]
    )
    context = None
    try:
        context, page, js_errors, out["load_s"] = await open_draw(browser, url)
    except Exception as e:
        out["error"] = f"loading /draw: {type(e).__name__}: {str(e).splitlines()[0]}"
        ready.append(i)
        if context:
            await context.close()
        return out
    wire = WireClock()
    cdp = await context.new_cdp_session(page)
    cdp.on("Network.webSocketFrameSent", wire.on_sent)
    cdp.on("Network.webSocketFrameReceived", wire.on_received)
    ready.append(i)
    await go.wait()
    try:
        await cdp.send("Network.enable")
        await page.evaluate(ARM_JS)
        up = await draw_vertical(page, x_offset=(i % 7 - 3) * 6)
        seen = await asyncio.wait_for(
            page.evaluate("() => window.__digitLab"), ANSWER_TIMEOUT_MS / 1000
        )
        out["driver_s"] = time.monotonic() - up
        out["latency_s"] = seen["frame_ms"] / 1000
        out["answer"] = seen["value"]
        out["server_s"] = wire.server_s
        await cdp.send("Network.disable")
        # The rest of the page (the 28x28 seen, the inside-the-network toggle) follows.
        await wait_js(page, PAGE_DONE_JS, ANSWER_TIMEOUT_MS)
    except TimeoutError as e:  # asyncio.wait_for; Playwright's own is named TimeoutError too
        out["error"] = f"drawing: Timeout: {e or 'no Prediction in time'}"
    except Exception as e:
        out["error"] = f"drawing: {type(e).__name__}: {str(e).splitlines()[0]}"
    out["st_exceptions"] = await page.get_by_test_id("stException").count()
    out["js_errors"] = list(js_errors)
    out["context"] = context
    return out


async def watcher(browser, url: str, go: asyncio.Event) -> dict:
    await go.wait()
    out: dict = {"load_s": None, "error": None, "st_exceptions": 0, "js_errors": []}
    context, page = await common.new_page(browser)
    page.on("pageerror", lambda e: out["js_errors"].append(str(e)))
    t = time.monotonic()
    try:
        await page.goto(url + "/test_set", timeout=LOAD_TIMEOUT_MS)
        await wait_js(page, TEST_SET_JS, LOAD_TIMEOUT_MS)
        out["load_s"] = time.monotonic() - t
    except Exception as e:
        out["error"] = f"/test_set: {type(e).__name__}: {str(e).splitlines()[0]}"
    out["st_exceptions"] = await page.get_by_test_id("stException").count()
    out["context"] = context
    return out


async def warm_up(browser, url: str) -> float:
    """The instructor's check before class: Home (evaluation cached), then one drawing."""
    t = time.monotonic()
    context, page = await common.new_page(browser)
    await page.goto(url + "/", timeout=LOAD_TIMEOUT_MS)
    await page.get_by_text("The answers").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    await context.close()
    context, page, _, _ = await open_draw(browser, url)
    await draw_vertical(page, 0)
    await prediction_value(page).wait_for(state="visible", timeout=ANSWER_TIMEOUT_MS)
    await context.close()
    return time.monotonic() - t


async def classroom(args) -> None:
    server_cpus = None
    if args.pin:
        # The server gets CPU 0 to itself; this process, the driver and Chromium (which
        # inherit this affinity) the others. A class server would have every core.
        cpus = sorted(os.sched_getaffinity(0))
        server_cpus = {cpus[0]}
        os.sched_setaffinity(0, set(cpus[1:]))
        print(f"pinned: server on CPU {cpus[0]}, browsers on CPU(s) {cpus[1:]}")
    with app_server("digit-lab-classroom-", cpus=server_cpus) as server:
        sampler = RssSampler(server.pid)
        sampler.start()
        async with common.chromium() as browser:
            if not args.cold:
                warm_s = await warm_up(browser, server.url)
                print(f"warm-up (Home, then one drawing): {warm_s:.1f} s")
            await asyncio.sleep(1.0)
            rss_before = common.tree_rss_bytes(server.pid)
            cpu = [common.cpu_now(server.pid)]
            sampler.mark("during")
            go, ready = asyncio.Event(), []
            t0 = time.monotonic()
            students = [
                asyncio.create_task(student(browser, server.url, i, go, ready))
                for i in range(args.students)
            ]
            watchers = [
                asyncio.create_task(watcher(browser, server.url, go)) for _ in range(args.watchers)
            ]
            while len(ready) < args.students:
                await asyncio.sleep(0.05)
            loaded_s = time.monotonic() - t0
            cpu.append(common.cpu_now(server.pid))
            spy = start_profile(args.profile, server.pid)
            go.set()
            t_draw = time.monotonic()
            results = await asyncio.gather(*students)
            watched = await asyncio.gather(*watchers)
            class_s = time.monotonic() - t_draw
            cpu.append(common.cpu_now(server.pid))
            stop_profile(spy, args.profile)
            sampler.mark("closing")
            for r in [*results, *watched]:
                if r.get("context"):
                    await r.pop("context").close()
        await asyncio.sleep(2.0)
        sampler.mark("after")
        await asyncio.sleep(1.0)
        rss_after = common.tree_rss_bytes(server.pid)
        sampler.stop()
        log_tail = server.log_tail(4000)

    report(args, results, watched, sampler, (rss_before, rss_after), cpu, (loaded_s, class_s))
    if "Traceback" in log_tail:
        print(f"\nthe server log has a traceback; its tail:\n{log_tail}")
    if args.profile:
        summarise_profile(Path(args.profile))


def print_cpu(cpu: list[tuple[float, float]], loaded_s: float, class_s: float, n: int) -> None:
    (s0, b0), (s1, b1), (s2, b2) = cpu
    cores = os.cpu_count() or 1
    print(
        f"CPU seconds used (the machine has {cores} cores):\n"
        f"  opening /draw ({loaded_s:.1f} s wall): server {s1 - s0:.1f} "
        f"({(s1 - s0) / n:.2f} per student), browsers + driver {b1 - b0:.1f}\n"
        f"  drawing       ({class_s:.1f} s wall): server {s2 - s1:.1f} "
        f"({(s2 - s1) / n:.2f} per student), browsers + driver {b2 - b1:.1f}"
    )
    share = (s2 - s1) / max((s2 - s1) + (b2 - b1), 1e-9)
    print(
        f"  the server had {share:.0%} of the CPU used while the class drew: the browsers "
        "share its cores here, so the latencies above are an upper bound for the server "
        "(benchmarks/classroom_server.py measures the server with the machine to itself)"
    )


def start_profile(path: str | None, pid: int) -> subprocess.Popen | None:
    """py-spy on the server while the class draws (--profile PATH)."""
    if not path:
        return None
    spy = Path(sys.executable).with_name("py-spy")
    cmd = [str(spy), "record", "-p", str(pid), "-r", "100", "--threads", "-f", "raw", "-o", path]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(spy: subprocess.Popen | None, path: str | None) -> None:
    if spy is None:
        return
    spy.send_signal(signal.SIGINT)
    spy.wait(30)


# py-spy names files relative to sys.path: "mnist_demo/charts.py", a page as "draw.py"
# (or "app_pages/draw.py").
PROJECT_FRAME = re.compile(
    r"\((mnist_demo/[\w/]+|(?:app_pages/)?(?:draw|home|train|browse|misclassified|class|join)"
    r"|streamlit_app)\.py:\d+\)"
)


def _is_project(frame: str) -> bool:
    """A frame in the app's own code: mnist_demo/, app_pages/, streamlit_app.py."""
    return bool(PROJECT_FRAME.search(frame))


def summarise_profile(path: Path, top: int = 25) -> None:
    """Inclusive samples of the app's own frames in the server's script threads, and of
    the library calls they make (marked ->)."""
    per_frame: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if "ScriptRunner" not in frames[0]:
            continue
        total += int(count)
        seen = set()
        for parent, frame in itertools.pairwise(frames[1:]):
            if _is_project(frame) and not frame.startswith("<module> (streamlit_app"):
                seen.add(frame)
            elif _is_project(parent) and not _is_project(frame):
                seen.add("-> " + frame)
        for frame in seen:
            per_frame[frame] += int(count)
    print(f"\nprofile of the server's script threads while the class drew ({path}):")
    print(f"  {total} samples at 100 Hz; inclusive share of the app's frames (-> library calls):")
    for frame, count in per_frame.most_common(top):
        print(f"  {100 * count / max(total, 1):5.1f} %  {frame[:140]}")


def report(args, results, watched, sampler, rss, cpu, walls) -> None:
    (rss_before, rss_after), (loaded_s, class_s) = rss, walls
    mb = 2**20
    loads = [r["load_s"] for r in results if r["load_s"] is not None]
    lat = [r["latency_s"] for r in results if r["latency_s"] is not None]
    driver = [r["driver_s"] for r in results if r["driver_s"] is not None]
    server = [r["server_s"] for r in results if r["server_s"] is not None]
    browser = [
        r["latency_s"] - r["server_s"]
        for r in results
        if r["server_s"] is not None and r["latency_s"] is not None
    ]
    answers = [r["answer"] for r in results if r["answer"] is not None]
    ones = sum(1 for a in answers if re.fullmatch(r"1\??", a))
    timeouts = [r for r in [*results, *watched] if r["error"] and "Timeout" in r["error"]]
    exceptions = [r for r in [*results, *watched] if r["error"] and "Timeout" not in r["error"]]
    st_exc = sum(r.get("st_exceptions", 0) for r in [*results, *watched])
    js_err = sum(len(r.get("js_errors", [])) for r in [*results, *watched])
    peak = max(sampler.values("during") + sampler.values("closing") or [0])

    print()
    print(f"{args.students} students drawing at once, {args.watchers} browsing /test_set")
    print(
        f"students' /draw loads (all at once): {fmt(loads, 's')}, p95 "
        f"{percentile(loads, 95):.2f} s; all ready after {loaded_s:.1f} s"
    )
    w = [r["load_s"] for r in watched if r["load_s"] is not None]
    print(f"/test_set loads while the class draws: {fmt(w, 's')}")
    print(
        f"mouse-up -> Prediction shown (in-page clock): {spread(lat)}, "
        f"min {min(lat, default=float('nan')):.3f} s"
    )
    print(
        f"  as the test driver saw it (incl. its own round trips): {spread(driver)}; whole "
        f"class done (every page fully drawn) {class_s:.1f} s after the start signal"
    )
    print(
        "  of which the server (drawing frame sent -> Prediction frame received, browser's "
        f"network clock): {spread(server)}"
    )
    print(
        "  and the browser (the canvas's 200 ms debounce, PNG encoding, rendering): "
        f"{spread(browser)}"
    )
    print(f"answers: {ones} of {len(answers)} read the vertical stroke as 1; all: {answers}")
    print(
        f"errors: {len(exceptions)} exceptions, {len(timeouts)} timeouts, {st_exc} stException "
        f"elements, {js_err} JavaScript page errors"
    )
    for r in [*exceptions, *timeouts]:
        print(f"  {r['error']}")
    print(
        f"server RSS (streamlit + children): before {rss_before / mb:.0f} MB, peak during "
        f"{peak / mb:.0f} MB, after {rss_after / mb:.0f} MB "
        f"({len(sampler.samples)} samples every {SAMPLE_EVERY_S} s)"
    )
    print_cpu(cpu, loaded_s, class_s, args.students)
    print()
    if lat:
        print(f"ratio p95/p50 latency: {percentile(lat, 95) / percentile(lat, 50):.1f}")
    errors = len(exceptions) + len(timeouts) + st_exc
    print(f"target no errors: {errors} errors, {verdict(errors == 0)}")
    p95 = percentile(lat, 95) if lat else float("inf")
    print(
        f"target p95 <= {TARGET_P95_S:.0f} s (mouse-up -> Prediction shown): {p95:.3f} s, "
        f"{verdict(p95 <= TARGET_P95_S)}"
    )
    if server:
        s95 = percentile(server, 95)
        print(
            f"  the server's part alone: p95 {s95:.3f} s, "
            f"{'within' if s95 <= TARGET_P95_S else 'over'} the same budget"
        )
    print(
        f"target RSS <= {TARGET_RSS_BYTES / 2**30:.0f} GB: peak {peak / mb:.0f} MB, "
        f"{verdict(peak <= TARGET_RSS_BYTES)}"
    )


def main() -> None:
    parser = common.ArgumentParser(__doc__, students=2, watchers=1)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--watchers", type=int, default=3, help="contexts opening /test_set")
    parser.add_argument("--cold", action="store_true", help="no instructor warm-up first")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server on one CPU of its own, the browsers on the rest (needs >= 2 CPUs)",
    )
    parser.add_argument("--profile", metavar="PATH", help="py-spy the server while drawing")
    args = parser.parse_args()
    common.header(__doc__)
    asyncio.run(classroom(args))


if __name__ == "__main__":
    main()
