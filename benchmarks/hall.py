"""The lecture hall: simulated students spread over the replicas through nginx.

`python -m mnist_demo hall` (PostgreSQL, the engine, R Streamlit replicas, nginx with its
sticky cookie) is started on a fresh data home, once with 1 replica and once with 2, on
this machine. One real Chromium, through the proxy, records what the Draw page sends
for N different drawings and their "Send to the class" clicks (benchmarks/class_send.py's
recording) and what the Train page sends on load. Then N light WebSocket clients
(benchmarks/wire.py), each its own Streamlit session, are spread over the replicas by
the proxy's cookie (client k gets `dl_replica=r{k mod R + 1}`), and all at once:

- draw:  send the drawing, until the "Prediction" metric arrives and the run ends;
- send:  the Send click, until "Sent: you meant ..." and the run ends;
- watch: open the Train page (the live run's progress, when one trains), until its run ends.

Each round starts on a new class set (so the recorded drawings are new again) with the
class's send cap raised. With `--live-run` (the default; not in --quick) the
instructor's Quick demo trains in the engine meanwhile, submitted to the store as the
Train page does.

Per action: p50 / p95 / max, server-side as the client sees it through the proxy. CPU
seconds of the serving side (the Streamlit replicas, nginx, PostgreSQL; not the Ray
trainer) per student action, from /proc; then the capacity this implies per core, and the
300-student arithmetic, marked EXTRAPOLATED (a straight line from these figures).

Prints figures, asserts nothing.

    .venv/bin/python benchmarks/hall.py [--quick] [--students 30] [--rounds 2]
        [--replicas 1,2] [--no-live-run]
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import class_send
import classroom
import classroom_server
import common
import wire
from common import percentile

from mnist_demo import queue
from mnist_demo.serve.hall import pick_port
from tools.hall_process import HallProcess, processes_of

ACTIONS = ("draw", "send", "watch")
ACTIONS_PER_STUDENT_MIN = 6.0  # ASSUMED: a busy student acts every 10 s (draw, send, a page)
TARGET_UTILISATION = 0.6  # leave 40 % of each core for bursts (a whole class at once)
HALL_STUDENTS = 300


def with_replica(rec: wire.Recording, replica: str) -> wire.Recording:
    """The recording with the proxy's cookie naming `replica` (added when missing)."""
    parts = [p.strip() for p in rec.cookie.split(";") if p.strip()]
    parts = [p for p in parts if not p.startswith("dl_replica=")] + [f"dl_replica={replica}"]
    return dataclasses.replace(rec, cookie="; ".join(parts))


async def warm_replicas(url: str, replicas: int) -> None:
    """Load /draw once on every replica (the proxy's cookie picks it): a cold server's
    first page runs with the first-paint placeholder above it, so a drawing recorded
    there names a fragment that no later session has (wire.record warms only the
    replica its own browser lands on)."""
    async with common.chromium() as browser:
        for i in range(1, replicas + 1):
            context, page = await common.new_page(browser)
            host = url.split("//", 1)[1].split("/", 1)[0].split(":")[0]
            await context.add_cookies(
                [{"name": "dl_replica", "value": f"r{i}", "domain": host, "path": "/"}]
            )
            await page.goto(url + "/draw", timeout=wire.TIMEOUT_S * 1000)
            await classroom.wait_js(page, classroom.DRAW_READY_JS, wire.TIMEOUT_S * 1000)
            await page.wait_for_function(wire.RUN_ENDED_JS, timeout=wire.TIMEOUT_S * 1000)
            await context.close()


async def record(url: str, n: int) -> tuple[wire.Recording, list, wire.Recording]:
    """Through the proxy: n drawings and their sends, and a Train page load."""
    server = type("Proxy", (), {"url": url})()
    timeout_ms = wire.TIMEOUT_S * 1000

    async def ready(page):
        await classroom.wait_js(page, classroom.DRAW_READY_JS, timeout_ms)

    async def draw_and_send(page):
        for k in range(n):
            if k:  # a new student: 12 sends a minute is one student's limit
                await page.context.clear_cookies()
                await page.goto(url + "/draw", timeout=timeout_ms)
                await ready(page)
            await class_send.stroke(page, class_send.shape(k, n))
            await classroom.prediction_value(page).wait_for(timeout=timeout_ms)
            await page.get_by_role("button", name="Send to the class").click(timeout=timeout_ms)
            outcome = page.get_by_test_id("stAlert").filter(has_text=class_send.OUTCOME).first
            text = await outcome.text_content(timeout=timeout_ms) or ""
            if class_send.SENT not in text:
                raise SystemExit(f"the recording's drawing {k + 1} was refused: {text}")

    wire.check_protocol(class_send.SEND_PROTOCOL)
    rec = await wire.record(server.url, "/draw", ready, draw_and_send)
    pairs = class_send.split_sends(rec, n)

    async def train_ready(page):
        await page.get_by_text("Train the CNN").first.wait_for(timeout=timeout_ms)

    async def nothing(page):
        return None

    train = await wire.record(url, "/train", train_ready, nothing)
    return rec, pairs, train


async def student(url: str, rec, train, pair, replica: str, go, ready: list) -> dict:
    out: dict = {"replica": replica, "error": None}
    drawing, send = pair
    counted, stage = False, "load"
    try:
        async with wire.Client(url, with_replica(rec, replica)) as client:
            await client.load()
            ready.append(1)
            counted = True
            await go.wait()
            t, stage = time.monotonic(), "draw"
            await client.ws.send(drawing)
            await client.until(classroom_server.prediction, wire.TIMEOUT_S)
            await client.until(wire.finished, wire.TIMEOUT_S)
            out["draw"] = time.monotonic() - t
            alerts: list[str] = []

            def outcome(msg, element):
                if wire.element_type(element) == "alert":
                    alerts.append(element.alert.body)
                    if element.alert.body.startswith(class_send.SENT):
                        return True
                return False if wire.finished(msg, element) is not None else None

            t, stage = time.monotonic(), "send"
            await client.ws.send(send)
            if not await client.until(outcome, wire.TIMEOUT_S):
                raise RuntimeError(f"send refused: {'; '.join(alerts) or 'no answer'}")
            await client.until(wire.finished, wire.TIMEOUT_S)
            out["send"] = time.monotonic() - t
        t, stage = time.monotonic(), "watch"
        async with wire.Client(url, with_replica(train, replica)) as watcher:
            await watcher.load()
        out["watch"] = time.monotonic() - t
    except TimeoutError:
        out["error"] = f"{stage}: timeout"
    except Exception as e:
        out["error"] = f"{stage}: {type(e).__name__}: {e}"
    finally:
        if not counted:
            ready.append(1)  # never leave the others waiting for this one
    return out


def serving_pids(home: Path) -> list[int]:
    """The replicas, nginx and PostgreSQL of the hall on `home` (not Ray, not the engine)."""
    keep = (b"streamlit", b"nginx", b"postgres")
    out = []
    for pid in processes_of(home):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if any(k in cmd for k in keep) and b"mnist_demo hall" not in cmd.replace(b"\0", b" "):
            out.append(pid)
    return out


def cpu_of(pids: list[int]) -> float:
    return sum(common.cpu_seconds(p) for p in pids)


async def one_round(hall: HallProcess, rec, train, pairs, replicas: int) -> tuple[list, float]:
    go, ready = asyncio.Event(), []
    names = [f"r{k % replicas + 1}" for k in range(len(pairs))]
    tasks = [
        asyncio.create_task(student(hall.url, rec, train, pair, name, go, ready))
        for pair, name in zip(pairs, names, strict=True)
    ]
    while len(ready) < len(tasks):
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    pids = serving_pids(hall.home)
    cpu0 = cpu_of(pids)
    go.set()
    results = await asyncio.gather(*tasks)
    return list(results), cpu_of(pids) - cpu0


def class_set_and_runs(hall: HallProcess):  # type: ignore[no-untyped-def]
    from mnist_demo.class_set import CLASS_SENDS_RANGE, ClassSet
    from mnist_demo.runs import RunRegistry
    from mnist_demo.serve.postgres import LocalPostgres
    from mnist_demo.store import Store

    store = Store(LocalPostgres(hall.home / "hall" / "postgres", hall.postgres_port).url)
    class_set = ClassSet(store)
    from mnist_demo.classroom import OWNER

    class_set.set_sends_cap(CLASS_SENDS_RANGE[1], role=OWNER)
    return store, class_set, RunRegistry(store)


async def measure(args, replicas: int) -> dict:
    from mnist_demo.classroom import OWNER
    from mnist_demo.recipe import TrainConfig

    home = Path(tempfile.mkdtemp(prefix=f"digit-lab-hall-bench-{replicas}-"))
    home.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    hall = HallProcess(home, port=pick_port(0, set()), replicas=replicas)
    t = time.monotonic()
    await asyncio.to_thread(hall.start)
    print(f"\n== {replicas} replica(s): hall up in {time.monotonic() - t:.0f} s at {hall.url}")
    try:
        store, class_set, registry = class_set_and_runs(hall)
        await warm_replicas(hall.url, replicas)
        rec, pairs, train = await record(hall.url, args.students)
        print(f"recorded through the proxy: {len(pairs)} drawings with sends, a Train load")
        rounds = []
        for r in range(-1, args.rounds):  # -1: a warm-up (each replica loads its models)
            class_set.start_new_set(role=OWNER)
            run = None
            if args.live_run:
                run = registry.submit(TrainConfig.for_preset("quick"), role=OWNER)
                await asyncio.to_thread(
                    common.wait_run, registry, run.id, lambda x: x.status == "running", 300
                )
            results, cpu = await one_round(hall, rec, train, pairs, replicas)
            errors = [x["error"] for x in results if x["error"]]
            per = {a: [x[a] for x in results if x.get(a) is not None] for a in ACTIONS}
            done = sum(len(v) for v in per.values())
            status = f"; run {registry.get(run.id).status}" if run is not None else ""
            print(
                (f"round {r + 1}: " if r >= 0 else "warm-up (not counted): ")
                + ", ".join(f"{a} p95 {percentile(per[a], 95):.2f} s" for a in ACTIONS if per[a])
                + f"; serving CPU {cpu:.2f} s for {done} actions; errors {len(errors)}"
                + status
            )
            for e in sorted(set(errors))[:3]:
                print(f"  error: {e}")
            if r >= 0:
                rounds.append({"per": per, "cpu": cpu, "actions": done, "errors": len(errors)})
            if run is not None:
                for queued in queue.waiting(registry) + registry.running():
                    registry.request_stop(queued.id, role=OWNER)
        store.dispose()
    finally:
        await asyncio.to_thread(hall.stop)
        shutil.rmtree(home, ignore_errors=True)
    return {
        "replicas": replicas,
        "per": {a: [v for r in rounds for v in r["per"][a]] for a in ACTIONS},
        "cpu": sum(r["cpu"] for r in rounds),
        "actions": sum(r["actions"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
    }


def report(args, results: list[dict]) -> None:
    cores = os.cpu_count() or 1
    print(
        f"\n{args.students} simulated students per round, {args.rounds} round(s), "
        f"{cores} cores, live run {'on' if args.live_run else 'off'}"
    )
    header = ["replicas", *[f"{a} p50 / p95 / max" for a in ACTIONS], "CPU s/action", "errors"]
    rows = []
    for res in results:
        cpu_per = res["cpu"] / max(res["actions"], 1)
        res["cpu_per"] = cpu_per
        rows.append(
            [str(res["replicas"])]
            + [
                " / ".join(f"{percentile(res['per'][a], q):.2f}" for q in (50, 95, 100)) + " s"
                if res["per"][a]
                else "-"
                for a in ACTIONS
            ]
            + [f"{cpu_per:.3f}", str(res["errors"])]
        )
    common.table(header, rows)
    best = min(results, key=lambda r: r["cpu_per"])
    cpu_per = best["cpu_per"]
    per_student_s = ACTIONS_PER_STUDENT_MIN / 60 * cpu_per  # CPU s per second per student
    per_core = TARGET_UTILISATION / per_student_s if per_student_s else float("inf")
    print(
        f"\ncapacity per core: {per_core:.0f} busy students ({cpu_per:.3f} CPU s per action, "
        f"ASSUMED {ACTIONS_PER_STUDENT_MIN:.0f} actions a minute per student, cores kept "
        f"{TARGET_UTILISATION:.0%} busy)"
    )
    need = HALL_STUDENTS * per_student_s / TARGET_UTILISATION
    app_cores = max(1, math.ceil(need))
    print(
        f"EXTRAPOLATED, {HALL_STUDENTS} students: {need:.1f} cores of app servers -> "
        f"{app_cores} replica(s) of 1 core each (a replica's scripts share one GIL), plus "
        "1-2 cores for PostgreSQL and nginx, plus the Ray workers for training (one run of "
        "MNIST_DEMO_RUN_CPUS at a time each). A straight line from this machine's figures: "
        "not measured at that size."
    )


async def main_async(args) -> None:
    results = [await measure(args, int(r)) for r in args.replicas.split(",")]
    report(args, results)


def main() -> None:
    parser = common.ArgumentParser(__doc__, students=2, rounds=1, replicas="2", live_run=False)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replicas", default="1,2", help="hall sizes to measure, in turn")
    parser.add_argument(
        "--no-live-run", dest="live_run", action="store_false", help="no Quick demo meanwhile"
    )
    args = parser.parse_args()
    common.header(__doc__)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
