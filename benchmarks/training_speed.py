"""How fast can Lab 7 train on this machine, and which knobs help?

Each variant trains `build_model("lab7", seed=7)` for one epoch on the full 60,000
training images (batch 128, Adam 1e-3) in a fresh subprocess, because TensorFlow's
thread settings only take effect before TensorFlow initialises:

- baseline:      numpy arrays into `model.fit(x, y, shuffle=True)`, what TrainingJob does
- jit:           the same with `compile(..., jit_compile=True)` (XLA)
- tfdata:        `tf.data`: from_tensor_slices + shuffle + batch + prefetch(AUTOTUNE)
- threads:2:1    `tf.config.threading` intra-op 2, inter-op 1 (TF's default is 0 = auto)
- spe:4          `compile(..., steps_per_execution=4)`: four batches per call into
                 TensorFlow (the app's engine uses this; baseline here is 1)
- bf16           Keras's `mixed_bfloat16` policy (these cores have AVX-512 BF16): layers
                 compute in bfloat16, weights stay float32

Variants combine with "+", e.g. `--variants baseline jit+tfdata threads:1:1`.
Every variant carries the same tiny timing callback (a clock read per batch; the app's
TrainingJob has a per-batch callback too). Rounds are interleaved (baseline, jit, ...,
baseline, jit, ...). Per run: the epoch's wall time (the first epoch, so it includes
tracing and, for jit, XLA compilation), the steady per-step time (median from step 20
on), and the test accuracy afterwards (all 10,000, `evaluation.evaluate`). A variant
must not change results materially: its test accuracy within +-0.3 points of
baseline's. A run still going after --max-run-seconds (60 s) is stopped: its epoch time
is extrapolated from the steps it did, its accuracy is not checked, and it is not run
again in later rounds (XLA needs this: on this CPU it trains Lab 7 several times slower).

Time to 99.0 % test accuracy comes from the shipped model's per-epoch history
(mnist_demo/assets/default_model.json): the first epoch whose val_accuracy reaches
0.99, at the recorded seconds per epoch, and projected at each variant's speed.

Prints figures, asserts nothing. Target: a variant is worth taking if it is >= 10 %
faster per epoch than baseline with accuracy within +-0.3 points.

    .venv/bin/python benchmarks/training_speed.py [--quick] [--repeats 2] [--epochs 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import common
from common import fmt, stats, verdict

from mnist_demo.data import TRAIN_SIZE
from mnist_demo.recipe import LAB_BATCH_SIZE, LAB_LEARNING_RATE, LAB_SEED

DEFAULT_VARIANTS = ["baseline", "spe:4", "bf16", "tfdata", "threads:2:1", "jit"]
ACCURACY_TOLERANCE_POINTS = 0.3
WORTH_IT_SPEEDUP = 1.10
TARGET_ACCURACY = 0.99
STEADY_FROM_STEP = 20
# XLA on this CPU trains Lab 7 many times slower; a capped run still gives its step time.
MAX_RUN_SECONDS = 60.0


# --- one variant, in a child process ----------------------------------------------------


def parse_variant(spec: str) -> dict:
    """'jit+tfdata+threads:2:1' -> {'jit': True, 'tfdata': True, 'threads': (2, 1)}."""
    out: dict = {"jit": False, "tfdata": False, "threads": None, "spe": 1, "bf16": False}
    for part in spec.split("+"):
        if part == "baseline":
            continue
        if part in ("jit", "tfdata", "bf16"):
            out[part] = True
        elif part.startswith("spe:"):
            out["spe"] = int(part.split(":")[1])
        elif part.startswith("threads:"):
            _, intra, inter = part.split(":")
            out["threads"] = (int(intra), int(inter))
        else:
            raise SystemExit(f"unknown variant part {part!r} in {spec!r}")
    return out


def child(spec: str, args: argparse.Namespace) -> None:
    epochs, train_size, batch_size, seed = args.epochs, args.train_size, args.batch_size, args.seed
    max_seconds = args.max_run_seconds
    v = parse_variant(spec)
    t_start = time.perf_counter()
    import tensorflow as tf

    if v["threads"]:
        # Before any op runs: afterwards TensorFlow refuses (RuntimeError).
        tf.config.threading.set_intra_op_parallelism_threads(v["threads"][0])
        tf.config.threading.set_inter_op_parallelism_threads(v["threads"][1])
    import keras

    from mnist_demo.data import load_mnist, one_hot, to_model_input
    from mnist_demo.evaluation import evaluate
    from mnist_demo.model import build_model
    from mnist_demo.training import select_subset

    (x_train, y_train), (x_test, y_test) = load_mnist()
    x_train, y_train = select_subset(x_train, y_train, train_size, seed)
    x, y = to_model_input(x_train), one_hot(y_train)

    if v["bf16"]:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model("lab7", seed=seed, compile=False)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LAB_LEARNING_RATE),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=v["jit"],
        steps_per_execution=v["spe"],
    )

    steps_per_epoch = -(-len(x) // batch_size)

    class Clock(keras.callbacks.Callback):
        """A clock read per batch; stops the run once it has taken `max_seconds`."""

        def __init__(self):
            super().__init__()
            self.begin = 0.0
            self.batch_ends: list[float] = []  # of the first epoch, after its start
            self.epoch_s: list[float] = []
            self.cut = False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()
            if epoch == 0:
                self.begin = self.epoch_start
                self.batch_ends = [self.begin]

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if not self.epoch_s:
                self.batch_ends.append(now)
            if now - self.begin > max_seconds:
                self.cut = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_s.append(time.perf_counter() - self.epoch_start)

    clock = Clock()
    t_fit = time.perf_counter()
    if v["tfdata"]:
        ds = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        model.fit(ds, epochs=epochs, verbose=0, callbacks=[clock])
    else:
        model.fit(
            x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[clock]
        )
    fit_s = time.perf_counter() - t_fit
    # with steps_per_execution the clock is read once per execution of `spe` batches
    spe = v["spe"]
    steps = [(b - a) / spe for a, b in itertools.pairwise(clock.batch_ends)]
    steady = sorted(steps[STEADY_FROM_STEP // spe :] or steps)
    step_ms = 1000 * steady[len(steady) // 2]
    epoch_cut = len(steps) * spe < steps_per_epoch
    # Cut short: the first step (with its tracing) + the rest at the steady step time.
    extrapolated = steps[0] + (steps_per_epoch - 1) * step_ms / 1000
    epoch1_s = extrapolated if epoch_cut else clock.epoch_s[0]
    accuracy = None if clock.cut else evaluate(model, x_test, y_test).accuracy
    result = {  # for the parent (run_child)
        "variant": spec,
        "epoch1_s": epoch1_s,
        "epoch1_extrapolated": epoch_cut,
        "epoch_s": clock.epoch_s,
        "cut_short": clock.cut,
        "fit_s": fit_s,
        "steps_done": len(steps) * spe,
        "steps_per_epoch": steps_per_epoch,
        "step_ms": step_ms,
        "test_accuracy": accuracy,
        "jit_compile": bool(model.jit_compile),
        "threads": [
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        ],
        "process_s": time.perf_counter() - t_start,
    }
    common.child_result(result)


def run_child(spec: str, args: argparse.Namespace) -> dict | None:
    return common.run_child(
        __file__, spec, "--epochs", str(args.epochs), "--train-size", str(args.train_size),
        "--batch-size", str(args.batch_size), "--seed", str(args.seed),
        "--max-run-seconds", str(args.max_run_seconds),
    )  # fmt: skip


# --- the parent: interleave, tabulate -----------------------------------------------------


def shipped_time_to_target() -> tuple[int | None, float, int]:
    """(first epoch reaching TARGET_ACCURACY or None, seconds per epoch, epochs)."""
    from mnist_demo import config

    info = json.loads(Path(config.DEFAULT_MODEL_INFO_PATH).read_text())
    val = info["history"]["val_accuracy"]
    per_epoch = info["training_seconds"] / len(val)
    first = next((i + 1 for i, a in enumerate(val) if a >= TARGET_ACCURACY), None)
    return first, per_epoch, len(val)


def main() -> None:
    parser = common.ArgumentParser(
        __doc__, variants=["baseline", "spe:4", "bf16"], repeats=1, train_size=10 * LAB_BATCH_SIZE
    )
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of all variants")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1)")
    parser.add_argument("--train-size", type=int, default=TRAIN_SIZE)
    parser.add_argument("--batch-size", type=int, default=LAB_BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=LAB_SEED)
    parser.add_argument(
        "--max-run-seconds",
        type=float,
        default=MAX_RUN_SECONDS,
        help="stop a run after this long and extrapolate its epoch time (default %(default)s)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    if "baseline" not in args.variants:
        args.variants = ["baseline", *args.variants]

    common.header(__doc__)
    print(
        f"lab7, {args.train_size:,} training images, batch {args.batch_size}, "
        f"{args.epochs} epoch(s) per run, {args.repeats} round(s), one subprocess per run"
    )
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for r in range(args.repeats):
        for spec in args.variants:
            if results[spec] and results[spec][0]["cut_short"]:
                continue  # far slower than the cap in round 1: once is enough
            res = run_child(spec, args)
            if res is None:
                continue
            results[spec].append(res)
            acc = res["test_accuracy"]
            print(
                f"  round {r + 1} {spec:<14} epoch 1 {res['epoch1_s']:6.2f} s"
                f"{' (extrapolated)' if res['epoch1_extrapolated'] else ''}, "
                f"steady {res['step_ms']:6.1f} ms/step, "
                + (
                    f"test acc {acc:.4f}, "
                    if acc is not None
                    else f"stopped at the {args.max_run_seconds:.0f} s cap after "
                    f"{res['steps_done']}/{res['steps_per_epoch']} steps, "
                )
                + f"jit_compile={res['jit_compile']}, threads intra/inter {res['threads']}, "
                f"process {res['wall_s']:.1f} s"
            )

    base = [res for res in results["baseline"] if res["test_accuracy"] is not None]
    if not base:
        print("baseline failed or was cut short: no table (raise --max-run-seconds)")
        return
    base_epoch = stats([res["epoch1_s"] for res in base])[0]
    base_step = stats([res["step_ms"] for res in base])[0]
    base_acc = stats([res["test_accuracy"] for res in base])[0]
    steps = base[0]["steps_per_epoch"]
    first, shipped_per_epoch, shipped_epochs = shipped_time_to_target()

    print()
    print(
        "before/after, medians over rounds (epoch 1 includes tracing / XLA compilation; "
        "speed-up = baseline time / variant time; 'steady' compares ms/step)"
    )
    header = (
        f"{'variant':<16}{'epoch 1 s':>10}{'(min-max)':>15}{'ms/step':>9}{'speed-up':>9}"
        f"{'steady':>8}{'test acc':>10}{'Δ pts':>7}  {'to 99 %':>8}  verdict"
    )
    print(header)
    print("-" * len(header))
    checks: dict[str, bool | None] = {}
    speedups: dict[str, float] = {}
    for spec, runs in results.items():
        if not runs:
            print(f"{spec:<16} failed")
            continue
        med, lo, hi = stats([res["epoch1_s"] for res in runs])
        step = stats([res["step_ms"] for res in runs])[0]
        accs = [res["test_accuracy"] for res in runs if res["test_accuracy"] is not None]
        acc = stats(accs)[0] if accs else None
        delta = None if acc is None else 100 * (acc - base_acc)
        same = None if delta is None else abs(delta) <= ACCURACY_TOLERANCE_POINTS
        speedups[spec] = base_epoch / med
        # k epochs: the first (with its tracing), then k-1 at the steady step time.
        to_target = med + (first - 1) * steps * step / 1000 if first else float("nan")
        if spec == "baseline":
            word = "reference"
        else:
            checks[spec] = same
            if same is None:
                word = "accuracy not checked (cut short)"
            elif not same:
                word = "changes results"
            else:
                word = "worth it" if speedups[spec] >= WORTH_IT_SPEEDUP else "not worth it"
            if speedups[spec] < 1 / WORTH_IT_SPEEDUP:
                word = "slower" + ("" if same is None else f"; {word}")
        extrapolated = "*" if any(res["epoch1_extrapolated"] for res in runs) else " "
        acc_txt = f"{100 * acc:9.2f}%{delta:+7.2f}" if acc is not None else f"{'n/a':>10}{'':>7}"
        print(
            f"{spec:<16}{med:9.2f}{extrapolated}{f'({lo:.1f}-{hi:.1f})':>15}{step:9.1f}"
            f"{speedups[spec]:8.2f}x{base_step / step:7.2f}x{acc_txt}"
            f"  {to_target:7.0f}s  {word}"
        )
    if any(res["epoch1_extrapolated"] for runs in results.values() for res in runs):
        print(
            f"* stopped at the {args.max_run_seconds:.0f} s cap: epoch time extrapolated from "
            "the first step and the steady step time; no accuracy"
        )

    print()
    if first is None:
        print(f"the shipped model never reached {TARGET_ACCURACY:.1%} test accuracy")
    else:
        print(
            f"time to {TARGET_ACCURACY:.1%} test accuracy, from the shipped model's history: "
            f"epoch {first} of {shipped_epochs}, {first * shipped_per_epoch:.0f} s at its "
            f"recorded {shipped_per_epoch:.1f} s/epoch (incl. per-epoch validation and "
            f"checkpoint). 'to 99 %' projects {first} epochs of {steps} steps at each "
            "variant's measured speed here (training only, same accuracy curve assumed)"
        )
    print(f"baseline epoch 1: {fmt([res['epoch1_s'] for res in base], 's')}")
    print(
        f"target, results unchanged (test accuracy within ±{ACCURACY_TOLERANCE_POINTS} points "
        f"of baseline's {100 * base_acc:.2f} % after {args.epochs} epoch(s)): "
        + ", ".join(
            f"{spec} {'not checked' if ok is None else verdict(ok)}" for spec, ok in checks.items()
        )
    )
    faster = [spec for spec, ok in checks.items() if ok and speedups[spec] >= WORTH_IT_SPEEDUP]
    print(
        f"target, a variant >= {WORTH_IT_SPEEDUP:.2f}x faster per epoch with results unchanged: "
        f"{verdict(bool(faster))}" + (f" ({', '.join(faster)})" if faster else "")
    )


if __name__ == "__main__":
    main()
