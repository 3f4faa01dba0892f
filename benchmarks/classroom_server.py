"""The server alone: 30 students' drawings reach it at the same moment.

`classroom.py` runs 33 real Chromium contexts on the server's own 2 cores: the browsers
take over 90 % of the CPU, so its latencies say more about this machine than about
the server a class would use (there, every student's laptop renders its own page).
This benchmark takes the browsers out of the server's way. One real Chromium records
what the page sends when a student opens /draw and draws a vertical stroke on the real
canvas (the Streamlit WebSocket frames: the page load, then the rerun that carries the
canvas's PNG), and the files it fetched after mouse-up (the page modules it loads on
first use, the answer's image). Then N light WebSocket clients (one asyncio loop, no
rendering) each open their own session with the load frame and, all at once, send the
drawing frame, then fetch the same modules and their own answer image over HTTP.

Per student: the time from sending the drawing until the server's message holding the
"Prediction" metric arrives (p50 / p95 / max), until the fragment's run has finished
and the files are fetched, and the answer. Errors: exceptions, timeouts, an exception
element from the server, a wrong answer. The server's RSS and CPU, and this client's own
CPU (to show it stays small next to the server's).

`--while-training`: the drawings arrive while a Lab 7 run trains (the lab's recipe, 12
epochs of 60,000 images). The run trains where every run now trains, in a worker of the
training engine (a real one this script starts on the server's data home:
common.Engine), submitted to the store as the Train page does, and the drawings start
once its first live point is in the store. Per round: the batches it trained meanwhile
and the engine's CPU. Before the engine, training shared the server's process: 30
simultaneous drawings had a p95 of about 0.8 s (issue 24).

Prints figures, asserts nothing. Target (issue 6): no errors, p95 <= 1 s, RSS <= 2 GB;
while a run trains (issue 24): p95 <= 0.5 s. It does exit 1 when not one drawing got an
answer: that is a broken benchmark (a replay the server no longer answers), not a slow
server, and its `--quick` run in tests/test_benchmarks.py should fail on it.

Each light client is a student of its own: the recorded handshake carries no student
cookie (wire.record loads the page first in another browser context), so every session
gets a new identity, and the per-student limits count one drawing per student.

    .venv/bin/python benchmarks/classroom_server.py [--quick] [--students 30] [--rounds 3]
        [--no-files] [--while-training]
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import common
import wire
from common import fmt, percentile, spread, verdict

TARGET_P95_S = 1.0
TARGET_TRAINING_P95_S = 0.5  # issue 24: 30 drawings while a Lab 7 run trains
BEFORE_TRAINING_P95_S = 0.8  # issue 24: the same, training in the server's process
TARGET_RSS_BYTES = 2 * 2**30
CONNECTIONS_PER_BROWSER = 6  # Chromium's limit per host over HTTP/1.1
DROPPED = "does not exist anymore"  # Streamlit's log line for a rerun of an unknown fragment


async def record_drawing(url: str) -> wire.Recording:
    """A real Chromium opens /draw and draws a '1' with the mouse on the real canvas."""
    import classroom  # the same stroke and readiness checks as the browser class

    async def ready(page):
        await classroom.wait_js(page, classroom.DRAW_READY_JS, wire.TIMEOUT_S * 1000)

    async def draw(page):
        await classroom.draw_vertical(page, 0)
        await classroom.prediction_value(page).wait_for(timeout=wire.TIMEOUT_S * 1000)
        await classroom.wait_js(page, classroom.PAGE_DONE_JS, wire.TIMEOUT_S * 1000)

    rec = await wire.record(url, "/draw", ready, draw)
    if not any(b"data:image/png" in frame for frame in rec.frames):
        raise SystemExit("the recording holds no drawing")
    from mnist_demo.students import COOKIE

    if f"{COOKIE}=" in rec.cookie:  # every client would be one student, and limited as one
        raise SystemExit(f"the recorded handshake carries a student identity ({COOKIE})")
    stale = rec.stale_fragments()
    if stale:
        raise SystemExit(
            f"the recorded drawing reruns fragment {stale[0]}, which a replayed /draw does "
            f"not have (it has {sorted(rec.fragments) or 'none'}): the server would drop "
            "every drawing without an answer. The recording's page load laid the page out "
            "otherwise than a replayed one (wire.py's docstring says how that happens)."
        )
    return rec


def drawing_frame(rec: wire.Recording) -> bytes:
    return [frame for frame in rec.frames if b"data:image/png" in frame][-1]


def prediction(msg, element):
    if wire.element_type(element) == "metric" and element.metric.label == "Prediction":
        return element.metric.body
    return None


def image_urls(element) -> list[str]:
    return [img.url for img in element.imgs.imgs] if wire.element_type(element) == "imgs" else []


async def student(
    url: str, rec: wire.Recording, go: asyncio.Event, ready: list, files: bool = True
) -> dict:
    out: dict = {"answer_s": None, "done_s": None, "answer": None, "error": None}
    try:
        async with wire.Client(url, rec) as client:
            await client.load()
            ready.append(1)
            await go.wait()
            sent = time.monotonic()
            await client.ws.send(drawing_frame(rec))
            images: list[str] = []

            def answer(msg, element):
                images.extend(image_urls(element))
                return prediction(msg, element)

            def done(msg, element):
                images.extend(image_urls(element))
                return wire.finished(msg, element)

            out["answer"] = await client.until(answer, wire.TIMEOUT_S)
            out["answer_s"] = time.monotonic() - sent
            await client.until(done, wire.TIMEOUT_S)
            # What the browser fetches next: modules it had not needed yet, the image.
            paths = rec.static() + images if files else []
            await asyncio.gather(*(asyncio.to_thread(wire.fetch, url + p) for p in paths))
            out["done_s"] = time.monotonic() - sent
    except TimeoutError:
        out["error"] = "timeout"
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        if out["error"]:
            ready.append(1)  # never leave the others waiting for this one
    return out


async def one_class(
    url: str, rec: wire.Recording, n: int, server_pid: int, files: bool, exclude: list[int]
) -> tuple[list, dict]:
    # Fetch files as n browsers would, each with up to 6 connections to one host: the
    # default pool (cores + 4 threads) would queue them here, in the client.
    pool = ThreadPoolExecutor(max_workers=n * CONNECTIONS_PER_BROWSER)
    asyncio.get_running_loop().set_default_executor(pool)
    go, ready = asyncio.Event(), []
    tasks = [asyncio.create_task(student(url, rec, go, ready, files)) for _ in range(n)]
    while len(ready) < n:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # let the server settle after the page loads
    cpu0 = common.cpu_now(server_pid, exclude)
    peak = 0
    go.set()
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.1)
        peak = max(peak, common.tree_rss_bytes(server_pid))
    cpu1 = common.cpu_now(server_pid, exclude)
    usage = {
        "server_cpu": cpu1[0] - cpu0[0],
        "client_cpu": cpu1[1] - cpu0[1],
        "rss_peak": peak,
    }
    return [t.result() for t in tasks], usage


class Training:
    """A Lab 7 run trained by an engine on the server's data home while the class draws."""

    def __init__(self, eng: common.Engine):
        from mnist_demo.classroom import OWNER
        from mnist_demo.recipe import TrainConfig

        self.eng = eng
        self.registry = eng.registry
        self.run = self.registry.submit(TrainConfig.for_preset("lab7"), role=OWNER)
        seconds, _ = common.wait_run(
            self.registry, self.run.id, lambda run: bool(self.registry.points(run.id)[:1])
        )
        print(
            f"Lab 7 run {self.run.id} training in the engine; first live point "
            f"{seconds:.1f} s after submit"
        )
        self.rounds: list[dict] = []

    def position(self) -> tuple[int, float, str]:
        run = self.registry.get(self.run.id)
        done = (max(run.epoch, 1) - 1) * run.batches_per_epoch + run.batch
        cpu = sum(common.cpu_seconds(p) for p in self.eng.pids())
        return done, cpu, run.status

    def start_round(self) -> None:
        self._at = (time.monotonic(), *self.position())

    def end_round(self) -> str:
        t0, b0, cpu0, _ = self._at
        b1, cpu1, status = self.position()
        seconds = time.monotonic() - t0
        r = {"batches": b1 - b0, "seconds": seconds, "cpu": cpu1 - cpu0, "status": status}
        self.rounds.append(r)
        return (
            f"; training: {r['batches']} batches ({r['batches'] / seconds:.1f}/s), engine CPU "
            f"{r['cpu']:.1f} s, run {status}"
        )


async def main_async(args) -> None:
    if args.while_training:
        common.no_engine_from_servers()
    with common.app_server("digit-lab-class-server-") as server:
        rec = await record_drawing(server.url)
        print(
            f"recorded in Chromium: the drawing, {len(drawing_frame(rec))} B (the canvas's PNG "
            f"and strokes), then {len(rec.static())} static files"
        )
        with contextlib.ExitStack() as stack:
            training = None
            if args.while_training:
                eng = stack.enter_context(common.engine(server.home))
                training = await asyncio.to_thread(Training, eng)
            rss_before = common.tree_rss_bytes(server.pid)
            rounds = []
            for r in range(args.rounds):
                if training is not None:
                    training.start_round()
                engine_pids = training.eng.pids() if training is not None else []
                results, usage = await one_class(
                    server.url, rec, args.students, server.pid, not args.no_files, engine_pids
                )
                rounds.append((results, usage))
                answers = [x["answer_s"] for x in results if x["answer_s"] is not None]
                print(
                    f"round {r + 1}: {spread(answers)}; server CPU {usage['server_cpu']:.2f} s, "
                    f"this client {usage['client_cpu']:.2f} s"
                    + (training.end_round() if training is not None else "")
                )
        log_tail = server.log_tail(4000)
        dropped = [line for line in server.log_tail(10**8).splitlines() if DROPPED in line]
    report(args, rounds, rss_before, training)
    if "Traceback" in log_tail:
        print(f"\nthe server log has a traceback; its tail:\n{log_tail}")
    if dropped:
        print(f"\nthe server dropped {len(dropped)} fragment rerun(s): {dropped[0]}")
    if not any(x["answer"] is not None for res, _ in rounds for x in res):
        raise SystemExit(
            "\nno drawing got an answer at all: the benchmark is broken, not the server slow "
            "(see the errors above and the server's log)"
        )


def report(args, rounds, rss_before: int, training: Training | None = None) -> None:
    mb = 2**20
    results = [x for res, _ in rounds for x in res]
    answer = [x["answer_s"] for x in results if x["answer_s"] is not None]
    done = [x["done_s"] for x in results if x["done_s"] is not None]
    p95s = [percentile([x["answer_s"] for x in res if x["answer_s"]], 95) for res, _ in rounds]
    errors = [x["error"] for x in results if x["error"]]
    wrong = [x["answer"] for x in results if x["answer"] is not None and x["answer"] != "1"]
    server_cpu = [u["server_cpu"] / args.students for _, u in rounds]
    client_cpu = [u["client_cpu"] for _, u in rounds]
    peak = max(u["rss_peak"] for _, u in rounds)
    print()
    print(
        f"{args.students} drawings sent at the same moment, {args.rounds} rounds "
        + (
            "while a Lab 7 run trains in the engine's worker (no browser renders)"
            if training is not None
            else "(the server has the machine; no browser renders)"
        )
    )
    print(
        f"drawing sent -> Prediction received: {spread(answer)}; p95 per round {fmt(p95s, 's', 3)}"
    )
    print(f"drawing sent -> the fragment's run finished and the files fetched: {spread(done)}")
    print(
        f"server CPU per drawing: {fmt(server_cpu, 's', 3)}; this client's CPU per round: "
        f"{fmt(client_cpu, 's')}"
    )
    print(f"answers: {len(answer) - len(wrong)} of {len(answer)} read as 1; errors: {len(errors)}")
    for e in sorted(set(errors)):
        print(f"  {e}")
    print(f"server RSS: before {rss_before / mb:.0f} MB, peak {peak / mb:.0f} MB")
    print()
    n_err = len(errors) + len(wrong)
    print(f"target no errors: {n_err}, {verdict(n_err == 0)}")
    p95 = statistics.median(p95s) if p95s else float("inf")
    print(
        f"target p95 <= {TARGET_P95_S:.0f} s (median over rounds): {p95:.3f} s, "
        f"{verdict(p95 <= TARGET_P95_S)}"
    )
    if training is not None:
        trained = sum(r["batches"] for r in training.rounds)
        seconds = sum(r["seconds"] for r in training.rounds)
        cpu = sum(r["cpu"] for r in training.rounds)
        print(
            f"training while the class drew: {trained} batches in {seconds:.1f} s "
            f"({trained / seconds if seconds else float('nan'):.1f}/s), engine CPU "
            f"{cpu:.1f} s"
        )
        print(
            f"target p95 <= {TARGET_TRAINING_P95_S} s while a Lab 7 run trains (median over "
            f"rounds; {BEFORE_TRAINING_P95_S} s with training in the server's process): "
            f"{p95:.3f} s, {verdict(p95 <= TARGET_TRAINING_P95_S)}"
        )
    print(f"target RSS <= 2 GB: peak {peak / mb:.0f} MB, {verdict(peak <= TARGET_RSS_BYTES)}")


def main() -> None:
    parser = common.ArgumentParser(__doc__, students=2, rounds=1)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="classes in a row, same server")
    parser.add_argument(
        "--no-files",
        action="store_true",
        help="skip the HTTP fetches after the answer: the answer's own cost alone",
    )
    parser.add_argument(
        "--while-training",
        action="store_true",
        help="start an engine and a Lab 7 run first: the drawings arrive while it trains",
    )
    args = parser.parse_args()
    common.header(__doc__)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
