"""The `robust` preset also shown every training digit re-drawn as a canvas drawing,
with 5,000 training digits held out for choices: a lever of issue 17, measured once.

    python -m tools.train_robust [--epochs 14] [--output M.keras]

Measured (2026-11-25, 1,653 s on 2 cores shared with other work): 99.55 % on MNIST test,
99.35 % of the 10,000 re-drawn test digits, 99.46 % / 99.32 % of the held-out training
digits as written / re-drawn. The shipped robust model (no copies, all 60,000 digits,
25 epochs) has 99.65 % and 99.23 %: the copies halve the drawn-vs-written gap but cost
MNIST accuracy, and neither reaches issue 17's 99.6 % / 99.7 %, so this one is not
shipped. The run lands in the registry like any other; `--output` exports it.

Why re-drawn copies: on drawings the robust model made twice the errors it made on the
same digits as MNIST wrote them (the gap is the pen: a round brush of constant width
where MNIST has pressure and scanner blur). `tools.drawn_digits.draw_canvas` re-strokes
a digit's pen path the way the Draw page's canvas would; `to_mnist` then brings it back
to 28x28 exactly as it brings a student's drawing. Each training digit gets one such
copy (cached: about 6 minutes of CPU to make, once), so an epoch is 110,000 images.

Held out: `data.validation_split()` (5,000 training digits, never trained on here).
Every epoch records the model's accuracy on them as written and as re-drawn
(`holdout_accuracy`, `holdout_drawn_accuracy` in the history), and the novelty
thresholds and test-time choices are fitted on them; the MNIST test set only reports.
The run is a normal run of the registry (live on the Train page of a server on the same
data home), exported with its .json like `python -m mnist_demo train --output`. It is
trained here, in this process, not by the training engine: the engine's trainers know
only the plans a run's record names (a fine-tune), and this plan is a one-off tool's. So
the tool does what a trainer does: it submits the run, claims it at once as its own
worker (`RunRegistry.submit` + `claim_next`), and calls `training.train_run` with its
plan; a running engine never sees it queued.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_demo import config, queue
from mnist_demo.data import (
    array_sha256,
    load_mnist,
    one_hot,
    to_model_input,
    validation_split,
)
from mnist_demo.errors import DigitLabError
from tools.drawn_digits import draw_canvas

DRAWN_SEED = 17  # not the drawn test set's seed (0): other brushes, sizes, colours
EPOCHS = 14  # 14 x 110,000 images: about the 25 x 60,000 of the first robust model
CHUNK = 500


def _draw_chunk(args: tuple[np.ndarray, np.ndarray, int]) -> np.ndarray:
    from mnist_demo.preprocess import to_mnist

    images, indices, seed = args
    out = np.empty(images.shape, np.uint8)
    for k, (image, index) in enumerate(zip(images, indices, strict=True)):
        try:
            drawn = to_mnist(draw_canvas(image, np.random.default_rng([seed, int(index)])))
            out[k] = np.round(drawn * 255).astype(np.uint8)
        except DigitLabError:  # a stroke lost on the way: keep the digit as written
            out[k] = image
    return out


def drawn_copies(images: np.ndarray, seed: int = DRAWN_SEED, workers: int = 2) -> np.ndarray:
    """One re-drawn, `to_mnist`-ed copy of every image (uint8, same shape), seeded per
    index so any subset gets the same copies. Cached in the data folder by content."""
    key = array_sha256(images)[:16]
    path = config.data_dir() / f"drawn_copies_{key}_{seed}.npy"
    if path.exists():
        return np.load(path)
    jobs = [
        (images[i : i + CHUNK], np.arange(i, min(i + CHUNK, len(images))), seed)
        for i in range(0, len(images), CHUNK)
    ]
    start = time.perf_counter()
    # spawn, not fork: the parent has TensorFlow loaded, and a forked TF can hang
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = []
        for done, part in enumerate(pool.map(_draw_chunk, jobs), 1):
            parts.append(part)
            print(f"\rre-drawing: {done * CHUNK:,} of {len(images):,}", end="", flush=True)
    copies = np.concatenate(parts)
    print(f"\rre-drew {len(images):,} digits in {time.perf_counter() - start:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, copies)
    tmp.replace(path)
    return copies


@dataclass
class DrawnStylePlan:
    """A `training.Plan`: the training split as written plus its re-drawn copies; the
    held-out digits (both ways) measured after every epoch."""

    drawn: np.ndarray  # re-drawn copy of every MNIST training digit
    train_idx: np.ndarray
    holdout_idx: np.ndarray
    holdout: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # x, x drawn, y

    def record(self) -> dict[str, Any]:
        return {
            "drawn_copies": {"seed": DRAWN_SEED, "script": "tools/train_robust.py"},
            "held_out": len(self.holdout_idx),
        }

    def training_data(
        self, x_train: np.ndarray, y_train: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(x_train) != len(self.drawn):
            raise DigitLabError("train on the full training set: the split is by index")
        i, h = self.train_idx, self.holdout_idx
        self.holdout = (to_model_input(x_train[h]), to_model_input(self.drawn[h]), y_train[h])
        x = np.concatenate([x_train[i], self.drawn[i]])
        y = np.concatenate([y_train[i], y_train[i]])
        return to_model_input(x), one_hot(y)

    def build_model(self, config: Any, total_steps: int) -> Any:
        from mnist_demo.model import build_model

        return build_model(
            config.preset,
            learning_rate=config.learning_rate,
            seed=config.seed,
            total_steps=total_steps,
        )

    def epoch_metrics(self, model: Any) -> dict[str, float]:
        assert self.holdout is not None, "training_data runs first"
        x, x_drawn, y = self.holdout
        right = [
            float((model.predict(v, batch_size=1000, verbose=0).argmax(1) == y).mean())
            for v in (x, x_drawn)
        ]
        return {"holdout_accuracy": right[0], "holdout_drawn_accuracy": right[1]}


def _report_epochs(registry: Any, run_id: int, done: threading.Event) -> None:
    """Print each finished epoch's figures as the run records them (every 5 s, and once
    more at the end)."""
    shown = 0
    while True:
        finished = done.wait(5)
        h = registry.get(run_id).history
        while shown < len(h.get("loss", [])):
            print(
                f"epoch {shown + 1}: loss {h['loss'][shown]:.4f} "
                f"held-out {h['holdout_accuracy'][shown]:.4f} "
                f"held-out drawn {h['holdout_drawn_accuracy'][shown]:.4f} "
                f"test {h['val_accuracy'][shown]:.4f}",
                flush=True,
            )
            shown += 1
        if finished:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--output", type=Path, help="also export the model to this .keras path")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    from mnist_demo.__main__ import export_run  # the CLI's export: model + .json
    from mnist_demo.classroom import OWNER
    from mnist_demo.recipe import TrainConfig
    from mnist_demo.runs import RunRegistry
    from mnist_demo.serve import engine
    from mnist_demo.training import train_run

    data = load_mnist()
    drawn = drawn_copies(data[0][0], workers=args.workers)
    train_idx, holdout_idx = validation_split()
    plan = DrawnStylePlan(drawn, train_idx, holdout_idx)
    cfg = TrainConfig.for_preset("robust", epochs=args.epochs)
    registry = RunRegistry()
    if engine.status(registry.store).running:
        # its trainers would take the run from the queue and train it without this plan
        print(
            f"a training engine serves {registry.store.describe()}: stop it (or set "
            "MNIST_DEMO_HOME to another data home) and run the tool again",
            file=sys.stderr,
        )
        return 1
    # first in the queue (priority -1) and claimed at once by this process, its worker
    submitted = registry.submit(cfg, role=OWNER, lesson_cap=False, priority=-1)
    run = queue.claim_next(registry, "tools.train_robust")
    if run is None or run.id != submitted.id:  # an engine started meanwhile took it
        if run is not None:  # never train another run with this plan
            registry.finish_run(run.id, "interrupted", error="claimed by tools.train_robust")
        print(f"run {submitted.id} was taken by a training engine; stop it", file=sys.stderr)
        return 1
    print(f"run {run.id}: {cfg}, {len(train_idx):,} digits + their drawn copies")
    done = threading.Event()
    reporter = threading.Thread(
        target=_report_epochs, args=(registry, run.id, done), name="epochs", daemon=True
    )
    reporter.start()
    try:
        run = train_run(registry, run, data, plan=plan)
    finally:
        done.set()
        reporter.join()
    if run.status != "finished":
        print(f"run {run.id} {run.status}: {run.error}", file=sys.stderr)
        return 1
    print(f"run {run.id} finished in {run.duration_s:.0f} s")
    if args.output is None:
        return 0
    export_run(run, args.output, trained_by="python -m tools.train_robust")
    return 0


if __name__ == "__main__":
    sys.exit(main())
