"""The class's default experiment: does it reach the lab's result, and is the card's estimate true?

The default experiment (experiments.LAB_EXPERIMENT: the lab's network and recipe, one
epoch on all 60,000 training images, scored on the 10,000 test images) is trained through
the training job as an engine's trainer runs it (submitted, claimed, `training.train_run`
in this process), on the real MNIST, for each seed. Printed: its test accuracy against
the target (>= 98 %, issue 31), its time from claim to end against the default budget,
and the card's estimate (experiments.estimate_seconds, scaled by the runs measured
before it, as the card does) against what each run measured, for the default and a few
other cards a student may set — the estimate's error the README states.

    .venv/bin/python benchmarks/default_experiment.py [--quick] [--seeds 3] [--variants]
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import common
from common import verdict

TARGET = 0.98


def train(cfg, data, home: Path):  # type: ignore[no-untyped-def]
    """One run through the training job; the Run it ended as."""
    from mnist_demo import queue, training
    from mnist_demo.classroom import OWNER
    from mnist_demo.runs import RunRegistry

    registry = RunRegistry(home / "runs.sqlite")
    run = registry.submit(cfg, role=OWNER, lesson_cap=False)
    claimed = queue.claim_next(registry, "default_experiment")
    assert claimed is not None and claimed.id == run.id
    return training.train_run(registry, claimed, data)


def variants():  # type: ignore[no-untyped-def]
    """Cards a student may set, besides the default: smaller, wider, longer."""
    from mnist_demo import experiments
    from mnist_demo.recipe import Network

    lab = experiments.LAB_EXPERIMENT
    return {
        "half the images": replace(lab, train_size=30_000),
        "conv 2 kernel 5x5": replace(lab, network=Network(conv2_kernel=5)),
        "64/128 filters": replace(lab, network=Network(conv1_filters=64, conv2_filters=128)),
        "2 epochs of 20,000": replace(lab, epochs=2, train_size=20_000),
    }


def main() -> None:
    from mnist_demo import experiments

    parser = common.ArgumentParser(__doc__, seeds=1)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 7, 8, ... of the default")
    parser.add_argument(
        "--variants", action="store_true", help="also check the estimate on other cards"
    )
    args = parser.parse_args()
    common.header(__doc__)
    data = common.mnist()
    budget = experiments.ClassLimits().budget_minutes * 60
    lab = experiments.LAB_EXPERIMENT
    print(
        f"the default: {lab.epochs} epoch(s) of {lab.train_size:,} images, batch "
        f"{lab.batch_size}, Adam {lab.learning_rate:g}; the default budget {budget:.0f} s"
    )
    measured = []  # finished runs so far: what the card's estimate scales by
    rows = []
    cards = [(f"default, seed {7 + i}", replace(lab, seed=7 + i)) for i in range(args.seeds)]
    if args.variants:
        cards += list(variants().items())
    with tempfile.TemporaryDirectory(prefix="digit-lab-default-") as tmp:
        for name, cfg in cards:
            estimate = experiments.estimate_seconds(cfg, measured[::-1])  # newest first
            t = time.perf_counter()
            run = train(cfg, data, Path(tmp) / name.replace(" ", "-").replace(",", ""))
            wall = time.perf_counter() - t
            took = run.duration_s or wall
            rows.append((name, cfg, run, estimate, took))
            print(
                f"  {name:22s} {run.status:8s} test accuracy {run.test_accuracy or 0:.2%} "
                f"({run.misclassified} wrong), {took:.1f} s claim -> end; estimate "
                f"{estimate:.1f} s ({(estimate - took) / took:+.0%})"
            )
            measured.append(run)
    defaults = [r for r in rows if r[0].startswith("default")]
    accuracies = [r[2].test_accuracy or 0.0 for r in defaults]
    times = [r[4] for r in defaults]
    errors = [abs(r[3] - r[4]) / r[4] for r in rows[1:]]  # the first had nothing to scale by
    print(
        f"\nthe default's time: {common.spread(times, digits=1)}; within the default "
        f"budget of {budget:.0f} s {verdict(max(times) <= budget)}"
    )
    if errors:
        print(f"the card's estimate against each measured run (after the first): "
              f"{common.spread([e * 100 for e in errors], unit='%', digits=0)}")  # fmt: skip
    print(
        f"the class's default experiment on MNIST's test set: worst of {len(accuracies)} "
        f"{min(accuracies):.2%}, target >= {TARGET:.0%} {verdict(min(accuracies) >= TARGET)}"
    )


if __name__ == "__main__":
    main()
