"""The job a training worker runs: one claimed run, trained to its end.

`train_run` is called in a worker process (engine.py's Trainer, or a test calling it
directly), never in a web server. It fits the run's model with a Keras callback that
buffers each batch's metrics and hands them to the store a few times a second, together
with the run's position and heartbeat; the same write tells it whether a stop was
requested. Each finished epoch is validated on the test subset (as the lab does),
checkpointed and recorded, so a stop or a crash keeps the last complete epoch.

A run is a fresh preset model trained on MNIST unless a `Plan` says otherwise (a
fine-tune starts from a saved model and mixes in the class's drawings: finetune.py; the
job knows nothing about it beyond this protocol).

A stopped or interrupted run can be resumed: each finished epoch also writes the compiled
training model (weights, optimizer state and its step count, hence the learning-rate
schedule's position) to the run folder's resume checkpoint, which `fit` continues from
with `initial_epoch`, as Keras's BackupAndRestore does. The checkpoint is deleted when the
run can no longer be resumed (finished, or failed for its own reasons).

The store and the disk are not the run's: when the store does not answer (PostgreSQL
restarting, SQLite locked, a read-only or full disk), the job keeps its points and tries
again at the next write; fit goes on. An outage longer than OUTAGE_LIMIT_S stops fit at
its batch, like a stop, and leaves the run to its engine, which marks it interrupted
(resumable from its last epoch) once the store answers. The end is written as soon as
the store takes it, however long that takes, so a finished run is never recorded as
interrupted. A disk that cannot take an epoch's files interrupts the run, keeping the
last epoch that was saved. None of these fail a run or delete its checkpoint.
"""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from mnist_demo import data as mnist_data
from mnist_demo.evaluation import evaluate
from mnist_demo.files import atomic_save
from mnist_demo.lease import StaleTokenError
from mnist_demo.model import STEPS_PER_EXECUTION, build_model, load_model, save_model
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import HEARTBEAT_EVERY_S, CannotResumeError, Run, RunRegistry
from mnist_demo.store import StoreError

FLUSH_EVERY_S = 0.25  # points reach the store (and every browser) this often, at most
OUTAGE_LIMIT_S = 120.0  # a store silent this long stops fit; the run is then interrupted
RETRY_EVERY_S = 1.0  # how often a write the store refused is tried again
MAX_CHART_POINTS = 500  # per-batch points handed to a chart: about one per 1.5 pixel
# columns of a full-width chart, and every point is sent to every watching browser


def select_subset(
    x: np.ndarray, y: np.ndarray, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """All of it in its own order, or a seeded random subset (not the first n images:
    MNIST's files are not shuffled by writer)."""
    if size >= len(x):
        return x, y
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:size])
    return x[idx], y[idx]


class Plan(Protocol):
    """What a run starts from and learns on when it is not "a fresh preset model on the
    MNIST training subset". The job keeps everything else: live metrics, stop, per-epoch
    validation on the MNIST test subset, checkpoints and the record. A plan's runs are
    not resumable."""

    def training_data(
        self, x_train: np.ndarray, y_train: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs and one-hot labels to fit, given the run's MNIST training subset
        (uint8 images, integer labels)."""
        ...

    def build_model(self, config: TrainConfig, total_steps: int) -> keras.Model:
        """The compiled model to fit (`total_steps`: epochs x batches, for schedules)."""
        ...

    def epoch_metrics(self, model: keras.Model) -> dict[str, float]:
        """Extra per-epoch history entries, measured on the model after each epoch."""
        ...


class _Job(keras.callbacks.Callback):
    """The run's state while it trains, and the callback `fit` calls. Only cheap appends
    happen inside `fit`; the store is written at most every FLUSH_EVERY_S."""

    def __init__(
        self, registry: RunRegistry, run: Run, plan: Plan | None, val: Any, token: int | None
    ):
        super().__init__()
        self.token = token  # the engine lease's fencing token (None: not under an engine)
        self.phase = "preparing"  # what the run shows: preparing, training, scoring, saving
        self.outage_since: float | None = None  # the store has not answered since then
        self.fenced = False  # a newer engine owns the store: stop, write nothing more
        self.store_gone = False  # the outage outlasted OUTAGE_LIMIT_S
        self.registry, self.run, self.plan, self.val = registry, run, plan, val
        self.cfg = run.config
        self.first_epoch = run.epochs_done if run.resume else 0
        self.history: dict[str, list[float]] = {
            "loss": [],
            "accuracy": [],
            "val_loss": [],
            "val_accuracy": [],
        }
        if run.resume:
            for key, values in run.history.items():  # the history continues
                self.history[key] = [float(v) for v in values[: self.first_epoch]]
        self.epoch = self.first_epoch
        self.batch = 0
        self.batches_per_epoch = 0
        self.seq = len(registry.points(run.id)) if run.resume else 0
        self.pending: list[tuple[int, float, float, float]] = []
        self.last_flush = 0.0
        self.stop_requested = False
        self.partial_epoch = False
        self.last_scores: dict[str, Any] | None = None
        self.unrecorded: Path | None = None  # an epoch saved but not yet in the store

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_flush < FLUSH_EVERY_S:
            return
        self.last_flush = now
        news = self.pending
        try:
            stop = self.registry.record_progress(
                self.run.id,
                epoch=self.epoch,
                batch=self.batch,
                batches_per_epoch=self.batches_per_epoch,
                new_points=news,
                phase=self.phase,
                token=self.token,
            )
        except StaleTokenError:
            self.fenced = True
            return
        except StoreError:  # kept, and sent with the next write that the store takes
            self.outage_since = self.outage_since or now
            self.store_gone = now - self.outage_since > OUTAGE_LIMIT_S
            return
        self.pending, self.outage_since = [], None
        self.stop_requested = self.stop_requested or stop

    @property
    def must_stop(self) -> bool:
        return self.stop_requested or self.fenced or self.store_gone

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.flush(force=True)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch, self.batch = epoch + 1, 0
        self.set_phase("training")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        # Called once per execution of STEPS_PER_EXECUTION batches; Keras numbers an
        # epoch's last, shorter execution as if it were full.
        self.batch = min(batch + 1, self.batches_per_epoch)
        position = self.epoch - 1 + self.batch / self.batches_per_epoch
        loss, acc = float(logs.get("loss", np.nan)), float(logs.get("accuracy", np.nan))
        self.pending.append((self.seq, position, loss, acc))
        self.seq += 1
        self.flush()
        if self.must_stop:
            self.partial_epoch = self.batch < self.batches_per_epoch
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.fenced:
            return
        if self.partial_epoch:  # stopped mid-epoch: this epoch does not count, is not saved
            self.flush(force=True)  # but the points it drew are the room's
            return
        # One pass over the test subset gives the epoch's validation figures and, after
        # the last epoch, the run's result (the misclassified count too).
        self.set_phase("scoring")
        scores = evaluate(self.model, *self.val).summary()
        extra = self.plan.epoch_metrics(self.model) if self.plan is not None else {}
        self.set_phase("saving")
        path = self.registry.run_dir(self.run.id) / "model.keras"
        save_model(self.model, path)
        # Plans' runs are not resumable; after the last epoch there is nothing to resume.
        if self.plan is None and epoch + 1 < self.cfg.epochs:
            _save_resume_checkpoint(self.model, self.registry.resume_path(self.run.id))
        self.history["loss"].append(float(logs["loss"]))
        self.history["accuracy"].append(float(logs["accuracy"]))
        self.history["val_loss"].append(float(scores["test_loss"]))
        self.history["val_accuracy"].append(float(scores["test_accuracy"]))
        for key, value in extra.items():
            self.history.setdefault(key, []).append(float(value))
        self.last_scores = scores
        self.unrecorded = path  # until the store has this epoch's record
        self.record_epoch(limit_s=OUTAGE_LIMIT_S)

    def record_epoch(self, limit_s: float | None) -> None:
        if self.unrecorded is not None and self.store(
            lambda path=self.unrecorded: self.registry.record_epoch(
                self.run.id, self.history, path, self.token
            ),
            limit_s,
        ):
            self.unrecorded = None

    def store(self, write: Any, limit_s: float | None = None) -> bool:
        """Until the store takes `write` (True). False when this trainer was fenced, or
        when the outage outlasted `limit_s` (None: however long it takes)."""
        start = time.monotonic()
        while True:
            try:
                write()
                return True
            except StaleTokenError:
                self.fenced = True
                return False
            except StoreError:
                if limit_s is not None and time.monotonic() - start > limit_s:
                    self.store_gone = True
                    return False
                time.sleep(RETRY_EVERY_S)


def _batches(size: int, batch_size: int) -> int:
    """Batches in an epoch of `size` images: the last one may be short."""
    return -(-size // batch_size)


def _build(cfg: TrainConfig, total_steps: int) -> keras.Model:
    """The compiled model a fresh run of `cfg` starts from."""
    return build_model(
        cfg.preset,
        learning_rate=cfg.learning_rate,
        seed=cfg.seed,
        total_steps=total_steps,
        network=cfg.network,
        optimizer=cfg.optimizer,
    )


class Spare:
    """A run's model and inputs made ahead of it, while a trainer is idle.

    Of the seconds between a click and a run's first live point, most went to three
    things a warm trainer can do before the click (measured here for the Quick demo: 2.9
    s in all): building the model, tracing its training step (TensorFlow makes a graph
    on the first batch) and handing fit 188 MB of images (a first copy into TensorFlow's
    memory, 0.6-1.5 s). A trainer keeps one Spare for the run it expects next (the
    Quick demo): the model built exactly as `train_run` would build it, its training
    step traced by one real step on a few images and then every variable (weights,
    optimizer state and step count, metrics) put back as built, and the run's inputs
    already TensorFlow tensors. A run whose config matches starts from it and trains
    exactly as it would have from scratch (tests/test_training.py); any other run makes
    its own.
    """

    def __init__(self, cfg: TrainConfig, data: mnist_data.Arrays):
        (x_train, y_train), _ = data
        self.config = cfg
        x_train, y_train = select_subset(x_train, y_train, cfg.train_size, cfg.seed)
        self.inputs = (
            keras.ops.convert_to_tensor(mnist_data.to_model_input(x_train)),
            keras.ops.convert_to_tensor(mnist_data.one_hot(y_train)),
        )
        size = len(x_train)
        self.model = _build(cfg, cfg.epochs * _batches(size, cfg.batch_size))
        # Adam makes its moments on the first step: made now, they are put back too
        self.model.optimizer.build(self.model.trainable_variables)
        variables = [
            *self.model.variables,
            *self.model.optimizer.variables,
            *self.model.metrics_variables,
        ]
        as_built = [keras.ops.convert_to_numpy(v) for v in variables]
        # One execution of the traced loop, and the run's last short batch if it has
        # one: a partial batch makes the batch size unknown to the trace, as in the run
        # (a different shape would trace again on the run's first batch).
        n = min(size, cfg.batch_size * STEPS_PER_EXECUTION + size % cfg.batch_size)
        x, y = self.inputs
        self.model.fit(x[:n], y[:n], batch_size=cfg.batch_size, epochs=1, verbose=0)
        for variable, value in zip(variables, as_built, strict=True):
            variable.assign(value)

    def fits(self, run: Run) -> bool:
        return run.config == self.config and not run.resume and run.fine_tune is None


def train_run(
    registry: RunRegistry,
    run: Run,
    data: mnist_data.Arrays,
    plan: Plan | None = None,
    spare: Spare | None = None,
    token: int | None = None,
) -> Run | None:
    """Train a claimed run (status running) to its end and record it: finished, stopped
    (a stop request; its last full epoch kept), interrupted (the store stayed away too
    long, or the disk refused an epoch's files: resumable) or failed (its own error,
    recorded). A heartbeat thread says the run is alive while it builds, trains and
    validates. `spare`: a model built ahead of time, used if it was built for this run's
    config (the caller must not use it again). `token`: the engine lease's fencing
    token; None is returned, and nothing more written, once a newer engine owns the
    store."""
    done = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(registry, run.id, token, done),
        name=f"heartbeat-{run.id}",
        daemon=True,
    )
    beat.start()
    status, error, metrics = "failed", None, {}
    job: _Job | None = None
    try:
        cfg = run.config
        (x_train, y_train), (x_test, y_test) = data
        x_train, y_train = select_subset(x_train, y_train, cfg.train_size, cfg.seed)
        x_test, y_test = select_subset(x_test, y_test, cfg.test_size, cfg.seed)
        ready = spare if spare is not None and spare.fits(run) else None
        if ready is not None:
            x, y = ready.inputs
        elif plan is None:
            x, y = mnist_data.to_model_input(x_train), mnist_data.one_hot(y_train)
        else:
            x, y = plan.training_data(x_train, y_train)
        job = _Job(registry, run, plan, (x_test, y_test), token)
        job.batches_per_epoch = _batches(len(x), cfg.batch_size)
        total_steps = cfg.epochs * job.batches_per_epoch  # for LR schedules
        if run.resume:
            model = _load_resume_checkpoint(
                registry.resume_path(run.id), steps_done=run.epochs_done * job.batches_per_epoch
            )
            # a resume of the same run continues the same way whenever it is resumed
            keras.utils.set_random_seed((cfg.seed + job.first_epoch) % 2**32)
        elif plan is None:
            model = ready.model if ready is not None else _build(cfg, total_steps)
            # The shuffle's seed is set here, after the build, so a run is the same
            # whether its model was built now or ahead of time (a Spare).
            keras.utils.set_random_seed(cfg.seed)
        else:
            model = plan.build_model(cfg, total_steps)
        job.set_phase("training")
        if not job.must_stop:
            model.fit(
                x,
                y,
                batch_size=cfg.batch_size,
                epochs=cfg.epochs,
                initial_epoch=job.first_epoch,
                verbose=0,
                shuffle=True,
                callbacks=[job],
            )
        job.record_epoch(limit_s=None)  # an epoch the outage kept out of the store
        if job.fenced:
            return None
        if job.store_gone:
            status = "interrupted"
            error = (
                f"the class's database did not answer for over {OUTAGE_LIMIT_S:.0f} s; "
                "the run continues from its last finished epoch"
            )
        else:
            status = "stopped" if job.stop_requested else "finished"
        summary = job.last_scores
        if summary is None and job.history["loss"]:
            # resumed and stopped before a new epoch: score the checkpoint it has
            saved = load_model(registry.model_path(run.id))
            summary = evaluate(saved, x_test, y_test).summary()
        if summary is not None:
            metrics = {
                "test_loss": summary["test_loss"],
                "test_accuracy": summary["test_accuracy"],
                "misclassified": summary["misclassified"],
                "test_n": summary["n"],
            }
    except (StoreError, OSError) as e:  # the disk or the store, not the run: resumable
        status = "interrupted"
        error = f"{e}; the run continues from its last finished epoch"
    except Exception as e:  # a failed run is a result to show, not a crash
        error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        done.set()
    epochs = len(job.history["loss"]) if job is not None else run.epochs_done
    if status in ("finished", "failed") or epochs >= run.config.epochs:
        # nothing left to resume: the optimizer state is not kept
        registry.resume_path(run.id).unlink(missing_ok=True)
    ender = job or _Job(registry, run, plan, None, token)
    ended: list[Run] = []
    if not ender.store(
        lambda: ended.append(
            registry.finish_run(run.id, status, error=error, token=token, **metrics)
        )
    ):
        return None  # fenced: the run belongs to the newer engine
    return ended[-1]


def _heartbeat(
    registry: RunRegistry, run_id: int, token: int | None, done: threading.Event
) -> None:
    """Tell the store this run is alive every few seconds, whatever training is doing (a
    model being built, a long validation): a run whose heartbeat stops is interrupted."""
    while not done.wait(HEARTBEAT_EVERY_S):
        try:
            registry.beat(run_id, token)
        except StaleTokenError:
            return
        except Exception:
            continue


def _save_resume_checkpoint(model: keras.Model, path: Path) -> None:
    """The compiled training model with its optimizer state, to a temporary name and then
    renamed: a crash mid-write leaves the previous epoch's checkpoint whole."""
    atomic_save(path, model.save, suffix=".keras")


def _load_resume_checkpoint(path: Path, steps_done: int) -> keras.Model:
    """The training model saved after the run's last recorded epoch, compiled, with the
    optimizer's state and step count (so a learning-rate schedule goes on where it was)."""
    try:
        model = keras.saving.load_model(path, compile=True)
    except Exception as e:
        raise CannotResumeError(f"the resume checkpoint {path} is unreadable: {e}") from e
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if steps != steps_done:  # e.g. a crash between the checkpoint and the epoch's record
        raise CannotResumeError(
            f"the resume checkpoint {path} is at step {steps}, the run's last recorded "
            f"epoch at step {steps_done}"
        )
    return model
