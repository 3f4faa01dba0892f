"""The training engine against one process: what Ray costs a run, a demo and a server.

Side by side in one run, every engine a real one started here (`python -m mnist_demo
engine`, its own local Ray head, in a temporary MNIST_DEMO_HOME; common.Engine), every
process it made stopped by pid at the end:

(b) Quick demo (`recipe.QUICK_DEMO`: one epoch of the quick preset) from submit (what a
    click does: `RunRegistry.submit`) to its first live point in the store (what every
    page reads; the page's own poll adds up to 0.2 s) and to its result recorded:
    - in-process: `training.train_run` on a thread of this process (what a web server
      did before the engine: its own thread, no queue), this process polling the store;
    - cold engine: the first run, submitted the moment the engine's heartbeat is in the
      store (its trainer may still be importing TensorFlow and loading MNIST; the time
      from the engine's start is printed too);
    - warm engine: the next runs, each 5 s after the last ended (the idle trainer has
      its Quick demo model built and traced by then: training.Spare);
    with the README's in-process figures from before the engine beside them.
(a) Lab 7 epoch (the lab's recipe, one epoch; validation on the test images):
    through the engine, submit -> finished (the trainer claims it, trains, validates,
    checkpoints and records it), against a plain `model.fit(validation_data=...)` of the
    same subset in this process (subset, scaling, one-hot, build and fit timed),
    interleaved (plain, engine, plain, ...). Target: plain/engine time, i.e. engine
    samples/s over plain, >= 0.95. An untimed plain warm-up fit comes first; the
    engine's trainer is warm from (b).
(c) Server: `streamlit run streamlit_app.py` serving Home to one Chromium, without an
    engine (as before) and with one started at the same moment (as `serve` does): time
    from launch to Home rendered (and to the engine running), the server's RSS, the
    engine's (supervisor, Ray's own processes, the trainer) at that moment and once
    warm (after (a) and (b)).

Prints figures, asserts nothing. Timings on a shared machine are only indicative.

    .venv/bin/python benchmarks/engine.py [--quick] [--rounds 3] [--lab-train-size 60000]
        [--quick-train-size 60000] [--test-size 10000]
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import common
from common import fmt, verdict

TARGET_RATIO = 0.95
IDLE_BEFORE_CLICK_S = 5.0  # a warm engine sits idle this long before the next demo
TARGET_WARM_FIRST_POINT_S = 2.0  # issue 24: first live point within 2 s on a warm engine
# In-process figures from the README before the engine (commit 503d904), Quick demo on
# 60,000 images: start -> last batch 12.6 s (median of 5), last batch -> result 1.0 s;
# cold start `streamlit run` -> Home rendered 5.7 s; the server's RSS about 860 MB.
BEFORE_LAST_BATCH_S = 12.6
BEFORE_RESULT_S = 13.6
BEFORE_HOME_S = 5.7
BEFORE_SERVER_MB = 860
MB = 2**20


# --- following a run in the store ---------------------------------------------------------


def follow(registry, run_id: int, t0: float, every: float = 0.02) -> dict:  # type: ignore[no-untyped-def]
    """Seconds from t0 (perf_counter) to the run claimed, its first live point in the
    store and its end; polls the store every `every` s until it ends."""
    out: dict = {"claimed": None, "first_point": None, "result": None}
    while True:
        run = registry.get(run_id)
        now = time.perf_counter() - t0
        if out["claimed"] is None and run.status != "queued":
            out["claimed"] = now
        if out["first_point"] is None and registry.points(run_id, after_seq=-1)[:1]:
            out["first_point"] = now
        if run.ended:
            out["result"] = now
            out["run"] = run
            if run.status != "finished":
                print(f"  run {run_id} {run.status}: {run.error}")
            return out
        time.sleep(every)


def submit(registry, cfg):  # type: ignore[no-untyped-def]
    from mnist_demo.classroom import OWNER

    return registry.submit(cfg, role=OWNER, lesson_cap=False)


def in_process(cfg, data, home: Path) -> dict:  # type: ignore[no-untyped-def]
    """The Quick demo as a server ran it before the engine: train_run on a thread here."""
    from mnist_demo import queue
    from mnist_demo.runs import RunRegistry
    from mnist_demo.training import train_run

    registry = RunRegistry(home / "runs.sqlite")
    t0 = time.perf_counter()
    run = submit(registry, cfg)
    claimed = queue.claim_next(registry, "in-process")
    job = threading.Thread(target=train_run, args=(registry, claimed, data), daemon=True)
    job.start()
    out = follow(registry, run.id, t0)
    job.join()
    return out


# --- (a) Lab 7 epoch ---------------------------------------------------------------------


def plain_fit(cfg, data) -> float:  # type: ignore[no-untyped-def]
    """Seconds of the same epoch with a plain model.fit in this process."""
    import keras

    from mnist_demo.data import one_hot, to_model_input
    from mnist_demo.model import build_model
    from mnist_demo.training import select_subset

    (x_train, y_train), (x_test, y_test) = data
    start = time.perf_counter()
    x, y = select_subset(x_train, y_train, cfg.train_size, cfg.seed)
    xv, yv = select_subset(x_test, y_test, cfg.test_size, cfg.seed)
    steps = cfg.epochs * -(-len(x) // cfg.batch_size)
    model = build_model(cfg.preset, cfg.learning_rate, cfg.seed, total_steps=steps)
    model.fit(
        to_model_input(x),
        one_hot(y),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        validation_data=(to_model_input(xv), one_hot(yv)),
        shuffle=True,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    del model
    keras.backend.clear_session()
    return seconds


def warm_up(data) -> None:  # type: ignore[no-untyped-def]
    from mnist_demo.recipe import TrainConfig

    t = time.perf_counter()
    plain_fit(TrainConfig.for_preset("lab7", epochs=1, train_size=512, test_size=256), data)
    print(f"warm-up fit in this process (512 images, untimed): {time.perf_counter() - t:.1f} s")


# --- (c) the server, with and without the engine --------------------------------------------


def engine_parts(eng: common.Engine) -> dict[str, int]:
    """RSS of the engine's processes: supervisor, trainer(s), Ray's own."""
    parts = {"supervisor": 0, "trainer": 0, "ray": 0}
    for pid in eng.pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        rss = common.rss_bytes(pid)
        if eng.proc is not None and pid == eng.proc.pid:
            parts["supervisor"] += rss
        elif b"Trainer" in cmd or b"trainer-" in cmd:
            parts["trainer"] += rss
        else:
            parts["ray"] += rss
    return parts


async def serve_home(tmp: Path, name: str, with_engine: bool) -> dict:
    """Launch a server (and an engine) on a fresh home; Chromium opens Home."""
    import page_load  # "Home rendered": the same markers as the page-load benchmark

    from tools.app_server import AppServer

    home = tmp / name
    out: dict = {}
    eng = common.Engine(home) if with_engine else None
    server = AppServer(home)
    try:
        async with common.chromium() as browser:
            context, page = await common.new_page(browser)
            if eng is not None:
                eng.start(wait=False)
            server.start(wait_healthy=False)
            await asyncio.to_thread(server.wait_healthy)
            await page.goto(server.url + "/", timeout=page_load.TIMEOUT_MS)
            for locator in page_load.markers(page, "Home"):
                await locator.wait_for(state="visible", timeout=page_load.TIMEOUT_MS)
            out["home_s"] = time.monotonic() - server.started_at
            out["server_rss"] = common.tree_rss_bytes(server.pid)
            if eng is not None:
                out["engine_s"] = await asyncio.to_thread(eng.wait_running)
                out["engine_parts"] = engine_parts(eng)
            await context.close()
    finally:
        server.stop()
        if eng is not None:
            killed = eng.stop()
            if killed:
                print(f"  {name}: {len(killed)} engine process(es) had to be killed: {killed}")
    return out


# --- the run -------------------------------------------------------------------------------


def run_all(args) -> dict:  # type: ignore[no-untyped-def]
    from mnist_demo.recipe import QUICK_DEMO, TrainConfig

    data = common.mnist()
    quick = replace(QUICK_DEMO, train_size=args.quick_train_size, test_size=args.test_size)
    lab = TrainConfig.for_preset(
        "lab7", epochs=1, train_size=args.lab_train_size, test_size=args.test_size
    )
    res: dict = {"warm": [], "plain": [], "engine": [], "engine_train": []}
    with tempfile.TemporaryDirectory(prefix="digit-lab-engine-") as tmp:
        tmp_path = Path(tmp)
        warm_up(data)
        res["in_process"] = in_process(quick, data, tmp_path / "in-process")
        show("quick, in-process", res["in_process"])

        with common.engine(tmp_path / "engine") as eng:
            print(f"engine running {eng.ready_s:.1f} s after its start")
            res["engine_ready"] = eng.ready_s
            res["submitted_after_start"] = time.monotonic() - eng.started_at
            t0 = time.perf_counter()
            res["cold"] = follow(eng.registry, submit(eng.registry, quick).id, t0)
            show("quick, cold engine", res["cold"])
            for i in range(args.rounds):
                # a click comes after a while: the idle trainer has made its spare
                time.sleep(IDLE_BEFORE_CLICK_S)
                t0 = time.perf_counter()
                res["warm"].append(follow(eng.registry, submit(eng.registry, quick).id, t0))
                show(f"quick, warm engine {i + 1}", res["warm"][-1])
            for i in range(args.rounds):
                res["plain"].append(plain_fit(lab, data))
                t0 = time.perf_counter()
                done = follow(eng.registry, submit(eng.registry, lab).id, t0, every=0.1)
                run = done["run"]
                res["engine"].append(done["result"])
                res["engine_train"].append((run.finished_at or 0) - (run.started_at or 0))
                print(
                    f"  lab7 epoch {i + 1}: plain {res['plain'][-1]:.2f} s, engine "
                    f"{done['result']:.2f} s (in the worker {res['engine_train'][-1]:.2f} s; "
                    f"val {run.test_accuracy}), ratio {res['plain'][-1] / done['result']:.3f}"
                )
            res["engine_warm_parts"] = engine_parts(eng)
        for with_engine in (False, True):
            name = "with-engine" if with_engine else "alone"
            res[name] = []
            for i in range(args.server_rounds):
                try:
                    res[name].append(asyncio.run(serve_home(tmp_path, f"{name}-{i}", with_engine)))
                except Exception as e:  # a busy machine: report what was measured
                    print(f"  server {name} {i + 1}: FAILED ({type(e).__name__}: {e})"[:400])
            for r in res[name]:
                print(
                    f"  server {name}: Home rendered {r['home_s']:.2f} s, server RSS "
                    f"{r['server_rss'] / MB:.0f} MB"
                    + (
                        f"; engine running {r['engine_s']:.2f} s, engine RSS "
                        f"{sum(r['engine_parts'].values()) / MB:.0f} MB"
                        if with_engine
                        else ""
                    )
                )
    return res


def show(name: str, r: dict) -> None:
    print(
        f"  {name}: claimed {r['claimed']:.2f} s, first live point {r['first_point']:.2f} s, "
        f"result {r['result']:.2f} s after submit (test accuracy {r['run'].test_accuracy})"
    )


def report(args, res: dict) -> None:  # type: ignore[no-untyped-def]
    def cell(values: list[float | None]) -> str:
        v = [x for x in values if x is not None]
        return f"{common.stats(v)[0]:.2f} s" if v else "-"

    print()
    print(f"(b) Quick demo ({args.quick_train_size:,} images), seconds after submit (medians)")
    rows = []
    for name, runs in (
        ("in-process (train_run on a thread here)", [res["in_process"]]),
        ("cold engine (first run after its start)", [res["cold"]]),
        (f"warm engine ({len(res['warm'])} runs)", res["warm"]),
    ):
        rows.append(
            [
                name,
                cell([r["claimed"] for r in runs]),
                cell([r["first_point"] for r in runs]),
                cell([r["result"] for r in runs]),
            ]
        )
    rows.append(
        [
            "README before the engine (60k, in-process)",
            "-",
            "-",
            f"{BEFORE_RESULT_S:.1f} s (last batch {BEFORE_LAST_BATCH_S:.1f} s)",
        ]
    )
    common.table(["", "claimed", "first point", "result"], rows)
    print(
        f"  cold engine: its start -> heartbeat in the store {res['engine_ready']:.1f} s, -> "
        f"the demo's first live point "
        f"{res['submitted_after_start'] + res['cold']['first_point']:.1f} s"
    )
    warm_first = [r["first_point"] for r in res["warm"] if r["first_point"] is not None]
    med_first = common.stats(warm_first)[0] if warm_first else float("inf")
    print(
        f"  target warm engine, submit -> first live point <= {TARGET_WARM_FIRST_POINT_S:.0f} s "
        f"(the page's poll adds <= 0.2 s): {med_first:.2f} s, "
        f"{verdict(med_first <= TARGET_WARM_FIRST_POINT_S)}"
    )

    print()
    ratios = [p / e for p, e in zip(res["plain"], res["engine"], strict=True)]
    print(
        f"(a) Lab 7, one epoch of {args.lab_train_size:,} images, validation on {args.test_size:,}"
    )
    print(f"  plain model.fit here          {fmt(res['plain'], 's')}")
    print(f"  engine, submit -> finished    {fmt(res['engine'], 's')}")
    print(f"  engine, in the worker         {fmt(res['engine_train'], 's')} (claimed -> recorded)")
    ratio = common.stats(ratios)[0]
    print(
        f"  target plain/engine (samples/s engine over plain) >= {TARGET_RATIO}: "
        f"{ratio:.3f} median (per pair {', '.join(f'{r:.3f}' for r in ratios)}), "
        f"{verdict(ratio >= TARGET_RATIO)}"
    )

    print()
    print("(c) the server serving Home in Chromium, launched alone / with an engine at once")
    alone, both = res["alone"], res["with-engine"]
    if not alone or not both:
        print("  no figures: a server did not render Home (see above)")
        alone = alone or [{"home_s": float("nan"), "server_rss": float("nan")}]
        both = both or [
            {"home_s": float("nan"), "server_rss": float("nan"), "engine_s": float("nan"),
             "engine_parts": {"nan": float("nan")}}
        ]  # fmt: skip
    home_alone = [r["home_s"] for r in alone]
    home_both = [r["home_s"] for r in both]
    print(f"  launch -> Home rendered, alone:       {fmt(home_alone, 's')} (README before: "
          f"{BEFORE_HOME_S} s)")  # fmt: skip
    print(f"  launch -> Home rendered, with engine: {fmt(home_both, 's')}")
    print(f"  launch -> engine running:             {fmt([r['engine_s'] for r in both], 's')}")
    server_alone = [r["server_rss"] / MB for r in alone]
    server_both = [r["server_rss"] / MB for r in both]
    engine_at_home = [sum(r["engine_parts"].values()) / MB for r in both]
    print(
        f"  server RSS alone {fmt(server_alone, 'MB', 0)}; with the engine "
        f"{fmt(server_both, 'MB', 0)} (README before: about {BEFORE_SERVER_MB} MB)"
    )
    parts = res["engine_warm_parts"]
    print(
        f"  engine RSS when Home rendered {fmt(engine_at_home, 'MB', 0)}; once warm (after its "
        f"runs) {sum(parts.values()) / MB:.0f} MB: trainer {parts['trainer'] / MB:.0f}, Ray's "
        f"own processes {parts['ray'] / MB:.0f}, supervisor {parts['supervisor'] / MB:.0f}"
    )
    total = common.stats(server_both)[0] + sum(parts.values()) / MB
    print(
        f"  server + warm engine {total:.0f} MB against the server alone "
        f"{common.stats(server_alone)[0]:.0f} MB"
    )
    print()
    print(
        f"engine overhead, target plain/engine >= {TARGET_RATIO}: {ratio:.3f}, "
        f"{verdict(ratio >= TARGET_RATIO)}"
    )


def main() -> None:
    parser = common.ArgumentParser(
        __doc__, rounds=1, server_rounds=1, lab_train_size=2000, quick_train_size=3000,
        test_size=500,
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="warm demos and Lab 7 pairs")
    parser.add_argument("--server-rounds", type=int, default=2, help="servers of each kind")
    parser.add_argument("--lab-train-size", type=int, default=60000)
    parser.add_argument("--quick-train-size", type=int, default=60000)
    parser.add_argument("--test-size", type=int, default=10000)
    args = parser.parse_args()
    common.header(__doc__)
    common.no_engine_from_servers()
    report(args, run_all(args))


if __name__ == "__main__":
    main()
