"""How long a student waits between lifting the mouse and seeing the answer.

Drawn digits (tools/drawn_digits.py: MNIST test digits re-stroked as 280x280 RGBA
canvases, the Draw page's size) are each timed through the path the Draw page takes:
`preprocess.to_mnist`, then `Predictor.predict`. Beside it, the same 28x28 inputs
through an eager `model(x, training=False)` call and through `model.predict`, which is
what the Predictor exists to avoid; then the extras the page shows (feature maps,
saliency). This is the one benchmark that times `to_mnist`.

Prints figures, asserts nothing. Target: p50 <= 15 ms for to_mnist + predict.

    .venv/bin/python benchmarks/drawing_latency.py [--quick] [--n 300] [--model PATH] [--seed 7]
"""

from __future__ import annotations

from pathlib import Path

import common
import numpy as np
from common import timed, verdict

from mnist_demo import config
from mnist_demo.data import INPUT_SHAPE, load_mnist
from mnist_demo.inference import Predictor, feature_grid
from mnist_demo.model import build_model, load_model
from mnist_demo.preprocess import to_mnist
from tools.drawn_digits import make_drawn_set

TARGET_P50_MS = 15.0
SALIENCY_BUDGET_MS = 150.0


def ms(fn) -> tuple[float, object]:
    """(milliseconds of one call, its result)."""
    times, out = timed(fn)
    return times[0] * 1000, out


def row(name: str, values: list[float] | np.ndarray) -> str:
    v = np.asarray(values)
    p50, p95 = np.percentile(v, [50, 95])
    return f"{name:<38} {p50:8.2f} {p95:8.2f} {v.min():8.2f} {v.max():8.2f}   (n={len(v)})"


def main() -> None:
    parser = common.ArgumentParser(__doc__, n=10, extras=3)
    parser.add_argument("--n", type=int, default=300, help="number of drawings")
    parser.add_argument("--extras", type=int, default=60, help="drawings for the slow extras")
    parser.add_argument("--model", type=Path, default=config.DEFAULT_MODEL_PATH)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import tensorflow as tf

    common.header(__doc__)
    print(
        f"TensorFlow {tf.__version__}, intra-op threads "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}"
    )
    if args.model.exists():
        model = load_model(args.model)
        which = f"shipped/trained model {args.model}"
    else:
        model = build_model("lab7")
        which = f"freshly built UNTRAINED lab7 model ({args.model} not found)"
    _, (x_test, y_test) = load_mnist()
    canvases, labels, _ = make_drawn_set(x_test, y_test, args.n, seed=args.seed)
    print(f"model:    {which}")
    print(
        f"drawings: {len(canvases)} x {canvases[0].shape} {canvases[0].dtype}, "
        "tools.drawn_digits.make_drawn_set (MNIST test digits re-stroked)"
    )

    build_ms, predictor = ms(lambda: Predictor(model))
    print(f"Predictor(model) incl. warm-up (tracing): {build_ms:.0f} ms, once per model\n")

    # Warm the other paths too, so no column pays a first-call cost.
    x0 = np.zeros((1, *INPUT_SHAPE), np.float32)
    model.predict(x0, verbose=0)
    model(x0, training=False)

    prep, pred, both, eager, slow = [], [], [], [], []
    answers, images = [], []
    for canvas in canvases:
        t_prep, image = ms(lambda c=canvas: to_mnist(c))
        t_pred, probs = ms(lambda im=image: predictor.predict(im))
        prep.append(t_prep)
        pred.append(t_pred)
        both.append(t_prep + t_pred)
        answers.append(int(np.argmax(probs)))
        images.append(image)
    for image in images:
        x = image.reshape(1, *INPUT_SHAPE)
        eager.append(ms(lambda x=x: model(x, training=False).numpy())[0])
        slow.append(ms(lambda x=x: model.predict(x, verbose=0))[0])

    extras = images[: args.extras]  # for the slower extras (saliency, feature maps)
    occl = [ms(lambda im=im: predictor.saliency(im))[0] for im in extras]
    grad = [ms(lambda im=im: predictor.saliency(im, method="gradient"))[0] for im in extras]
    fmaps = [ms(lambda im=im: predictor.feature_maps(im))[0] for im in extras]
    maps = predictor.feature_maps(extras[0])
    grids = [ms(lambda: [feature_grid(v, cols=8) for v in maps.values()])[0] for _ in extras]

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
    print(
        f"target p50 <= {TARGET_P50_MS:.0f} ms for to_mnist + predict: {p50:.2f} ms, "
        f"{verdict(p50 <= TARGET_P50_MS)}"
    )
    occl50 = float(np.percentile(occl, 50))
    print(
        f"occlusion saliency < {SALIENCY_BUDGET_MS:.0f} ms: p50 {occl50:.1f} ms, "
        f"max {np.max(occl):.1f} ms, {verdict(float(np.max(occl)) < SALIENCY_BUDGET_MS)}"
    )
    accuracy = float(np.mean(np.array(answers) == labels))
    print(f"accuracy on these drawings: {accuracy:.1%}")


if __name__ == "__main__":
    main()
