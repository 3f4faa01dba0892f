"""How much accuracy does a drawing lose on its way to the model, and how long does
`to_mnist` take? Prints figures; asserts nothing.

    python benchmarks/drawn_digits_accuracy.py [--n 2000] [--seed 0] [--model PATH]

The drawn set is MNIST test digits re-drawn as 280x280 canvases (see
mnist_demo/drawn_digits.py). Three accuracies on the same digits: the originals, the
drawings through `to_mnist`, the drawings squashed whole to 28x28 (`naive_resize`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnist_demo.config import DEFAULT_MODEL_PATH
from mnist_demo.data import load_mnist
from mnist_demo.errors import ModelFileError
from mnist_demo.model import load_model
from mnist_demo.preprocess import to_mnist
from tools.drawn_digits import drawn_accuracy, iter_drawn

TIMED_CANVASES = 300


def time_to_mnist(count: int, seed: int) -> np.ndarray:
    """Milliseconds per call on `count` drawn canvases, after one warm-up call."""
    _, (x_test, _) = load_mnist()
    canvases = [canvas for _, canvas in iter_drawn(x_test, count, seed)]
    to_mnist(canvases[0])
    times = []
    for canvas in canvases:
        start = time.perf_counter()
        to_mnist(canvas)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="drawn digits (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args()

    try:
        model = load_model(args.model)
    except ModelFileError as e:
        sys.exit(f"{e}\nTrain one with `python -m mnist_demo train` or pass --model PATH.")
    start = time.perf_counter()
    r = drawn_accuracy(model, n=args.n, seed=args.seed)
    elapsed = time.perf_counter() - start
    print(f"model: {args.model}")
    print(f"drawn digits: n={r['n']} seed={r['seed']} ({elapsed:.1f} s)")
    print(f"  original MNIST digits      {100 * r['original_accuracy']:6.2f} %")
    print(
        f"  drawn -> to_mnist          {100 * r['to_mnist_accuracy']:6.2f} %"
        f"   gap {r['gap_points']:+.2f} points"
    )
    print(
        f"  drawn -> naive resize      {100 * r['naive_accuracy']:6.2f} %"
        f"   gap {r['naive_gap_points']:+.2f} points"
    )
    print(
        f"  naive gap on the {r['centred_n']} drawings that are centred and MNIST-sized: "
        f"{r['centred_naive_gap_points']:+.2f} points"
    )

    ms = time_to_mnist(TIMED_CANVASES, args.seed + 1)
    p50, p95 = np.percentile(ms, [50, 95])
    print(
        f"to_mnist on {len(ms)} canvases of 280x280x4: median {p50:.2f} ms, "
        f"p95 {p95:.2f} ms, min {ms.min():.2f} ms, max {ms.max():.2f} ms"
    )


if __name__ == "__main__":
    main()
