"""How long do the 10,000 test predictions of the shipped model take?

The Home, Test set and Misclassified pages all start from `evaluation.evaluate(model,
x_test, y_test)` (batched direct model calls, cached once per model and server), so its
cold cost is what the first visitor after a server start waits for.

- cold: a fresh subprocess each time: import TensorFlow and mnist_demo, load MNIST,
  `model.load_model` the shipped file, then the first `evaluate` (graph building and
  kernel set-up included). Beside it, fresh subprocesses doing the same with the first
  `model.predict(x, batch_size=1000)` instead.
- warm: in this process, after a first call: `evaluate` again, `predict_proba` with other
  batch sizes, and `model.predict(x, batch_size=...)`; all must give the same answers.

Prints figures, asserts nothing. Target: load model + first evaluate <= 3 s (cold).

    .venv/bin/python benchmarks/evaluation_speed.py [--quick] [--cold-runs 3] [--warm-runs 5]
        [--images 10000]
"""

from __future__ import annotations

import argparse
import os
import time

import common
from common import fmt, stats, timed, verdict

TARGET_COLD_S = 3.0
PREDICT_BATCHES = (32, 128, 1000)
PROBA_BATCHES = (250, 1000, 2500, 10000)
COLD_KINDS = ["evaluate", "predict"]
PREDICT_COLD = "model.predict(batch_size=1000)"  # the cold "predict" kind's call


def child(kind: str, images: int | None) -> None:
    """One cold start on the first `images` test images (None: all); prints its phases."""
    t0 = time.perf_counter()
    import keras  # noqa: F401  (TensorFlow comes with it)

    from mnist_demo import config
    from mnist_demo.data import load_mnist, to_model_input
    from mnist_demo.evaluation import evaluate
    from mnist_demo.model import load_model

    t1 = time.perf_counter()
    _, (x_test, y_test) = load_mnist()
    x_test, y_test = x_test[:images], y_test[:images]
    t2 = time.perf_counter()
    model = load_model(config.DEFAULT_MODEL_PATH)
    t3 = time.perf_counter()
    rss_before = common.rss_bytes(os.getpid())

    def call() -> float:  # the accuracy
        if kind == "evaluate":
            return evaluate(model, x_test, y_test).accuracy
        probs = model.predict(to_model_input(x_test), batch_size=1000, verbose=0)
        return float((probs.argmax(1) == y_test).mean())

    (first_s, second_s), accuracy = timed(call, 2)
    common.child_result(
        {
            "imports_s": t1 - t0,
            "data_s": t2 - t1,
            "load_model_s": t3 - t2,
            "first_s": first_s,
            "second_s": second_s,
            "accuracy": accuracy,
            "rss_before_mb": rss_before / 2**20,
            "rss_peak_mb": common.rss_bytes(os.getpid(), "VmHWM") / 2**20,
        }
    )


def main() -> None:
    parser = common.ArgumentParser(
        __doc__, images=1000, cold=["evaluate"], cold_runs=1, warm_runs=1
    )
    parser.add_argument("--images", type=int, help="the first N test images (default: all)")
    parser.add_argument("--cold", nargs="+", choices=COLD_KINDS, default=COLD_KINDS)
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes of each kind")
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--child", choices=COLD_KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.images)
        return

    common.header(__doc__)

    cold: dict[str, list[dict]] = {kind: [] for kind in args.cold}
    images = [] if args.images is None else ["--images", str(args.images)]
    for i in range(args.cold_runs):  # interleaved, so both kinds see the same load
        for kind in cold:
            res = common.run_child(__file__, kind, *images)
            if res:
                cold[kind].append(res)
                print(
                    f"  cold {i + 1} {kind:<8} imports {res['imports_s']:5.2f} s, "
                    f"MNIST {res['data_s']:5.2f} s, load model {res['load_model_s']:5.2f} s, "
                    f"first call {res['first_s']:5.2f} s, second {res['second_s']:5.2f} s, "
                    f"process {res['wall_s']:5.1f} s, accuracy {res['accuracy']:.4f}"
                )

    from mnist_demo import config
    from mnist_demo.data import load_mnist, to_model_input
    from mnist_demo.evaluation import BATCH_SIZE, evaluate, predict_proba
    from mnist_demo.model import load_model

    _, (x_test, y_test) = load_mnist()
    x_test, y_test = x_test[: args.images], y_test[: args.images]
    n = f"{len(x_test):,} images"
    model = load_model(config.DEFAULT_MODEL_PATH)
    x = to_model_input(x_test)
    reference = evaluate(model, x_test, y_test)  # first call, untimed here
    warm_eval, result = timed(lambda: evaluate(model, x_test, y_test), args.warm_runs)
    calls = {
        f"predict_proba(batch_size={b:<5})": lambda b=b: predict_proba(model, x_test, batch_size=b)
        for b in PROBA_BATCHES
    } | {
        f"model.predict(batch_size={b:<5})": lambda b=b: model.predict(x, batch_size=b, verbose=0)
        for b in PREDICT_BATCHES
    }
    warm = {}
    for label, call in calls.items():
        call()  # the first call, untimed
        warm[label] = timed(call, args.warm_runs)
    agree = all((out.argmax(1) == reference.predictions).all() for _, out in warm.values())
    max_diff = max(float(abs(out - reference.probabilities).max()) for _, out in warm.values())

    print()
    print("cold, fresh process each (seconds)")
    for kind, runs in cold.items():
        if not runs:
            continue
        first = {"evaluate": f"evaluate (batch {BATCH_SIZE})"}.get(kind, PREDICT_COLD)
        print(f"  {first}")
        print(f"    import TF + mnist_demo     {fmt([r['imports_s'] for r in runs], 's')}")
        print(f"    load MNIST (cache)         {fmt([r['data_s'] for r in runs], 's')}")
        print(f"    load_model                 {fmt([r['load_model_s'] for r in runs], 's')}")
        print(f"    first call, {n:<14} {fmt([r['first_s'] for r in runs], 's')}")
        both = [r["load_model_s"] + r["first_s"] for r in runs]
        print(f"    load_model + first call    {fmt(both, 's')}")
        print(f"    second call                {fmt([r['second_s'] for r in runs], 's')}")
        print(f"    whole process              {fmt([r['wall_s'] for r in runs], 's')}")
        print(
            f"    RSS before the first call  {fmt([r['rss_before_mb'] for r in runs], 'MB', 0)}; "
            f"peak after two calls {fmt([r['rss_peak_mb'] for r in runs], 'MB', 0)}"
        )
    print(f"warm, in one process, {n} ({args.warm_runs} runs after a first call)")
    label = f"evaluate (predict_proba batch {BATCH_SIZE}, + metrics)"
    print(f"  {label:<49}{fmt(warm_eval, 's', 3)}")
    for label, (times, _) in warm.items():
        print(f"  {label:<49}{fmt(times, 's', 3)}")
    print(
        f"  same predicted digits on every path: {'yes' if agree else 'NO'}; "
        f"largest probability difference {max_diff:.2e}; accuracy {result.accuracy:.4f}, "
        f"misclassified {result.misclassified_count}"
    )

    print()
    warm_med = stats(warm_eval)[0]
    for b in PREDICT_BATCHES:
        print(
            f"ratio model.predict(batch_size={b}) / evaluate, warm: "
            f"{stats(warm[f'model.predict(batch_size={b:<5})'][0])[0] / warm_med:.2f}"
        )
    if cold.get("evaluate"):
        cold_eval = [r["load_model_s"] + r["first_s"] for r in cold["evaluate"]]
        med = stats(cold_eval)[0]
        print(f"ratio cold (load + first evaluate) / warm evaluate: {med / warm_med:.1f}")
        if cold.get("predict"):
            cold_pred = stats([r["load_model_s"] + r["first_s"] for r in cold["predict"]])[0]
            print(f"ratio cold model.predict / cold evaluate: {cold_pred / med:.2f}")
        print(
            f"target load model + first evaluate <= {TARGET_COLD_S:.0f} s (cold): "
            f"median {med:.2f} s, max {max(cold_eval):.2f} s, {verdict(med <= TARGET_COLD_S)}"
        )


if __name__ == "__main__":
    main()
