"""Does the `robust` preset beat Lab 7 where it matters, on digits that are not MNIST?

How much accuracy a drawing loses on its way to the model, for each shipped model (the
Lab 7 row is the app's default model). Prints one table, then each model's gaps;
asserts nothing. (`to_mnist`'s own speed: benchmarks/drawing_latency.py.)

    python benchmarks/robust_vs_lab7.py [--quick] [--n 2000] [--seed 0]
        [--models A.keras B.keras]

Columns, for each model:
  MNIST test      accuracy on the 10,000 MNIST test images (what Lab 7 reports)
  drawn           MNIST test digits re-drawn as 280x280 canvases (tools/drawn_digits.py;
                  n digits, seed): the originals, the drawings through `to_mnist`, the
                  drawings squashed whole to 28x28 (`naive_resize`)
  sklearn digits  scikit-learn's 1,797 8x8 digits (other writers, not MNIST), upscaled
                  to a 96x96 photo of dark ink on paper and passed through `to_mnist`;
                  skipped with a note when scikit-learn is not installed
  params, file size and the training time from the model's .json (`training_seconds`).
Gaps, in points: original - to_mnist, original - naive, and the naive gap on the
drawings that happen to be centred and MNIST-sized (the best case for squashing).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import common
import numpy as np
from PIL import Image

from mnist_demo import config
from mnist_demo.data import IMAGE_SIZE, TEST_SIZE, load_mnist
from mnist_demo.errors import ModelFileError
from mnist_demo.evaluation import evaluate, predict_proba
from mnist_demo.model import load_model
from mnist_demo.preprocess import BlankImageError, to_mnist
from tools.drawn_digits import drawn_accuracy

MODELS = [config.DEFAULT_MODEL_PATH, config.ROBUST_MODEL_PATH]
SKLEARN_MAX = 16  # load_digits grey levels are 0..16, ink bright
PHOTO_SIDE = 80  # the 8x8 digit upscaled to this many pixels...
PHOTO_MARGIN = 8  # ...on paper with this margin, so the ink never touches the edge


def sklearn_digits_as_mnist() -> tuple[np.ndarray, np.ndarray] | None:
    """(N, 28, 28) float to_mnist inputs and labels, or None without scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    digits = load_digits()
    images, labels = [], []
    for image, label in zip(digits.images, digits.target, strict=True):
        paper = 255 - image * (255 / SKLEARN_MAX)  # dark ink on white paper, like a photo
        photo = Image.fromarray(paper.astype(np.float32)).resize(
            (PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.BICUBIC
        )
        photo = np.pad(
            np.clip(np.asarray(photo), 0, 255), PHOTO_MARGIN, constant_values=255
        ).astype(np.uint8)
        try:
            images.append(to_mnist(photo))
        except BlankImageError:  # counts as a mistake
            images.append(np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32))
        labels.append(int(label))
    return np.stack(images), np.asarray(labels)


def model_info(path: Path) -> dict:
    info_path = path.with_suffix(".json")
    return json.loads(info_path.read_text()) if info_path.exists() else {}


def main() -> None:
    parser = common.ArgumentParser(__doc__, n=20, test_size=500)
    parser.add_argument("--n", type=int, default=2000, help="drawn digits (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", type=Path, nargs="+", default=MODELS)
    parser.add_argument("--test-size", type=int, default=TEST_SIZE, help="first N test images")
    args = parser.parse_args()
    common.header(__doc__)

    _, (x_test, y_test) = load_mnist()
    x_test, y_test = x_test[: args.test_size], y_test[: args.test_size]
    sk = sklearn_digits_as_mnist()
    if sk is None:
        print("note: scikit-learn is not installed; skipping the sklearn digits column")

    rows = []
    for path in args.models:
        try:
            model = load_model(path)
        except ModelFileError as e:
            print(f"skipping {path.name}: {e}")
            continue
        start = time.perf_counter()
        mnist_acc = evaluate(model, x_test, y_test).accuracy
        drawn = drawn_accuracy(model, n=args.n, seed=args.seed)
        sk_acc = None
        if sk is not None:
            sk_acc = float((predict_proba(model, sk[0]).argmax(axis=1) == sk[1]).mean())
        info = model_info(path)
        rows.append(
            {
                "model": path.name,
                "preset": info.get("config", {}).get("preset", "?"),
                "params": model.count_params(),
                "size_mb": path.stat().st_size / 1e6,
                "train_s": info.get("training_seconds"),
                "mnist": mnist_acc,
                "sklearn": sk_acc,
                "bench_s": time.perf_counter() - start,
                **drawn,  # tools.drawn_digits.drawn_accuracy's figures
            }
        )

    def pct(v: float | None) -> str:
        return "skipped" if v is None else f"{100 * v:.2f} %"

    sk_note = f"; sklearn digits: n={len(sk[1])} (8x8, 0-16)" if sk is not None else ""
    print(f"\nMNIST test: n={len(y_test):,}; drawn digits: n={args.n} seed={args.seed}{sk_note}")
    header = (
        f"{'model':22s} {'preset':7s} {'params':>9s} {'file':>8s} {'train':>8s} "
        f"{'MNIST test':>10s} {'drawn orig':>10s} {'to_mnist':>9s} {'naive':>9s} "
        f"{'sklearn':>9s}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        train = f"{r['train_s']:.0f} s" if r["train_s"] is not None else "?"
        print(
            f"{r['model']:22s} {r['preset']:7s} {r['params']:9,d} {r['size_mb']:6.1f}MB "
            f"{train:>8s} {pct(r['mnist']):>10s} {pct(r['original_accuracy']):>10s} "
            f"{pct(r['to_mnist_accuracy']):>9s} {pct(r['naive_accuracy']):>9s} "
            f"{pct(r['sklearn']):>9s}"
        )
    print()
    for r in rows:
        print(
            f"{r['model']}: drawn -> to_mnist gap {r['gap_points']:+.2f} points, naive resize "
            f"gap {r['naive_gap_points']:+.2f}; naive gap on the {r['centred_n']} drawings "
            f"that are centred and MNIST-sized {r['centred_naive_gap_points']:+.2f} "
            f"({r['bench_s']:.1f} s for this model)"
        )


if __name__ == "__main__":
    main()
