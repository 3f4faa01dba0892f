"""What does the training job cost over a plain `model.fit`?

The same data, model and settings, trained two ways, interleaved (plain, job, plain,
job, ...). By default the Train page's Quick demo (`recipe.QUICK_DEMO`: the `quick`
preset, one epoch of all 60,000 images, batch 128, a one-cycle learning rate peaking at
0.01, validation on the 10,000 test images), where the job's per-batch work weighs
most: about 430 steps of a few milliseconds. `--preset lab7` measures Lab 7 instead (on
a seeded 10,000-image subset, 2 epochs, validation on 2,000 test images, unless the
sizes are given). Subsets are `training.select_subset`'s, exactly what the job picks.


- plain: `model.fit(x, y, validation_data=(x_val, y_val))` in this thread;
- job:   what an engine's trainer does with a run, here in this process and thread:
         `RunRegistry(tmp).submit(cfg, role=OWNER)`, `claim_next`, then
         `training.train_run(registry, run, data)`: fit with a callback per execution of
         `model.STEPS_PER_EXECUTION` batches that buffers the points and writes them to
         the store at most every `training.FLUSH_EVERY_S` (with the run's position and
         heartbeat, and reading the stop request), a heartbeat thread, and per epoch a
         validation (`evaluation.evaluate`, which also counts the mistakes), a checkpoint
         (`save_model`), a resume checkpoint (not after the last epoch) and a registry
         write. The last epoch's validation is the run's result: nothing is reloaded.
         Ray's own cost (queue, worker process) is `benchmarks/engine.py`'s.

Both times include the same preparation (subset, scaling, one-hot, building the model).
The job is timed twice, from its submission: up to its last epoch's checkpoint (the
training itself, the figure the target applies to) and up to `train_run` returning
with the run recorded as finished (end to end). To show where the difference goes, the
job's epoch-end and batch-end methods are wrapped with a clock in this process (nothing
else changes).
A short untimed warm-up fit comes first, so the first timed run does not pay
TensorFlow's one-off start-up.

Prints figures, asserts nothing. Target: job samples/s >= 0.95 x plain.

    .venv/bin/python benchmarks/training_overhead.py [--quick] [--runs 3] [--preset lab7]
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import common
from common import fmt, stats, verdict

from mnist_demo import queue
from mnist_demo.recipe import LAB_BATCH_SIZE, LAB_SEED

TARGET_RATIO = 0.95


def main() -> None:
    parser = common.ArgumentParser(__doc__, runs=1, epochs=1, train_size=2000, test_size=500)
    parser.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--preset", choices=["quick", "lab7"], default="quick")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--test-size", type=int)
    parser.add_argument("--seed", type=int, default=LAB_SEED)
    args = parser.parse_args()
    import keras

    from mnist_demo import training
    from mnist_demo.classroom import OWNER  # the machine's owner, as the CLI
    from mnist_demo.data import load_mnist, one_hot, to_model_input
    from mnist_demo.evaluation import evaluate
    from mnist_demo.model import build_model, save_model
    from mnist_demo.recipe import QUICK_DEMO, TrainConfig
    from mnist_demo.runs import RunRegistry
    from mnist_demo.training import select_subset, train_run

    LAB7_SMALL = TrainConfig.for_preset("lab7", epochs=2, train_size=10000, test_size=2000)

    data = load_mnist()
    (x_train_all, y_train_all), (x_test_all, y_test_all) = data
    base = QUICK_DEMO if args.preset == "quick" else LAB7_SMALL
    given = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_size": args.train_size,
        "test_size": args.test_size,
        "seed": args.seed,
    }
    cfg = replace(base, **{k: v for k, v in given.items() if v is not None}).validate()

    # Instrumentation, in this process only: how long the job spends in its per-epoch
    # work (validation, checkpoint, registry) and in its per-batch callback (with its
    # writes to the store).
    spent: dict[str, list[float]] = {"epoch_end": [], "batch_end": [], "epoch_done_at": []}
    epoch_end, batch_end = training._Job.on_epoch_end, training._Job.on_train_batch_end

    def timed_epoch_end(self, epoch, logs=None):
        t = time.perf_counter()
        epoch_end(self, epoch, logs)
        spent["epoch_end"].append(time.perf_counter() - t)
        spent["epoch_done_at"].append(time.perf_counter())

    def timed_batch_end(self, batch, logs=None):
        t = time.perf_counter()
        out = batch_end(self, batch, logs)
        spent["batch_end"].append(time.perf_counter() - t)
        return out

    training._Job.on_epoch_end = timed_epoch_end
    training._Job.on_train_batch_end = timed_batch_end

    def plain_run() -> tuple[float, float]:
        start = time.perf_counter()
        x, y = select_subset(x_train_all, y_train_all, cfg.train_size, cfg.seed)
        xv, yv = select_subset(x_test_all, y_test_all, cfg.test_size, cfg.seed)
        x, y = to_model_input(x), one_hot(y)
        val = (to_model_input(xv), one_hot(yv))
        steps = cfg.epochs * -(-len(x) // cfg.batch_size)
        model = build_model(cfg.preset, cfg.learning_rate, cfg.seed, total_steps=steps)
        hist = model.fit(
            x,
            y,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            validation_data=val,
            shuffle=True,
            verbose=0,
        )
        return time.perf_counter() - start, float(hist.history["val_accuracy"][-1])

    def job_run(tmp: Path, i: int) -> tuple[float, float, float]:
        registry = RunRegistry(tmp / f"home-{i}" / "runs.sqlite")
        for v in spent.values():
            v.clear()
        start = time.perf_counter()
        run = registry.submit(cfg, role=OWNER, lesson_cap=False)
        claimed = queue.claim_next(registry, "training_overhead")
        assert claimed is not None and claimed.id == run.id
        run = train_run(registry, claimed, data)
        end = time.perf_counter()
        if run.status != "finished":
            print(f"  job run {i}: status {run.status}, error {run.error}")
        last_epoch = spent["epoch_done_at"][-1] if spent["epoch_done_at"] else end
        job_extras.append(sum(spent["epoch_end"]))
        job_batch_cb.append(sum(spent["batch_end"]))
        val = run.history.get("val_accuracy") or [float("nan")]
        return last_epoch - start, end - start, float(val[-1])

    samples = cfg.epochs * cfg.train_size
    common.header(__doc__)
    print(
        f"data: {cfg.train_size:,} training images (seed {cfg.seed}), validation on "
        f"{cfg.test_size:,} test images; {cfg.preset}, {cfg.epochs} epoch(s), "
        f"batch {cfg.batch_size}, learning rate {cfg.learning_rate}; "
        f"{args.runs} run(s) each, interleaved"
    )

    # Warm-up: TensorFlow's thread pools, oneDNN kernels, Keras's first trace.
    x, y = select_subset(x_train_all, y_train_all, 512, 0)
    warm = build_model(cfg.preset, seed=cfg.seed)
    t = time.perf_counter()
    warm.fit(
        to_model_input(x),
        one_hot(y),
        batch_size=LAB_BATCH_SIZE,
        epochs=1,
        validation_data=(to_model_input(x[:256]), one_hot(y[:256])),
        verbose=0,
    )
    print(f"warm-up fit (512 images, untimed): {time.perf_counter() - t:.1f} s\n")
    del warm
    keras.backend.clear_session()

    plain_s, job_train_s, job_total_s = [], [], []
    plain_acc, job_acc = [], []
    job_extras, job_batch_cb = [], []  # seconds per run
    with tempfile.TemporaryDirectory(prefix="digit-lab-overhead-") as tmp:
        for i in range(args.runs):
            s, acc = plain_run()
            plain_s.append(s)
            plain_acc.append(acc)
            print(f"  run {i + 1} plain: {s:6.2f} s  {samples / s:7.0f} samples/s  val {acc:.4f}")
            s_train, s_total, acc = job_run(Path(tmp), i)
            job_train_s.append(s_train)
            job_total_s.append(s_total)
            job_acc.append(acc)
            print(
                f"  run {i + 1} job:   {s_train:6.2f} s  {samples / s_train:7.0f} samples/s  "
                f"val {acc:.4f}   (end to end {s_total:.2f} s)"
            )

        # Where the job's extra time goes: its per-epoch extras, timed alone.
        xv, yv = select_subset(x_test_all, y_test_all, cfg.test_size, cfg.seed)
        model = build_model(cfg.preset, seed=cfg.seed)
        evaluate(model, xv, yv)  # trace once
        eval_s, save_s = [], []
        for k in range(args.runs):
            t = time.perf_counter()
            evaluate(model, xv, yv)
            eval_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            save_model(model, Path(tmp) / f"ckpt-{k}.keras")
            save_s.append(time.perf_counter() - t)

    plain_rate = [samples / s for s in plain_s]
    job_rate = [samples / s for s in job_train_s]
    job_total_rate = [samples / s for s in job_total_s]
    ratio = stats(job_rate)[0] / stats(plain_rate)[0]
    ratio_total = stats(job_total_rate)[0] / stats(plain_rate)[0]
    pair_ratios = [j / p for j, p in zip(job_rate, plain_rate, strict=True)]

    print()
    print(f"training samples per second ({samples:,} samples per run)")
    print(f"  plain model.fit(validation_data=...)      {fmt(plain_rate, digits=0)}")
    print(f"  train_run, to last epoch's checkpoint      {fmt(job_rate, digits=0)}")
    print(f"  train_run, end to end (run recorded)       {fmt(job_total_rate, digits=0)}")
    print(f"  seconds per run: plain {fmt(plain_s, 's')}")
    print(f"                   job   {fmt(job_train_s, 's')}; end to end {fmt(job_total_s, 's')}")
    print(f"  final validation accuracy: plain {fmt(plain_acc, digits=4)}")
    print(f"                             job   {fmt(job_acc, digits=4)}")
    print(
        f"inside the job, per run: epoch ends (validation + checkpoint + registry) "
        f"{fmt(job_extras, 's')}; per-batch callback (store writes included) "
        f"{fmt(job_batch_cb, 's', 3)}"
    )
    print(
        f"the job's per-epoch extras timed alone: evaluation.evaluate on {cfg.test_size:,} "
        f"{fmt(eval_s, 's')}; save_model {fmt(save_s, 's')}"
    )
    extra = [j - p for j, p in zip(job_total_s, plain_s, strict=True)]
    print(f"the whole job (submit to result recorded) minus plain fit, per pair: {fmt(extra, 's')}")
    print()
    print(
        f"ratio job/plain (samples/s, medians): {ratio:.3f} to the last checkpoint, "
        f"{ratio_total:.3f} end to end; per interleaved pair: "
        + ", ".join(f"{r:.3f}" for r in pair_ratios)
    )
    print(
        f"target job/plain >= {TARGET_RATIO}: {ratio:.3f}, {verdict(ratio >= TARGET_RATIO)} "
        f"(end to end {ratio_total:.3f}, {verdict(ratio_total >= TARGET_RATIO)})"
    )


if __name__ == "__main__":
    main()
