"""Experiments capacity: 30 students submit the class's default experiment at once.

A real engine (`python -m mnist_demo engine`, its own local Ray head, a temporary
MNIST_DEMO_HOME; common.Engine) takes `--students` experiments submitted at the same
moment from as many student identities (`experiments.submit` with
`experiments.LAB_EXPERIMENT`: the lab's network, DEFAULT_EPOCHS epoch(s) of
DEFAULT_TRAIN_SIZE images, scored on the 10,000 test images). Each student submits a
second experiment the moment their first ends (`--rounds 2`), as an eager student
would, so the round-robin is put to the test. Printed:

- the time from the submits until every first experiment has finished (the target: 30
  within 10 minutes on this machine, issue 25), and until the last of all finished;
- each student's wait (submit -> their first experiment started), spread and worst;
- fairness: no student's second experiment started before every student's first had;
- the card's estimate (experiments.estimate_seconds) against each measured run.

Then the same class with one more person who opened `--cookies` fresh browsers (8
cookies, 8 seats, one address) and submitted from each: the queue shares turns by
address group (queue.py), so the other students' waits should be those of the plain
class, and the cookie person's extra experiments should start only after every other
student's first. Each student submits from an address of their own (10.0.x.y).

`--nodes 2` adds a second Ray node on this machine (`ray start --address=<the head>
--num-cpus N`, with the engine's auth token), standing in for a second machine: the
engine sees the CPUs and starts a second trainer. On a 2-core laptop that node has no
cores of its own, so the figures show what the queue does with two trainers, not what
a real second machine adds.

    .venv/bin/python benchmarks/experiments_capacity.py [--quick] [--students 30]
        [--rounds 2] [--nodes 1] [--node-cpus 2] [--train-size N] [--epochs N]
        [--cookies 8]
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import common
from common import spread, verdict

TARGET_S = 600.0  # 30 experiments within 10 minutes (issue 25)
POLL_S = 0.2


@contextlib.contextmanager
def second_node(home: Path, address: str, cpus: int) -> Iterator[subprocess.Popen]:
    """`ray start --block` joining the engine's head as a worker node, in its own
    process group, stopped by that group's id."""
    from mnist_demo.serve import engine

    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(engine.token_path(home)),
    }
    log = (home / "ray-node-2.log").open("ab")
    cmd = [
        str(Path(sys.executable).with_name("ray")), "start", "--block",
        "--address", address, "--num-cpus", str(cpus),
        "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_capacity(eng: common.Engine, want: int, timeout: float = 180) -> int:
    from mnist_demo.serve import engine

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        capacity = engine.status(eng.registry.store).capacity
        if capacity >= want:
            return capacity
        time.sleep(0.5)
    return engine.status(eng.registry.store).capacity


def wait_warm(eng: common.Engine, timeout: float = 300) -> None:
    """One untimed tiny run first, so every trainer has loaded TensorFlow and MNIST (a
    lesson's engine is warm long before thirty students press Submit)."""
    from mnist_demo import experiments
    from mnist_demo.classroom import Role

    reg = eng.registry
    cfg = replace(experiments.LAB_EXPERIMENT, train_size=500, test_size=500)
    ids = [reg.submit(cfg, role=Role.INSTRUCTOR).id for _ in range(capacity_of(eng))]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(reg.get(i).ended for i in ids):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"the warm-up runs did not end in {timeout:.0f} s: {eng.log_tail()}")


def capacity_of(eng: common.Engine) -> int:
    from mnist_demo.serve import engine

    return max(1, engine.status(eng.registry.store).capacity)


def run_class(  # type: ignore[no-untyped-def]
    eng: common.Engine,
    students: int,
    rounds: int,
    cfg,
    timeout: float,
    cookies: int = 0,
    cohort: int = 0,
) -> dict:
    """Submit one experiment per student at once (each from an address of their own, and
    `cookies` more seats from one address, submitted last); resubmit on each end until
    `rounds`. `cohort`: another class of new people (new seats, new addresses) on the
    same engine."""
    from mnist_demo import experiments

    reg = eng.registry
    ids = [f"{cohort:04x}{i:012x}" for i in range(1, students + 1)]
    laptop = [f"{cohort:04x}{0xC0C0 + i:012x}" for i in range(cookies)]
    network = {s: f"10.{cohort}.{i // 250}.{i % 250 + 1}" for i, s in enumerate(ids)}
    network.update({s: f"10.{cohort}.255.1" for s in laptop})  # one laptop
    ids += laptop
    t0 = time.time()
    runs: dict[str, list[int]] = {
        s: [experiments.submit(reg, s, cfg, network=network[s]).id] for s in ids
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        by_id = {r.id: r for r in reg.list_runs()}
        pending = False
        for s in ids:
            last = by_id[runs[s][-1]]
            if not last.ended:
                pending = True
            elif len(runs[s]) < rounds:
                runs[s].append(experiments.submit(reg, s, cfg, network=network[s]).id)
                pending = True
        if not pending:
            break
        time.sleep(POLL_S)
    else:
        raise RuntimeError(f"the class did not finish in {timeout:.0f} s: {eng.log_tail()}")
    by_id = {r.id: r for r in reg.list_runs()}
    firsts = [by_id[runs[s][0]] for s in ids]
    seconds = [by_id[i] for s in ids for i in runs[s][1:2]]
    return {
        "t0": t0,
        "firsts": firsts,
        "seconds": seconds,
        "all": [by_id[i] for s in ids for i in runs[s]],
        "laptop": [by_id[runs[s][0]] for s in laptop],
        "people": [by_id[runs[s][0]] for s in ids if s not in laptop],
    }


def report(result: dict, nodes: int, capacity: int, estimate: float) -> float:
    t0, firsts, seconds = result["t0"], result["firsts"], result["seconds"]
    statuses = {r.status for r in result["all"]}
    first_done = max(r.finished_at for r in firsts) - t0
    all_done = max(r.finished_at for r in result["all"]) - t0
    waits = [r.started_at - t0 for r in firsts]
    trains = [r.duration_s for r in firsts]
    last_first_start = max(r.started_at for r in firsts)
    early = [r for r in seconds if r.started_at < last_first_start]
    print(f"\n{nodes} Ray node(s), {capacity} trainer(s) at a time; statuses {sorted(statuses)}")
    print(f"  every first experiment finished: {first_done:.1f} s after the submits")
    print(f"  everything finished ({len(result['all'])} experiments): {all_done:.1f} s")
    print(f"  each student's wait (submit -> start): {spread(waits, digits=1)}")
    print(f"  one experiment, start -> end: {spread(trains, digits=1)}")
    errors = [(estimate - t) / t * 100 for t in trains]
    print(f"  the card's estimate {estimate:.1f} s against each: {spread(errors, '%', 0)}")
    if result["laptop"]:
        laptop, people = result["laptop"], result["people"]
        people_waits = [r.started_at - t0 for r in people]
        laptop_waits = sorted(r.started_at - t0 for r in laptop)
        last_person = max(r.started_at for r in people)
        ahead = sum(r.started_at < last_person for r in laptop)
        print(
            f"  {len(laptop)} cookies from one address: their starts "
            f"{', '.join(f'{w:.0f}' for w in laptop_waits)} s; {ahead} started before "
            f"every other student's first — target 1 (one person's turn) {verdict(ahead <= 1)}"
        )
        print(f"  the other students' waits beside them: {spread(people_waits, digits=1)}")
    print(
        f"  fairness: {len(early)} second experiment(s) started before every student's "
        f"first had — target 0 {verdict(not early)}"
    )
    return first_done


def main() -> None:
    from mnist_demo import experiments
    from mnist_demo.classroom import Role

    parser = common.ArgumentParser(
        __doc__, students=3, rounds=2, train_size=500, test_size=500, epochs=1, cookies=2
    )
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="experiments per student")
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 2))
    parser.add_argument("--node-cpus", type=int, default=2, help="CPUs of the second node")
    parser.add_argument("--train-size", type=int, default=experiments.DEFAULT_TRAIN_SIZE)
    parser.add_argument("--test-size", type=int, default=experiments.LAB_EXPERIMENT.test_size)
    parser.add_argument("--epochs", type=int, default=experiments.DEFAULT_EPOCHS)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--cookies", type=int, default=8, help="then the class again with one person's N cookies"
    )
    args = parser.parse_args()
    common.header(__doc__)
    cfg = replace(
        experiments.LAB_EXPERIMENT,
        train_size=args.train_size,
        test_size=args.test_size,
        epochs=args.epochs,
    )
    print(
        f"{args.students} students x {args.rounds} experiment(s): the lab's network, "
        f"{cfg.epochs} epoch(s) of {cfg.train_size:,} images, scored on {cfg.test_size:,}; "
        f"estimate {experiments.estimate_seconds(cfg):.1f} s each"
    )
    with tempfile.TemporaryDirectory(prefix="digit-lab-capacity-") as tmp:
        home = Path(tmp) / "home"
        with common.engine(home) as eng:
            capacity = capacity_of(eng)
            with contextlib.ExitStack() as stack:
                if args.nodes == 2:
                    from mnist_demo.serve import engine

                    address = engine.status(eng.registry.store).address
                    stack.enter_context(second_node(home, address, args.node_cpus))
                    capacity = wait_capacity(eng, capacity + 1)
                wait_warm(eng)
                experiments.set_limits(
                    eng.registry,
                    experiments.ClassLimits(
                        max_epochs=max(cfg.epochs, 1),
                        max_train_images=max(cfg.train_size, 500),
                        budget_minutes=experiments.BUDGET_MINUTES_RANGE[1],
                    ),
                    role=Role.INSTRUCTOR,
                )
                # the card's estimate, scaled by this engine's warm-up run as a card is
                estimate = experiments.estimate_seconds(cfg, eng.registry.list_runs())
                result = run_class(eng, args.students, args.rounds, cfg, args.timeout)
                first_done = report(result, args.nodes, capacity, estimate)
                if args.cookies:
                    print(f"\nthe same class with one more person's {args.cookies} cookies:")
                    with_cookies = run_class(
                        eng, args.students, 1, cfg, args.timeout, args.cookies, cohort=1
                    )
                    report(with_cookies, args.nodes, capacity, estimate)
    n = args.students
    per = first_done / n
    print(
        f"\ntarget {n} first experiments within {TARGET_S / 60:.0f} min: {first_done:.0f} s "
        f"{verdict(first_done <= TARGET_S)} ({per:.1f} s per experiment through the queue)"
    )


if __name__ == "__main__":
    main()
