"""How long a student waits between lifting the mouse and seeing the answer.

Drawn digits (tools/drawn_digits.py: MNIST test digits re-stroked as 280x280 RGBA
canvases, the Draw page's size) are each timed through the path the Draw page takes,
`Reader.read` (mnist_demo/reader.py): the canvas check, the preprocessing steps, one
pass through the network and the verdict of the model's novelty rule. Its parts beside
it: `preprocess.to_mnist`, `Predictor.forward` (the one pass) and the verdict; then the
same 28x28 inputs through an eager `model(x, training=False)` call and through
`model.predict`, which is what the Predictor exists to avoid; then the extras the page
shows (feature maps, saliency). This is the one benchmark that times the reading path.

Prints figures, asserts nothing. Target: p50 <= 15 ms for Reader.read.

    .venv/bin/python benchmarks/drawing_latency.py [--quick] [--n 300] [--model PATH] [--seed 7]
"""

from __future__ import annotations

from pathlib import Path

import common
import numpy as np
from common import timed, verdict

from mnist_demo import config, novelty
from mnist_demo.data import INPUT_SHAPE, load_mnist
from mnist_demo.inference import Predictor, feature_grid
from mnist_demo.model import build_model, load_model
from mnist_demo.preprocess import to_mnist
from mnist_demo.reader import Reader
from tools.drawn_digits import make_drawn_set, on_the_draw_page

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
        model, model_path = load_model(args.model), args.model
        which = f"shipped/trained model {args.model}"
    else:
        model, model_path = build_model("lab7"), None
        which = f"freshly built UNTRAINED lab7 model ({args.model} not found)"
    _, (x_test, y_test) = load_mnist()
    drawn, labels, _ = make_drawn_set(x_test, y_test, args.n, seed=args.seed)
    canvases = [on_the_draw_page(c) for c in drawn]  # white on black, as the canvas sends
    print(f"model:    {which}")
    print(
        f"drawings: {len(canvases)} x {canvases[0].shape} {canvases[0].dtype}, "
        "tools.drawn_digits.make_drawn_set (MNIST test digits re-stroked), on_the_draw_page"
    )

    build_ms, predictor = ms(lambda: Predictor(model))
    print(f"Predictor(model) incl. warm-up (tracing): {build_ms:.0f} ms, once per model")
    reader = Reader(predictor, model_path)
    rule = reader.rule
    fitted = f"fitted ({novelty.rule_path(model_path)})" if model_path else ""
    print(f"novelty rule: {fitted if rule.fitted else 'fallback (no head)'}\n")

    # Warm the other paths too, so no column pays a first-call cost.
    x0 = np.zeros((1, *INPUT_SHAPE), np.float32)
    model.predict(x0, verbose=0)
    model(x0, training=False)

    whole, prep, pred, judge, eager, slow = [], [], [], [], [], []
    answers, images = [], []
    for canvas in canvases:
        t_read, reading = ms(lambda c=canvas: reader.read(c))  # what the page waits for
        whole.append(t_read)
        answers.append(reading.digit)
        images.append(reading.image28)
    for canvas, image in zip(canvases, images, strict=True):  # its parts, one by one
        prep.append(ms(lambda c=canvas: to_mnist(c))[0])
        t_pred, (probs, features) = ms(lambda im=image: predictor.forward(im))
        pred.append(t_pred)
        judge.append(
            ms(
                lambda p=probs, f=features: rule.verdict(
                    p, novelty.head_inputs_from(model, f) if rule.fitted else None
                )
            )[0]
        )
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
    print(row("Reader.read (canvas -> verdict)", whole))
    print(row("  to_mnist (280x280 RGBA -> 28x28)", prep))
    print(row("  Predictor.forward (tf.function)", pred))
    print(row("  the verdict (head on the same pass)", judge))
    print(row("model(x, training=False) (eager)", eager))
    print(row("model.predict(x)", slow))
    print(row("to_mnist + model.predict", np.add(prep, slow)))
    print(row("saliency, occlusion (170 in 1 batch)", occl))
    print(row("saliency, gradient x input", grad))
    print(row("feature_maps (conv1 + conv2)", fmaps))
    print(row("feature_grid x2 (8 columns)", grids))

    p50 = float(np.percentile(whole, 50))
    print()
    print(
        f"model.predict / Predictor.forward (p50): "
        f"{np.median(slow) / np.median(pred):.0f}x slower; "
        f"eager call / Predictor.forward: {np.median(eager) / np.median(pred):.1f}x"
    )
    print(
        f"target p50 <= {TARGET_P50_MS:.0f} ms for Reader.read: {p50:.2f} ms, "
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
