"""How long do the 10,000 test predictions of the shipped model take, cold?

The Home, Test set and Misclassified pages all start from `evaluation.evaluate(model,
x_test, y_test)` (batched direct model calls, cached once per model and server), so its
cold cost is what the first visitor after a server start waits for. Each run is a fresh
subprocess: import TensorFlow and mnist_demo, load MNIST, `model.load_model` the shipped
file, then the first `evaluate` (graph building and kernel set-up included) and a second
one (warm).

Prints figures, asserts nothing. Target: load model + first evaluate <= 3 s (cold).

    .venv/bin/python benchmarks/evaluation_speed.py [--quick] [--runs 3] [--images 10000]
"""

from __future__ import annotations

import argparse
import os
import time

import common
from common import fmt, stats, timed, verdict

TARGET_COLD_S = 3.0
PHASES = {  # result key -> what it times
    "imports_s": "import TF + mnist_demo",
    "data_s": "load MNIST (cache)",
    "load_model_s": "load_model",
    "first_s": "first evaluate",
    "cold_s": "load_model + first evaluate",
    "second_s": "second evaluate (warm)",
    "wall_s": "whole process",
}


def child(images: int | None) -> None:
    """One cold start on the first `images` test images (None: all)."""
    t0 = time.perf_counter()
    from mnist_demo import config
    from mnist_demo.evaluation import evaluate
    from mnist_demo.model import load_model

    t1 = time.perf_counter()
    _, (x_test, y_test) = common.mnist(images)
    t2 = time.perf_counter()
    model = load_model(config.DEFAULT_MODEL_PATH)
    t3 = time.perf_counter()
    (first_s, second_s), result = timed(lambda: evaluate(model, x_test, y_test), 2)
    common.child_result(
        {
            "imports_s": t1 - t0,
            "data_s": t2 - t1,
            "load_model_s": t3 - t2,
            "first_s": first_s,
            "cold_s": t3 - t2 + first_s,
            "second_s": second_s,
            "accuracy": result.accuracy,
            "n": len(y_test),
            "rss_peak_mb": common.rss_bytes(os.getpid(), "VmHWM") / 2**20,
        }
    )


def main() -> None:
    parser = common.ArgumentParser(__doc__, images=1000, runs=1)
    parser.add_argument("--images", type=int, help="the first N test images (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.images)
    common.header(__doc__)
    images = [] if args.images is None else ["--images", str(args.images)]
    runs = [r for r in (common.run_child(__file__, *images) for _ in range(args.runs)) if r]
    if not runs:
        print("every run failed")
        return
    print(
        f"cold, a fresh process each, {runs[0]['n']:,} images, accuracy {runs[0]['accuracy']:.4f}"
    )
    for key, label in PHASES.items():
        print(f"  {label:<30}{fmt([r[key] for r in runs], 's')}")
    print(f"  {'peak RSS':<30}{fmt([r['rss_peak_mb'] for r in runs], 'MB', 0)}")
    cold = [r["cold_s"] for r in runs]
    med = stats(cold)[0]
    print(
        f"target load model + first evaluate <= {TARGET_COLD_S:.0f} s (cold): "
        f"median {med:.2f} s, max {max(cold):.2f} s, {verdict(med <= TARGET_COLD_S)}"
    )


if __name__ == "__main__":
    main()
