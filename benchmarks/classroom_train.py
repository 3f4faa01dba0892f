"""Training while the room watches: does a class of browsers on the Train page slow the run?

Every browser on the Train page polls the live run once a second (a fragment rerun):
the server reads the run's new points from the store (once per process: live.LiveFeed)
and redraws the progress bar, metrics and the per-batch chart for each of them, on the
same 2 cores that train the model. The run trains in a worker of the training engine, a
real one this script starts on the server's data home (common.Engine: its own Ray head,
stopped with everything it started at the end). The instructor's Chromium (the server
runs as a class; tools/app_server.py's instructor link) opens /train and starts the
lab's run (Lab 7, 12 epochs, batch 128, 60k images) with the form's Start button, which
queues it in the store for the engine; then a student's
Chromium opens /train while CDP records the frames it sends, including its poll. Then
light WebSocket clients (benchmarks/wire.py: no rendering) replay these in their own
student sessions, in
alternating phases: the instructor's projector alone (1 watcher), then the class (N
watchers, each on its own 1 s timer), and again. Each phase is timed from the moment
its watchers have opened the page.

Figures: the run's speed in each phase (batches per second, read from the progress bar
the watchers receive, counting only stretches inside one epoch so the end-of-epoch
validation does not blur it), the ratio class / alone, each poll's round trip (send ->
the fragment's run finished), the bytes each watcher receives per poll, and the CPU of
the server and of the engine in each phase. Prints
figures, asserts nothing. Target: the class costs the run little (ratio >= 0.9), polls
stay well under their 1 s period.

    .venv/bin/python benchmarks/classroom_train.py [--quick] [--watchers 30] [--phase-s 20]
        [--rounds 3]
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from urllib.parse import urlsplit

import common
import wire
from common import fmt, percentile, spread, verdict

TARGET_RATIO = 0.9
POLL_S = 1.0  # app_pages/train.py POLL_RUNNING_S: the page's own period while a run trains
PROGRESS = re.compile(r"Epoch (\d+)/\d+ · batch (\d+)/(\d+)")


async def record_training(server) -> tuple[wire.Recording, bytes]:
    """The instructor starts the lab's run from the Train form in Chromium; a student's
    Chromium watches it. Return the student's recording and its poll (the last frame: a
    rerun of the live-run fragment)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    timeout_ms = wire.TIMEOUT_S * 1000

    async def nothing(page):
        pass

    async def train(page):
        await page.get_by_role("button", name="Start training").click(timeout=timeout_ms)
        await page.get_by_text("Every batch").first.wait_for(timeout=timeout_ms)

    async def watch(page):
        await page.get_by_text("Every batch").first.wait_for(timeout=timeout_ms)
        await asyncio.sleep(2.5 * POLL_S)  # a few polls

    await wire.record(server.url, "/train?" + urlsplit(server.instructor_url).query, nothing, train)
    rec = await wire.record(server.url, "/train", nothing, watch)
    polls = []
    for frame in rec.frames:
        msg = BackMsg()
        msg.ParseFromString(frame)
        if msg.rerun_script.fragment_id:
            polls.append(frame)
    if not polls:
        raise SystemExit("recorded no poll of the live run")
    return rec, polls[-1]


class Observations:
    """(time, epoch, batch, batches per epoch) seen by any watcher, poll round trips and
    sizes per phase."""

    def __init__(self):
        self.progress: dict[int, list[tuple[float, int, int, int]]] = {}  # per watcher
        self.watcher_ids = itertools.count()
        self.round_trips: dict[str, list[float]] = {}
        self.poll_bytes: dict[str, list[int]] = {}
        self.errors: list[str] = []
        self.phase = "start"
        self.until = 0.0  # watchers poll until this time.monotonic()

    def batches_per_s(self, t0: float, t1: float) -> float:
        """Batches per second between t0 and t1, over stretches inside one epoch's
        training (not its last batch: the test-set validation runs after it)."""
        # Pairs of one watcher's own successive polls: in order by construction (pairs
        # across watchers can cross in flight and count batches twice).
        batches = seconds = 0.0
        for seen in self.progress.values():
            inside = [p for p in seen if t0 <= p[0] <= t1]
            for (ta, ea, ba, per_epoch), (tb, eb, bb, _) in itertools.pairwise(inside):
                if ea == eb and ba <= bb and ba < per_epoch:
                    batches += bb - ba
                    seconds += tb - ta
        return batches / seconds if seconds else float("nan")


async def watcher(url, rec, poll: bytes, obs: Observations, go: asyncio.Event, ready: list):
    """Opens the page, waits for `go`, then polls until `obs.until`."""
    me = next(obs.watcher_ids)
    try:
        async with wire.Client(url, rec) as client:
            await client.load()
            ready.append(1)
            await go.wait()
            await asyncio.sleep(random.uniform(0, POLL_S))  # each browser has its own timer
            while time.monotonic() < obs.until:
                sent, phase, size0 = time.monotonic(), obs.phase, client.received_bytes

                def done(msg, element):
                    if wire.element_type(element) == "progress":
                        hit = PROGRESS.search(element.progress.text)
                        if hit:
                            epoch, batch, per_epoch = int(hit[1]), int(hit[2]), int(hit[3])
                            seen = obs.progress.setdefault(me, [])
                            seen.append((time.monotonic(), epoch, batch, per_epoch))
                    return wire.finished(msg, element)

                await client.ws.send(poll)
                await client.until(done, wire.TIMEOUT_S)
                obs.round_trips.setdefault(phase, []).append(time.monotonic() - sent)
                obs.poll_bytes.setdefault(phase, []).append(client.received_bytes - size0)
                await asyncio.sleep(max(0.0, POLL_S - (time.monotonic() - sent)))
    except Exception as e:
        obs.errors.append(f"{type(e).__name__}: {e}")
        ready.append(1)


def engine_cpu(eng: common.Engine) -> float:
    return sum(common.cpu_seconds(p) for p in eng.pids())


async def phase(
    url, rec, poll, obs: Observations, name: str, n: int, seconds: float, pid: int, eng
):
    """n watchers open the page; once all have, they poll for `seconds`. Returns
    (t0, t1, server CPU s, this process's CPU s) of the polling part."""
    go, ready = asyncio.Event(), []
    obs.phase, obs.until = name, float("inf")
    tasks = [asyncio.create_task(watcher(url, rec, poll, obs, go, ready)) for _ in range(n)]
    while len(ready) < n:
        await asyncio.sleep(0.05)
    t0 = time.monotonic()
    cpu0 = common.cpu_now(pid, eng.pids())
    obs.until = t0 + seconds
    go.set()
    await asyncio.gather(*tasks)
    t1 = time.monotonic()
    cpu1 = common.cpu_now(pid, eng.pids())
    return t0, t1, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]


async def main_async(args) -> None:
    random.seed(7)
    obs = Observations()
    phases: list[tuple[str, float, float, float]] = []  # name, t0, t1, server CPU s
    common.no_engine_from_servers()
    with (
        common.app_server("digit-lab-class-train-") as server,
        common.engine(server.home) as eng,
    ):
        print(f"engine running {eng.ready_s:.1f} s after its start")
        rec, poll = await record_training(server)
        print(f"recorded in Chromium: the instructor's Start, a student's poll ({len(poll)} B)")
        await asyncio.sleep(args.settle_s)  # the first batches (graph building) are slower
        schedule = [("alone", 1), ("class", args.watchers)] * args.rounds
        for i, (name, n) in enumerate(schedule):
            engine0 = engine_cpu(eng)
            t0, t1, cpu, mine = await phase(
                server.url, rec, poll, obs, name, n, args.phase_s, server.pid, eng
            )
            trainer = engine_cpu(eng) - engine0
            rate = obs.batches_per_s(t0, t1)
            if rate != rate:  # NaN: no progress seen, the run has ended
                print(f"round {i // 2 + 1}, {name}: the run had ended; stopping here")
                break
            phases.append((name, t0, t1, cpu))
            print(
                f"round {i // 2 + 1}, {name:5} ({n:2} watching): {rate:5.1f} batches/s, "
                f"server CPU {cpu / (t1 - t0):.2f} cores, engine {trainer / (t1 - t0):.2f} "
                f"cores, these clients {mine / (t1 - t0):.2f} cores"
            )
    report(args, obs, phases)


def report(args, obs: Observations, phases) -> None:
    rates = {
        name: [obs.batches_per_s(t0, t1) for n, t0, t1, _ in phases if n == name]
        for name in ("alone", "class")
    }
    ratios = [c / a for a, c in zip(rates["alone"], rates["class"], strict=False)]
    print()
    print(f"the lab's run watched by 1, then {args.watchers} browsers (poll every {POLL_S} s)")
    print(f"batches per second, alone: {fmt(rates['alone'], '')}")
    print(f"batches per second, class: {fmt(rates['class'], '')}")
    print(f"ratio class / alone per round: {fmt(ratios, '')}")
    for name in ("alone", "class"):
        trips = obs.round_trips.get(name, [])
        kb = [b / 1024 for b in obs.poll_bytes.get(name, [])]
        print(
            f"poll round trip, {name}: {spread(trips)}; received per poll: "
            f"median {percentile(kb, 50):.0f} kB"
        )
    print(f"errors: {len(obs.errors)}")
    for e in sorted(set(obs.errors)):
        print(f"  {e}")
    print()
    ratio = percentile(ratios, 50)
    print(f"target class / alone >= {TARGET_RATIO}: {ratio:.2f}, {verdict(ratio >= TARGET_RATIO)}")
    p95 = percentile(obs.round_trips.get("class", []), 95)
    print(f"class polls p95 under the {POLL_S} s period: {p95:.3f} s, {verdict(p95 < POLL_S)}")


def main() -> None:
    parser = common.ArgumentParser(__doc__, watchers=2, phase_s=3.0, rounds=1, settle_s=0.0)
    parser.add_argument("--watchers", type=int, default=30)
    parser.add_argument("--phase-s", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=3, help="alone/class pairs")
    parser.add_argument(
        "--settle-s", type=float, default=3.0, help="wait after the start (graph building)"
    )
    args = parser.parse_args()
    common.header(__doc__)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
