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
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common
from common import fmt, stats, verdict

TARGET_COLD_S = 3.0
PREDICT_BATCHES = (32, 128, 1000)
PROBA_BATCHES = (250, 1000, 2500, 10000)
RESULT_PREFIX = "RESULT "


def child(kind: str) -> None:
    """One cold start; prints its phases as JSON."""
    t0 = time.perf_counter()
    import keras  # noqa: F401  (TensorFlow comes with it)

    from mnist_demo import config
    from mnist_demo.data import load_mnist, to_model_input
    from mnist_demo.evaluation import evaluate
    from mnist_demo.model import load_model

    t1 = time.perf_counter()
    _, (x_test, y_test) = load_mnist()
    t2 = time.perf_counter()
    model = load_model(config.DEFAULT_MODEL_PATH)
    t3 = time.perf_counter()
    rss_before = common.rss_bytes(os.getpid())
    if kind == "evaluate":
        result = evaluate(model, x_test, y_test)
        accuracy = result.accuracy
    else:
        probs = model.predict(to_model_input(x_test), batch_size=1000, verbose=0)
        accuracy = float((probs.argmax(1) == y_test).mean())
    t4 = time.perf_counter()
    if kind == "evaluate":
        evaluate(model, x_test, y_test)
    else:
        model.predict(to_model_input(x_test), batch_size=1000, verbose=0)
    t5 = time.perf_counter()
    out = {
        "imports_s": t1 - t0,
        "data_s": t2 - t1,
        "load_model_s": t3 - t2,
        "first_s": t4 - t3,
        "second_s": t5 - t4,
        "accuracy": accuracy,
        "rss_before_mb": rss_before / 2**20,
        "rss_peak_mb": common.rss_bytes(os.getpid(), "VmHWM") / 2**20,
    }
    print(RESULT_PREFIX + json.dumps(out), flush=True)


def run_child(kind: str) -> dict | None:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind], capture_output=True, text=True, cwd=common.ROOT
    )
    wall = time.perf_counter() - t
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return {**json.loads(line[len(RESULT_PREFIX) :]), "process_s": wall}
    print(f"  cold {kind}: FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
    return None


def timed(fn, runs: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes of each kind")
    parser.add_argument("--warm-runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 cold, 2 warm runs")
    parser.add_argument("--child", choices=["evaluate", "predict"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.quick:
        args.cold_runs, args.warm_runs = 1, 2

    common.header(__doc__)

    cold: dict[str, list[dict]] = {"evaluate": [], "predict": []}
    for i in range(args.cold_runs):  # interleaved, so both kinds see the same load
        for kind in cold:
            res = run_child(kind)
            if res:
                cold[kind].append(res)
                print(
                    f"  cold {i + 1} {kind:<8} imports {res['imports_s']:5.2f} s, "
                    f"MNIST {res['data_s']:5.2f} s, load model {res['load_model_s']:5.2f} s, "
                    f"first call {res['first_s']:5.2f} s, second {res['second_s']:5.2f} s, "
                    f"process {res['process_s']:5.1f} s, accuracy {res['accuracy']:.4f}"
                )

    from mnist_demo import config
    from mnist_demo.data import load_mnist, to_model_input
    from mnist_demo.evaluation import evaluate, predict_proba
    from mnist_demo.model import load_model

    _, (x_test, y_test) = load_mnist()
    model = load_model(config.DEFAULT_MODEL_PATH)
    x = to_model_input(x_test)
    reference = evaluate(model, x_test, y_test)  # first call, untimed here
    warm_eval, result = timed(lambda: evaluate(model, x_test, y_test), args.warm_runs)
    proba = {}
    for b in PROBA_BATCHES:
        predict_proba(model, x_test, batch_size=b)
        proba[b] = timed(lambda b=b: predict_proba(model, x_test, batch_size=b), args.warm_runs)
    predict = {}
    for b in PREDICT_BATCHES:
        model.predict(x, batch_size=b, verbose=0)
        predict[b] = timed(lambda b=b: model.predict(x, batch_size=b, verbose=0), args.warm_runs)

    agree = all(
        (out.argmax(1) == reference.predictions).all()
        for _, out in [*proba.values(), *predict.values()]
    )
    max_diff = max(
        float(abs(out - reference.probabilities).max())
        for _, out in [*proba.values(), *predict.values()]
    )

    print()
    print("cold, fresh process each (seconds)")
    for kind, runs in cold.items():
        if not runs:
            continue
        first = "evaluate (batch 1000)" if kind == "evaluate" else "model.predict(batch_size=1000)"
        print(f"  {first}")
        print(f"    import TF + mnist_demo     {fmt([r['imports_s'] for r in runs], 's')}")
        print(f"    load MNIST (cache)         {fmt([r['data_s'] for r in runs], 's')}")
        print(f"    load_model                 {fmt([r['load_model_s'] for r in runs], 's')}")
        print(f"    first call, 10,000 images  {fmt([r['first_s'] for r in runs], 's')}")
        both = [r["load_model_s"] + r["first_s"] for r in runs]
        print(f"    load_model + first call    {fmt(both, 's')}")
        print(f"    second call                {fmt([r['second_s'] for r in runs], 's')}")
        print(f"    whole process              {fmt([r['process_s'] for r in runs], 's')}")
        print(
            f"    RSS before the first call  {fmt([r['rss_before_mb'] for r in runs], 'MB', 0)}; "
            f"peak after two calls {fmt([r['rss_peak_mb'] for r in runs], 'MB', 0)}"
        )
    print(f"warm, in one process, 10,000 images ({args.warm_runs} runs after a first call)")
    print(f"  evaluate (predict_proba batch 1000, + metrics)   {fmt(warm_eval, 's', 3)}")
    for b, (times, _) in proba.items():
        print(f"  predict_proba(batch_size={b:<5})                  {fmt(times, 's', 3)}")
    for b, (times, _) in predict.items():
        print(f"  model.predict(batch_size={b:<5})                  {fmt(times, 's', 3)}")
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
            f"{stats(predict[b][0])[0] / warm_med:.2f}"
        )
    if cold["evaluate"]:
        cold_eval = [r["load_model_s"] + r["first_s"] for r in cold["evaluate"]]
        med = stats(cold_eval)[0]
        print(f"ratio cold (load + first evaluate) / warm evaluate: {med / warm_med:.1f}")
        if cold["predict"]:
            cold_pred = stats([r["load_model_s"] + r["first_s"] for r in cold["predict"]])[0]
            print(f"ratio cold model.predict / cold evaluate: {cold_pred / med:.2f}")
        print(
            f"target load model + first evaluate <= {TARGET_COLD_S:.0f} s (cold): "
            f"median {med:.2f} s, max {max(cold_eval):.2f} s, {verdict(med <= TARGET_COLD_S)}"
        )


if __name__ == "__main__":
    main()
