"""Training that outlives the page.

A Streamlit script run is interrupted by every click, so `model.fit` runs in a
background thread owned by a `TrainingJob`. A Keras callback copies each batch's metrics
into a lock-protected buffer and checks a stop flag; any number of pages read
`snapshot()`. Each finished epoch is validated, checkpointed and recorded in the run
registry, so a stop or a crash keeps the last complete epoch.

Only one job runs per process (`start_training` enforces it): two fits would halve each
other's speed on a classroom laptop and the live charts would have to pick one.

A run is a fresh preset model trained on MNIST unless a `Plan` says otherwise: fine-tuning
(finetune.py) starts from a saved model and mixes in the class's drawings, and is still
a normal run here (thread, live charts, stop, checkpoints, history).

A stopped or interrupted run can be resumed (`resume_training`) from its last finished
epoch, as Keras's BackupAndRestore does: each finished epoch also writes the compiled
training model (weights, optimizer state and its step count, hence the learning-rate
schedule's position) to the run folder's resume checkpoint, which `fit` continues from
with `initial_epoch`. The checkpoint is deleted when the run can no longer be resumed
(finished or failed); shipped and exported models stay the small inference model.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from mnist_demo import data as mnist_data
from mnist_demo.classroom import Action, Role, require
from mnist_demo.data import TEST_SIZE, TRAIN_SIZE
from mnist_demo.errors import DigitLabError
from mnist_demo.evaluation import evaluate
from mnist_demo.model import build_model, load_model, save_model
from mnist_demo.recipe import (
    DEFAULT_PRESET,
    LAB_BATCH_SIZE,
    LAB_EPOCHS,
    LAB_LEARNING_RATE,
    LAB_SEED,
    PRESETS,
    QUICK_BATCH_SIZE,
    QUICK_EPOCHS,
    QUICK_LEARNING_RATE,
)
from mnist_demo.runs import HEARTBEAT_EVERY_S, Run, RunRegistry, training_now

MAX_CHART_POINTS = 500  # per-batch points handed to a chart: about one per 1.5 pixel
# columns of a full-width chart, and every point is sent to every watching browser
# every second
MAX_EPOCHS = 100
LESSON_MAX_EPOCHS = 30  # without "long runs": a run that ends within a lesson


class InvalidConfigError(DigitLabError, ValueError):
    """A training setting is out of range; the message says which and why."""


class TrainingAlreadyRunningError(DigitLabError, RuntimeError):
    """A second start while a job is running in this process."""


FINE_TUNE_KEY = "fine_tune"  # in a run's config: finetune.py's record of a fine-tune run


class CannotResumeError(DigitLabError):
    """This run cannot be continued; the message says why."""


@dataclass(frozen=True)
class TrainConfig:
    """The lab's recipe by default: lab7, 12 epochs, batch 128, Adam 1e-3, seed 7."""

    preset: str = DEFAULT_PRESET
    epochs: int = LAB_EPOCHS
    batch_size: int = LAB_BATCH_SIZE
    learning_rate: float = LAB_LEARNING_RATE
    train_size: int = TRAIN_SIZE
    test_size: int = TEST_SIZE
    seed: int = LAB_SEED

    def validate(self) -> TrainConfig:
        problems = []
        if self.preset not in PRESETS:
            problems.append(f"preset must be one of {', '.join(PRESETS)}")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            problems.append(f"epochs must be between 1 and {MAX_EPOCHS}")
        if not 1 <= self.train_size <= TRAIN_SIZE:
            problems.append(f"training subset must be between 1 and {TRAIN_SIZE} images")
        if not 1 <= self.test_size <= TEST_SIZE:
            problems.append(f"test subset must be between 1 and {TEST_SIZE} images")
        if self.batch_size < 1:
            problems.append("batch size must be at least 1")
        elif self.batch_size > self.train_size:
            problems.append(
                f"batch size {self.batch_size} is larger than the training subset "
                f"({self.train_size} images)"
            )
        if not 0 < self.learning_rate <= 1:
            problems.append("learning rate must be in (0, 1]")
        if not 0 <= self.seed < 2**32:
            problems.append("seed must be between 0 and 4294967295")
        if problems:
            raise InvalidConfigError("; ".join(problems))
        return self


# The Train page's one-click "Quick demo": the quick preset's own recipe on all 60,000.
QUICK_DEMO = TrainConfig(
    preset="quick",
    epochs=QUICK_EPOCHS,
    batch_size=QUICK_BATCH_SIZE,
    learning_rate=QUICK_LEARNING_RATE,
)


@dataclass
class Snapshot:
    """A consistent copy of a job's state, safe to hand to any page."""

    run_id: int
    config: TrainConfig
    status: str
    epoch: int  # 1-based epoch in progress (or last finished)
    batch: int  # batches done in the current epoch
    batches_per_epoch: int
    elapsed_s: float
    eta_s: float | None
    batch_metrics: list[dict[str, float]] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None
    stop_requested: bool = False

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def progress(self) -> float:
        total = self.config.epochs * max(self.batches_per_epoch, 1)
        done = len(self.history.get("loss", [])) * self.batches_per_epoch
        if self.status == "running":
            done = (self.epoch - 1) * self.batches_per_epoch + self.batch
        # epoch is 0 until the first batch starts: never a negative fraction
        return min(max(done / total, 0.0), 1.0) if total else 0.0


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
    MNIST training subset". The job keeps everything else: the thread, live metrics,
    stop, per-epoch validation on the MNIST test subset, checkpoints and the record."""

    def record(self) -> dict[str, Any]:
        """Entries added to the run's stored config, next to the TrainConfig's fields."""
        ...

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


class _LiveMetrics(keras.callbacks.Callback):
    """The only code that runs inside `fit`: cheap appends under a lock."""

    def __init__(self, job: TrainingJob):
        super().__init__()
        self.job = job

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.job._on_epoch_begin(epoch)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.job._on_batch_end(batch, logs or {}):
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.job._on_epoch_end(epoch, logs or {}, self.model)


class TrainingJob:
    """One training run in a background thread. `start()`, `snapshot()`, `stop()`."""

    def __init__(
        self,
        config: TrainConfig,
        registry: RunRegistry,
        data: mnist_data.Arrays,
        plan: Plan | None = None,
        resume: tuple[Run, keras.Model] | None = None,
    ):
        self.config = config.validate()
        self.registry = registry
        self._data = data
        self._plan = plan
        # a stopped or interrupted run to continue, and its checkpoint (see resume_training)
        self._resume = resume
        self._first_epoch = resume[0].epochs_done if resume is not None else 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Set when the job has ended. Waiting is on this, not on Thread.join: a join
        # interrupted by Ctrl+C leaves the thread looking dead while it still trains
        # (the CLI then read a run with no end time and crashed).
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.run: Run | None = None
        self._status = "created"
        self._error: str | None = None
        self._epoch = 0
        self._batch = 0
        self._batches_per_epoch = 0
        self._started = 0.0
        self._ended: float | None = None
        self._batch_metrics: list[tuple[float, float, float]] = []  # (epoch float, loss, acc)
        self._history: dict[str, list[float]] = {
            "loss": [],
            "accuracy": [],
            "val_loss": [],
            "val_accuracy": [],
        }
        self._partial_epoch = False
        self._val: tuple[np.ndarray, np.ndarray] | None = None  # test images, labels
        # the last recorded epoch's test scores: the saved checkpoint's, so the end of the
        # run needs no reload and no second scoring
        self._last_scores: dict[str, float | int] | None = None

    # --- public API --------------------------------------------------------------------

    @property
    def run_id(self) -> int:
        assert self.run is not None, "start() creates the run"
        return self.run.id

    def start(self) -> TrainingJob:
        if self._resume is not None:
            self.run = self.registry.reopen_run(self._resume[0].id)
            for key, values in self._resume[0].history.items():  # the history continues
                self._history[key] = [float(v) for v in values[: self._first_epoch]]
        else:
            extra = self._plan.record() if self._plan is not None else {}
            self.run = self.registry.create_run({**asdict(self.config), **extra})
        self._status = "running"
        self._started = time.monotonic()
        self._thread = threading.Thread(
            target=self._train, name=f"training-run-{self.run.id}", daemon=True
        )
        self._thread.start()
        threading.Thread(
            target=self._heartbeat, name=f"heartbeat-run-{self.run.id}", daemon=True
        ).start()
        return self

    def stop(self, *, role: Role) -> None:
        """Ask training to end after the current batch; the last full epoch is kept."""
        require(role, Action.STOP_TRAINING)
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; True when it has."""
        if self._thread is None:
            return True
        return self._done.wait(timeout)

    @property
    def is_running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def snapshot(self) -> Snapshot:
        with self._lock:
            points = self._batch_metrics
            stride = max(1, -(-len(points) // MAX_CHART_POINTS))
            sampled = points[::stride]
            if points and sampled[-1] is not points[-1]:
                sampled = [*sampled, points[-1]]
            end = self._ended if self._ended is not None else time.monotonic()
            elapsed = end - self._started if self._started else 0.0
            return Snapshot(
                run_id=self.run.id if self.run else -1,
                config=self.config,
                status=self._status,
                epoch=self._epoch,
                batch=self._batch,
                batches_per_epoch=self._batches_per_epoch,
                elapsed_s=elapsed,
                eta_s=self._eta(elapsed),
                batch_metrics=[{"epoch": e, "loss": lo, "accuracy": a} for e, lo, a in sampled],
                history={k: list(v) for k, v in self._history.items()},
                error=self._error,
                stop_requested=self._stop.is_set(),
            )

    # --- inside the training thread -----------------------------------------------------

    def _eta(self, elapsed: float) -> float | None:
        if self._status != "running" or not self._batches_per_epoch:
            return None
        # counted from this job's first epoch: a resumed run's earlier epochs took no time here
        done = (self._epoch - 1 - self._first_epoch) * self._batches_per_epoch + self._batch
        total = (self.config.epochs - self._first_epoch) * self._batches_per_epoch
        if done <= 0:
            return None
        return elapsed / done * (total - done)

    def _on_epoch_begin(self, epoch: int) -> None:
        with self._lock:
            self._epoch = epoch + 1
            self._batch = 0

    def _on_batch_end(self, batch: int, logs: dict) -> bool:
        loss, acc = float(logs.get("loss", np.nan)), float(logs.get("accuracy", np.nan))
        with self._lock:
            # Called once per execution of STEPS_PER_EXECUTION batches; Keras numbers an
            # epoch's last, shorter execution as if it were full.
            self._batch = min(batch + 1, self._batches_per_epoch)
            position = self._epoch - 1 + self._batch / self._batches_per_epoch
            self._batch_metrics.append((position, loss, acc))
        if self._stop.is_set():
            self._partial_epoch = self._batch < self._batches_per_epoch
            return True
        return False

    def _on_epoch_end(self, epoch: int, logs: dict, model: keras.Model) -> None:
        if self._partial_epoch:
            return  # stopped mid-epoch: this epoch does not count and is not saved
        assert self._val is not None, "set in _train before fit starts"
        # One pass over the test subset gives the epoch's validation figures and, after
        # the last epoch, the run's result (the misclassified count too).
        scores = evaluate(model, *self._val).summary()
        extra = self._plan.epoch_metrics(model) if self._plan is not None else {}
        path = self.registry.run_dir(self.run_id) / "model.keras"
        save_model(model, path)
        # Fine-tune runs are not resumable (see resume_training); after the last epoch
        # there is nothing left to resume, so that checkpoint would only be deleted.
        if self._plan is None and epoch + 1 < self.config.epochs:
            _save_resume_checkpoint(model, self.registry.resume_path(self.run_id))
        with self._lock:
            self._history["loss"].append(float(logs["loss"]))
            self._history["accuracy"].append(float(logs["accuracy"]))
            self._history["val_loss"].append(float(scores["test_loss"]))
            self._history["val_accuracy"].append(float(scores["test_accuracy"]))
            self._last_scores = scores
            for key, value in extra.items():
                self._history.setdefault(key, []).append(float(value))
            history = {k: list(v) for k, v in self._history.items()}
        self.registry.record_epoch(self.run_id, history, path)

    def _train(self) -> None:
        status, error = "failed", None
        metrics: dict[str, Any] = {}
        try:
            cfg = self.config
            (x_train, y_train), (x_test, y_test) = self._data
            x_train, y_train = select_subset(x_train, y_train, cfg.train_size, cfg.seed)
            x_test, y_test = select_subset(x_test, y_test, cfg.test_size, cfg.seed)
            if self._plan is None:
                x, y = mnist_data.to_model_input(x_train), mnist_data.one_hot(y_train)
            else:
                x, y = self._plan.training_data(x_train, y_train)
            self._val = (x_test, y_test)
            self._batches_per_epoch = -(-len(x) // cfg.batch_size)
            total_steps = cfg.epochs * self._batches_per_epoch  # for LR schedules
            if self._resume is not None:
                model = self._resume[1]
                # a resume of the same run continues the same way whenever it is resumed
                keras.utils.set_random_seed((cfg.seed + self._first_epoch) % 2**32)
            elif self._plan is None:
                model = build_model(
                    cfg.preset,
                    learning_rate=cfg.learning_rate,
                    seed=cfg.seed,
                    total_steps=total_steps,
                )
            else:
                model = self._plan.build_model(cfg, total_steps)
            model.fit(
                x,
                y,
                batch_size=cfg.batch_size,
                epochs=cfg.epochs,
                initial_epoch=self._first_epoch,
                verbose=0,
                shuffle=True,
                callbacks=[_LiveMetrics(self)],
            )
            status = "stopped" if self._stop.is_set() else "finished"
            summary = self._last_scores
            if summary is None and self._history["loss"]:
                # resumed and stopped before a new epoch: score the checkpoint it has
                saved = load_model(self.registry.model_path(self.run_id))
                summary = evaluate(saved, x_test, y_test).summary()
            if summary is not None:
                metrics = {
                    "test_loss": summary["test_loss"],
                    "test_accuracy": summary["test_accuracy"],
                    "misclassified": summary["misclassified"],
                    "test_n": summary["n"],
                }
        except Exception as e:  # a failed run is a result to show, not a crash
            error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            if status != "stopped" or len(self._history["loss"]) >= self.config.epochs:
                # nothing left to resume: the optimizer state is not kept
                self.registry.resume_path(self.run_id).unlink(missing_ok=True)
            try:
                self.run = self.registry.finish_run(self.run_id, status, error=error, **metrics)
            except Exception as e:  # the registry itself failed: keep the job's own state
                error = error or f"could not record the run: {e}"
                status = "failed"
            with self._lock:
                self._status, self._error, self._ended = status, error, time.monotonic()
            self._done.set()

    def _heartbeat(self) -> None:
        """Tell the registry this run is alive every few seconds, whatever the training
        thread is doing (building a model, a long epoch): a run whose heartbeat stops
        is interrupted (runs.training_now)."""
        while not self._done.wait(HEARTBEAT_EVERY_S):
            try:
                self.registry.beat(self.run_id)
            except Exception:
                continue


def _save_resume_checkpoint(model: keras.Model, path: Path) -> None:
    """The compiled training model with its optimizer state, to a temporary name and then
    renamed: a crash mid-write leaves the previous epoch's checkpoint whole."""
    tmp = path.with_name(path.name + ".tmp.keras")
    try:
        model.save(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


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


# --- one job per process --------------------------------------------------------------

_guard = threading.Lock()
_current: TrainingJob | None = None


def start_training(
    config: TrainConfig,
    registry: RunRegistry,
    data: mnist_data.Arrays,
    *,
    role: Role,
    lesson_cap: bool = True,
    plan: Plan | None = None,
) -> TrainingJob:
    """Start a job unless one is running in this process (then TrainingAlreadyRunningError,
    naming the running one). Only the instructor may; with `lesson_cap` (the app) a run
    longer than LESSON_MAX_EPOCHS needs the instructor's "long runs" setting. A `plan`
    changes what the run starts from and learns on (see Plan)."""
    global _current
    check_start(config, registry, role=role, lesson_cap=lesson_cap)
    with _guard:
        _refuse_if_running()
        _current = TrainingJob(config, registry, data, plan).start()
        return _current


def resume_training(
    run_id: int,
    registry: RunRegistry,
    data: mnist_data.Arrays,
    *,
    role: Role,
    lesson_cap: bool = True,
) -> TrainingJob:
    """Continue a stopped or interrupted run from its last finished epoch: the same run
    (id, history, per-epoch records) with its weights, optimizer state and learning-rate
    schedule position restored. Refused (CannotResumeError) for a run that is finished,
    failed, still training, has no finished epoch or no resume checkpoint (runs from
    before resuming existed), or is a fine-tune run."""
    global _current
    require(role, Action.START_TRAINING)
    registry.mark_interrupted()  # a run left "running" by a dead process is interrupted
    run = registry.get(run_id)
    config = check_resume(run, registry)
    check_start(config, registry, role=role, lesson_cap=lesson_cap)
    # Loaded here, not in the job: an unusable checkpoint is a refusal that leaves the run
    # as it was, not a failed run.
    batches = -(-min(config.train_size, len(data[0][0])) // config.batch_size)
    model = _load_resume_checkpoint(
        registry.resume_path(run.id), steps_done=run.epochs_done * batches
    )
    with _guard:
        _refuse_if_running()
        _current = TrainingJob(config, registry, data, resume=(run, model)).start()
        return _current


def check_resume(run: Run, registry: RunRegistry) -> TrainConfig:
    """Every reason a run cannot be resumed (CannotResumeError), else its settings."""
    names = {f.name for f in fields(TrainConfig)}
    if training_now(run):
        raise CannotResumeError(f"{run.name} is still training")
    if run.status == "finished":
        raise CannotResumeError(f"{run.name} has finished: there is nothing to resume")
    if run.status not in ("stopped", "interrupted"):
        raise CannotResumeError(
            f"{run.name} {run.status}: only a stopped or interrupted run can be resumed"
        )
    if FINE_TUNE_KEY in run.config:
        raise CannotResumeError(
            f"{run.name} is a fine-tune run, which cannot be resumed; start a new fine-tune"
        )
    if run.epochs_done < 1:
        raise CannotResumeError(
            f"{run.name} finished no epoch, so there is nothing to resume from; start a new run"
        )
    if run.epochs_done >= int(run.config.get("epochs", 0)):
        raise CannotResumeError(f"{run.name} has all its {run.epochs_done} epochs already")
    if not registry.resume_path(run.id).exists():
        raise CannotResumeError(
            f"{run.name} has no resume checkpoint (it was trained before runs could be "
            "resumed, or its checkpoint was removed); start a new run"
        )
    try:
        return TrainConfig(**{k: v for k, v in run.config.items() if k in names}).validate()
    except (TypeError, InvalidConfigError) as e:
        raise CannotResumeError(f"{run.name} has unusable settings: {e}") from e


def resumable(run: Run, registry: RunRegistry) -> bool:
    """Could `resume_training` continue this run (role and lesson cap aside)?"""
    try:
        check_resume(run, registry)
    except DigitLabError:
        return False
    return True


def check_start(
    config: TrainConfig, registry: RunRegistry, *, role: Role, lesson_cap: bool = True
) -> None:
    """Every reason `start_training` would refuse, checked without starting anything:
    for callers that have costly preparation to do first (finetune.start_fine_tune)."""
    require(role, Action.START_TRAINING)
    config.validate()
    if lesson_cap and config.epochs > LESSON_MAX_EPOCHS and not registry.long_runs_allowed():
        raise InvalidConfigError(
            f"at most {LESSON_MAX_EPOCHS} epochs in a lesson; the instructor can allow "
            "long runs on the Train page"
        )
    _refuse_if_running()


def _refuse_if_running() -> None:
    if _current is not None and _current.is_running:
        s = _current.snapshot()
        raise TrainingAlreadyRunningError(
            f"training already running: run {s.run_id} ({s.config.preset}), "
            f"epoch {s.epoch}/{s.config.epochs}; stop it or wait for it to finish"
        )


def current_job(registry: RunRegistry | None = None) -> TrainingJob | None:
    """The running job, or the last one this process ran (for its final charts); with
    `registry`, only a job recorded there (tests and servers may use several homes)."""
    job = _current
    if job is not None and registry is not None and job.registry.path != registry.path:
        return None
    return job
