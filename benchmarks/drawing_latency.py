"""How long a student waits between lifting the mouse and seeing the answer.

Real MNIST test digits are rendered as 280x280 RGBA canvases (the Draw page's size),
then each one is timed through the path the Draw page takes: `preprocess.to_mnist`,
then `Predictor.predict`. Beside it, the same 28x28 inputs through an eager
`model(x, training=False)` call and through `model.predict`, which is what the
Predictor exists to avoid; then the extras the page shows (feature maps, saliency).

Prints figures, asserts nothing. Target: p50 <= 15 ms for to_mnist + predict.

    .venv/bin/python benchmarks/drawing_latency.py [--n 300] [--model PATH] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image

from mnist_demo import config
from mnist_demo.data import load_mnist
from mnist_demo.inference import Predictor, feature_grid
from mnist_demo.model import build_model, load_model
from mnist_demo.preprocess import to_mnist

CANVAS = 280
TARGET_P50_MS = 15.0
SALIENCY_BUDGET_MS = 150.0
EXTRAS_SAMPLE = 60  # drawings for the slower extras (saliency, feature maps)


def render_canvases(digits: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """MNIST digits as 280x280 RGBA canvases, drawn the ways a canvas returns them.

    Each digit is upscaled (bilinear) to a random size and pasted at a random place,
    so the preprocessing has real cropping and centring to do. Even drawings are
    white ink on an opaque black canvas; odd ones black ink whose strokes live only in
    the alpha channel of a transparent canvas (a canvas without a background colour).
    """
    canvases = []
    for i, digit in enumerate(digits):
        side = int(rng.integers(150, CANVAS + 1))
        big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR))
        top, left = rng.integers(0, CANVAS - side + 1, size=2)
        ink = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
        ink[top : top + side, left : left + side] = big
        rgba = np.zeros((CANVAS, CANVAS, 4), dtype=np.uint8)
        if i % 2 == 0:
            rgba[..., :3] = ink[..., None]
            rgba[..., 3] = 255
        else:
            rgba[..., 3] = ink
        canvases.append(rgba)
    return canvases


def drawings(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, str]:
    """Canvases and their labels: the project's drawn set if there is one, else ours."""
    _, (x_test, y_test) = load_mnist()
    try:
        from tools.drawn_digits import make_drawn_set

        canvases, labels, _ = make_drawn_set(x_test, y_test, n, seed=seed)
        source = "tools.drawn_digits.make_drawn_set (MNIST test digits re-stroked)"
        return list(canvases), np.asarray(labels), source
    except Exception as e:  # missing or changed module: the benchmark still runs
        print(f"(drawn_digits.make_drawn_set not used: {type(e).__name__}: {e})")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x_test), size=n, replace=False)
    source = "MNIST test digits upscaled with Pillow (random size and place)"
    return render_canvases(x_test[pick], rng), y_test[pick], source


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000, out


def row(name: str, ms: list[float] | np.ndarray) -> str:
    ms = np.asarray(ms)
    p50, p95 = np.percentile(ms, [50, 95])
    return f"{name:<38} {p50:8.2f} {p95:8.2f} {ms.min():8.2f} {ms.max():8.2f}   (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="number of drawings")
    parser.add_argument("--model", type=Path, default=config.DEFAULT_MODEL_PATH)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import tensorflow as tf  # after TF_CPP_MIN_LOG_LEVEL is set

    if args.model.exists():
        model = load_model(args.model)
        which = f"shipped/trained model {args.model}"
    else:
        model = build_model("lab7")
        which = f"freshly built UNTRAINED lab7 model ({args.model} not found)"
    canvases, labels, source = drawings(args.n, args.seed)

    print(f"model:    {which}")
    print(f"drawings: {len(canvases)} x {canvases[0].shape} {canvases[0].dtype}, {source}")
    print(
        f"machine:  {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
        f"intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}"
    )

    build_ms, predictor = timed(lambda: Predictor(model))
    print(f"Predictor(model) incl. warm-up (tracing): {build_ms:.0f} ms, once per model\n")

    # Warm the other paths too, so no column pays a first-call cost.
    x0 = np.zeros((1, 28, 28, 1), np.float32)
    model.predict(x0, verbose=0)
    model(x0, training=False)

    prep, pred, both, eager, slow = [], [], [], [], []
    answers, images = [], []
    for canvas in canvases:
        t_prep, image = timed(lambda c=canvas: to_mnist(c))
        t_pred, probs = timed(lambda im=image: predictor.predict(im))
        prep.append(t_prep)
        pred.append(t_pred)
        both.append(t_prep + t_pred)
        answers.append(int(np.argmax(probs)))
        images.append(image)
    for image in images:
        x = image.reshape(1, 28, 28, 1)
        eager.append(timed(lambda x=x: model(x, training=False).numpy())[0])
        slow.append(timed(lambda x=x: model.predict(x, verbose=0))[0])

    extras = images[:EXTRAS_SAMPLE]
    occl = [timed(lambda im=im: predictor.saliency(im))[0] for im in extras]
    grad = [timed(lambda im=im: predictor.saliency(im, method="gradient"))[0] for im in extras]
    fmaps = [timed(lambda im=im: predictor.feature_maps(im))[0] for im in extras]
    maps = predictor.feature_maps(extras[0])
    grids = [timed(lambda: [feature_grid(v, cols=8) for v in maps.values()])[0] for _ in extras]

    header = f"{'ms per drawing':<38} {'p50':>8} {'p95':>8} {'min':>8} {'max':>8}"
    print(header)
    print("-" * len(header))
    print(row("to_mnist (280x280 RGBA -> 28x28)", prep))
    print(row("Predictor.predict (tf.function)", pred))
    print(row("to_mnist + Predictor.predict", both))
    print(row("model(x, training=False) (eager)", eager))
    print(row("model.predict(x)", slow))
    print(row("to_mnist + model.predict", np.add(prep, slow)))
    print(row("saliency, occlusion (170 in 1 batch)", occl))
    print(row("saliency, gradient x input", grad))
    print(row("feature_maps (conv1 + conv2)", fmaps))
    print(row("feature_grid x2 (8 columns)", grids))

    p50 = float(np.percentile(both, 50))
    print()
    print(
        f"model.predict / Predictor.predict (p50): "
        f"{np.median(slow) / np.median(pred):.0f}x slower; "
        f"eager call / Predictor.predict: {np.median(eager) / np.median(pred):.1f}x"
    )
    verdict = "met" if p50 <= TARGET_P50_MS else "NOT met"
    print(f"target p50 <= {TARGET_P50_MS:.0f} ms for to_mnist + predict: {p50:.2f} ms, {verdict}")
    occl50 = float(np.percentile(occl, 50))
    verdict = "met" if float(np.max(occl)) < SALIENCY_BUDGET_MS else "NOT met"
    print(
        f"occlusion saliency < {SALIENCY_BUDGET_MS:.0f} ms: p50 {occl50:.1f} ms, "
        f"max {np.max(occl):.1f} ms, {verdict}"
    )
    accuracy = float(np.mean(np.array(answers) == labels))
    print(f"accuracy on these drawings: {accuracy:.1%}")


if __name__ == "__main__":
    main()
