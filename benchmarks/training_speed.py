"""How fast can Lab 7 train on this machine, and which knobs help?

Each variant trains `build_model("lab7", seed=7)` for one epoch on the full 60,000
training images (batch 128, Adam 1e-3) in a fresh subprocess, so no run inherits
another's traced graphs or Keras policy:

- baseline:      numpy arrays into `model.fit(x, y, shuffle=True)`, what TrainingJob does
- spe:4          `compile(..., steps_per_execution=4)`: four batches per call into
                 TensorFlow (the app's engine uses this; baseline here is 1)
- bf16           Keras's `mixed_bfloat16` policy (these cores have AVX-512 BF16): layers
                 compute in bfloat16, weights stay float32

Variants combine with "+", e.g. `--variants baseline spe:4+bf16`. Every variant carries
the same tiny timing callback (a clock read per batch; the app's TrainingJob has a
per-batch callback too). Rounds are interleaved (baseline, spe:4, ..., baseline, ...).
Per run: the epoch's wall time (the first epoch, so it includes tracing), the steady
per-step time (median from step 20 on), and the test accuracy afterwards (all 10,000,
`evaluation.evaluate`). A variant must not change results materially: its test
accuracy within +-0.3 points of baseline's.

Prints figures, asserts nothing. Target: a variant is worth taking if it is >= 10 %
faster per epoch than baseline with accuracy within +-0.3 points.

    .venv/bin/python benchmarks/training_speed.py [--quick] [--repeats 2] [--epochs 1]
"""

from __future__ import annotations

import argparse
import itertools
import time

import common
from common import fmt, stats, verdict

from mnist_demo.data import TRAIN_SIZE
from mnist_demo.recipe import LAB_BATCH_SIZE, LAB_LEARNING_RATE, LAB_SEED

DEFAULT_VARIANTS = ["baseline", "spe:4", "bf16"]
ACCURACY_TOLERANCE_POINTS = 0.3
WORTH_IT_SPEEDUP = 1.10
STEADY_FROM_STEP = 20


# --- one variant, in a child process ----------------------------------------------------


def parse_variant(spec: str) -> dict:
    """'spe:4+bf16' -> {'spe': 4, 'bf16': True}."""
    out: dict = {"spe": 1, "bf16": False}
    for part in spec.split("+"):
        if part == "bf16":
            out["bf16"] = True
        elif part.startswith("spe:"):
            out["spe"] = int(part.split(":")[1])
        elif part != "baseline":
            raise SystemExit(f"unknown variant part {part!r} in {spec!r}")
    return out


def child(spec: str, args: argparse.Namespace) -> None:
    v = parse_variant(spec)
    import keras

    class Clock(keras.callbacks.Callback):
        """The first epoch's wall time and a clock read after each of its batches."""

        def __init__(self) -> None:
            super().__init__()
            self.batch_ends: list[float] = []
            self.epoch1_s = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 0:
                self.batch_ends.append(time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            if not self.epoch1_s:
                self.batch_ends.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.epoch1_s = time.perf_counter() - self.batch_ends[0]

    from mnist_demo.data import one_hot, to_model_input
    from mnist_demo.evaluation import evaluate
    from mnist_demo.model import build_model
    from mnist_demo.training import select_subset

    (x_train, y_train), (x_test, y_test) = common.mnist()
    x_train, y_train = select_subset(x_train, y_train, args.train_size, args.seed)
    x, y = to_model_input(x_train), one_hot(y_train)
    if v["bf16"]:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model("lab7", seed=args.seed, compile=False)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LAB_LEARNING_RATE),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=v["spe"],
    )
    clock = Clock()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0,
              callbacks=[clock])  # fmt: skip
    # with steps_per_execution the clock is read once per execution of `spe` batches
    spe = v["spe"]
    steps = [(b - a) / spe for a, b in itertools.pairwise(clock.batch_ends)]
    steady = sorted(steps[STEADY_FROM_STEP // spe :] or steps)
    common.child_result(
        {
            "epoch1_s": clock.epoch1_s,
            "step_ms": 1000 * steady[len(steady) // 2],
            "test_accuracy": evaluate(model, x_test, y_test).accuracy,
        }
    )


# --- the parent: interleave, tabulate -----------------------------------------------------


def run_rounds(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Every variant's runs, rounds interleaved; prints each run as it ends."""
    options = ["--epochs", str(args.epochs), "--train-size", str(args.train_size),
               "--batch-size", str(args.batch_size), "--seed", str(args.seed)]  # fmt: skip
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for r in range(args.repeats):
        for spec in args.variants:
            res = common.run_child(__file__, spec, *options)
            if res is not None:
                results[spec].append(res)
                print(
                    f"  round {r + 1} {spec:<14} epoch 1 {res['epoch1_s']:6.2f} s, steady "
                    f"{res['step_ms']:6.1f} ms/step, test acc {res['test_accuracy']:.4f}, "
                    f"process {res['wall_s']:.1f} s"
                )
    return results


def report(results: dict[str, list[dict]], epochs: int) -> None:
    base = results["baseline"]
    if not base:
        print("baseline failed: no table")
        return
    base_epoch, _, _ = stats([res["epoch1_s"] for res in base])
    base_step, _, _ = stats([res["step_ms"] for res in base])
    base_acc, _, _ = stats([res["test_accuracy"] for res in base])
    print()
    print(
        "before/after, medians over rounds (epoch 1 includes tracing; speed-up = baseline "
        "time / variant time; 'steady' compares ms/step)"
    )
    rows, checks = [], {}
    for spec, runs in results.items():
        if not runs:
            rows.append([spec, "failed"])
            continue
        med, lo, hi = stats([res["epoch1_s"] for res in runs])
        step, _, _ = stats([res["step_ms"] for res in runs])
        delta = 100 * (stats([res["test_accuracy"] for res in runs])[0] - base_acc)
        same, speedup = abs(delta) <= ACCURACY_TOLERANCE_POINTS, base_epoch / med
        if spec != "baseline":
            checks[spec] = (same, speedup)
        word = (
            "reference"
            if spec == "baseline"
            else "changes results"
            if not same
            else "worth it"
            if speedup >= WORTH_IT_SPEEDUP
            else "not worth it"
        )
        rows.append(
            [spec, f"{med:.2f}", f"({lo:.1f}-{hi:.1f})", f"{step:.1f}", f"{speedup:.2f}x",
             f"{base_step / step:.2f}x", f"{delta:+.2f}", word]
        )  # fmt: skip
    common.table(
        ["variant", "epoch 1 s", "(min-max)", "ms/step", "speed-up", "steady", "Δ pts", "verdict"],
        rows,
    )
    print()
    print(f"baseline epoch 1: {fmt([res['epoch1_s'] for res in base], 's')}")
    print(
        f"target, results unchanged (test accuracy within ±{ACCURACY_TOLERANCE_POINTS} points "
        f"of baseline's {100 * base_acc:.2f} % after {epochs} epoch(s)): "
        + ", ".join(f"{spec} {verdict(ok)}" for spec, (ok, _) in checks.items())
    )
    faster = [spec for spec, (ok, up) in checks.items() if ok and up >= WORTH_IT_SPEEDUP]
    print(
        f"target, a variant >= {WORTH_IT_SPEEDUP:.2f}x faster per epoch with results unchanged: "
        f"{verdict(bool(faster))}" + (f" ({', '.join(faster)})" if faster else "")
    )


def main() -> None:
    parser = common.ArgumentParser(__doc__, repeats=1, train_size=10 * LAB_BATCH_SIZE)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of all variants")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1)")
    parser.add_argument("--train-size", type=int, default=TRAIN_SIZE)
    parser.add_argument("--batch-size", type=int, default=LAB_BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=LAB_SEED)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args)
    if "baseline" not in args.variants:
        args.variants = ["baseline", *args.variants]
    common.header(__doc__)
    print(
        f"lab7, {args.train_size:,} training images, batch {args.batch_size}, "
        f"{args.epochs} epoch(s) per run, {args.repeats} round(s), one subprocess per run"
    )
    report(run_rounds(args), args.epochs)


if __name__ == "__main__":
    main()
