"""Fine-tune a trained model on the class's own drawings, and show what it gained.

A model trained on MNIST reads MNIST; a class draws its own way (a thick marker, a
slant, a 7 with a bar). A few epochs from a trained model on MNIST mixed with the
class's drawings teach it that style without forgetting MNIST:

- the drawings are a *snapshot* of the class set taken at start, so drawings sent or
  hidden during the run change nothing;
- about one student in five is held out (`class_set.held_out`, by session, so nobody's
  drawings are on both sides): the model never trains on them, and they measure the gain;
- the drawings are oversampled to CLASS_SHARE of every epoch, so a few hundred count
  next to MNIST_PER_EPOCH MNIST images, and seen through the robust preset's
  `DrawingAugmentation` (tilt, shift, size, pen width), so they are not learnt by heart;
- a small learning rate that decays to nothing, so the weights move just far enough.

The recipe below was measured on a synthetic class (MNIST training digits re-drawn
slanted with a thick marker, through `to_mnist`; tests/test_finetune.py builds one) with
300 held-out drawings from 25 students, fine-tuning shipped Lab 7 (83 % / 99.32 %):
384 drawings, 3 epochs: 92.0 % / 99.40 % (two classes: +9 and +9 points, MNIST +0.08).
Learning rate 2e-4 gains up to a third less, 1e-3 a point or two more but costs MNIST
up to 0.14 points; a share of 10 % gains a third less, 40 % a point more for 0.1 of
MNIST; the held-out curve is flat by the third epoch. Augmentation is what keeps a small
class from being learnt by heart: with 72 drawings, 90.3 % with it, 87.7 % without
(falling at epoch 3); with 384 it changes little (+0.3 and -1.7 points). 30-50 s for
Lab 7 on 2 shared cores, about 2 min for the robust model.

Before -> after on the held-out drawings and on the MNIST test set is the result the
class sees: the first says what it learnt, the second whether it forgot anything.

It is a normal run (queued by `submit_fine_tune`, trained with a `FineTunePlan`): live charts, stop,
per-epoch checkpoints of the inference model, history, make active. Where it is stored:
the run's config gets a "fine_tune" entry (base model, class set and version, drawing
counts, recipe, the *before* accuracies, fixed at start); the *after* ones are the
run's own records, per epoch like every metric: history["class_accuracy"] (held-out
drawings) and the run's test accuracy (MNIST test, scored on the saved model).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np

from mnist_demo import data as mnist_data
from mnist_demo.class_set import ClassSet, Snapshot, held_out
from mnist_demo.classroom import Action, Role, require
from mnist_demo.data import INPUT_SHAPE, NUM_CLASSES, TEST_SIZE
from mnist_demo.errors import DigitLabError, ModelShapeError
from mnist_demo.evaluation import evaluate
from mnist_demo.model import DrawingAugmentation, load_model
from mnist_demo.models import ModelRef
from mnist_demo.recipe import (
    DEFAULT_PRESET,
    LAB_BATCH_SIZE,
    LAB_SEED,
    PRESETS,
    Accuracies,
    FineTuneRecord,
    TrainConfig,
)
from mnist_demo.runs import Run, RunRegistry
from mnist_demo.training import select_subset

# --- the recipe ---------------------------------------------------------------------------
FINE_TUNE_EPOCHS = 3
FINE_TUNE_LEARNING_RATE = 5e-4  # Adam, the start of a cosine decay to 0 over the run
MNIST_PER_EPOCH = 15_000  # a random subset of MNIST training images, fixed for the run
CLASS_SHARE = 0.25  # of each epoch's images: the training drawings, repeated to fill it
MIN_TRAIN_DRAWINGS = 50  # five of each digit: fewer teach no style, only noise

HISTORY_KEY = "class_accuracy"  # per-epoch accuracy on the held-out class drawings


class NotEnoughDrawingsError(DigitLabError):
    """The class set cannot support a fine-tune yet; the message says what is missing."""


# --- the class's drawings, split -------------------------------------------------------


@dataclass(frozen=True)
class ClassSplit:
    """A class-set snapshot cut into what fine-tuning trains on and what it is checked on."""

    set_id: int
    version: int
    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) int
    held_out_images: np.ndarray  # (M, 28, 28) uint8
    held_out_labels: np.ndarray  # (M,) int
    train_sessions: frozenset[str]
    held_out_sessions: frozenset[str]

    @property
    def n_train(self) -> int:
        return len(self.train_labels)

    @property
    def n_held_out(self) -> int:
        return len(self.held_out_labels)

    def missing_digits(self) -> list[int]:
        """Digits with no drawing to train on."""
        present = set(np.unique(self.train_labels).tolist())
        return [d for d in range(NUM_CLASSES) if d not in present]

    def problem(self) -> str | None:
        """Why this split cannot be fine-tuned on, and what the class can do, or None."""
        problems = []
        if self.n_train < MIN_TRAIN_DRAWINGS:
            aside = f" (plus {self.n_held_out} held out)" if self.n_held_out else ""
            problems.append(
                f"{self.n_train} drawings to train on{aside}, at least {MIN_TRAIN_DRAWINGS} "
                f"needed: {MIN_TRAIN_DRAWINGS - self.n_train} more"
            )
        missing = self.missing_digits()
        if missing:
            digits = ", ".join(str(d) for d in missing)
            them = "it" if len(missing) == 1 else "them"
            problems.append(f"no drawing of {digits} to train on yet: ask the class to draw {them}")
        if self.n_held_out == 0:
            problems.append(
                "none held out to measure the gain (one student in five is kept aside): "
                "drawings from more students are needed"
            )
        if not problems:
            return None
        return "Not enough class drawings to fine-tune: " + "; ".join(problems) + "."

    def check(self) -> ClassSplit:
        problem = self.problem()
        if problem:
            raise NotEnoughDrawingsError(problem)
        return self


def split_class_set(snapshot: Snapshot) -> ClassSplit:
    """Held out by session tag (`class_set.held_out`), never by drawing."""
    out = np.array([held_out(str(s)) for s in snapshot.sessions], dtype=bool)
    sessions = snapshot.sessions.astype(str)
    return ClassSplit(
        set_id=snapshot.set_id,
        version=snapshot.version,
        train_images=snapshot.images[~out],
        train_labels=snapshot.labels[~out].astype(np.int64),
        held_out_images=snapshot.images[out],
        held_out_labels=snapshot.labels[out].astype(np.int64),
        train_sessions=frozenset(sessions[~out].tolist()),
        held_out_sessions=frozenset(sessions[out].tolist()),
    )


def class_split(store: ClassSet) -> ClassSplit:
    """The current class set, snapshotted and split (what the Train page previews)."""
    return split_class_set(store.snapshot())


# --- the mix ----------------------------------------------------------------------------


def oversample(n_drawings: int, n_mnist: int, share: float, seed: int) -> np.ndarray:
    """Indices into the drawings, repeated so they make `share` of an epoch of n_mnist
    MNIST images: whole shuffled passes over all of them, so each drawing is seen the
    same number of times (give or take one)."""
    if n_drawings == 0:
        return np.zeros(0, dtype=np.int64)
    count = round(n_mnist * share / (1 - share))
    rng = np.random.default_rng(seed)
    passes = -(-count // n_drawings)
    return np.concatenate([rng.permutation(n_drawings) for _ in range(passes)])[:count]


def mix(
    mnist_images: np.ndarray,
    mnist_labels: np.ndarray,
    drawings: np.ndarray,
    drawing_labels: np.ndarray,
    share: float = CLASS_SHARE,
    seed: int = LAB_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images plus the oversampled drawings: uint8 (N, 28, 28) and int labels.
    (Order does not matter: fit shuffles every epoch.)"""
    picked = oversample(len(drawing_labels), len(mnist_labels), share, seed)
    images = np.concatenate([np.asarray(mnist_images), np.asarray(drawings)[picked]])
    labels = np.concatenate([np.asarray(mnist_labels), np.asarray(drawing_labels)[picked]])
    return images, labels.astype(np.int64)


def with_augmentation(
    base: keras.Model, learning_rate: float, total_steps: int, seed: int | None = LAB_SEED
) -> keras.Model:
    """The base model's layers (its trained weights) behind the robust preset's
    augmentation, compiled with Adam at a rate that decays to 0 over the run.
    `model.save_model` leaves the augmentation out again: the saved result is an
    inference model like the base. The layers are the base's own, so training changes
    `base` too: pass a freshly loaded model, never a cached one that pages share."""
    if not isinstance(base, keras.Sequential):
        raise ModelShapeError(
            "only a Sequential model (as Digit Lab trains them) can be fine-tuned here"
        )
    if tuple(base.input_shape[1:]) != INPUT_SHAPE or tuple(base.output_shape[1:]) != (NUM_CLASSES,):
        raise ModelShapeError(
            f"the base model maps {base.input_shape[1:]} to {base.output_shape[1:]}; "
            f"fine-tuning needs a digit classifier, {INPUT_SHAPE} to ({NUM_CLASSES},)"
        )
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = [layer for layer in base.layers if not isinstance(layer, DrawingAugmentation)]
    model = keras.Sequential(
        [keras.Input(shape=INPUT_SHAPE), DrawingAugmentation(seed=seed, name="augment"), *layers],
        name=base.name,
    )
    rate = keras.optimizers.schedules.CosineDecay(learning_rate, max(int(total_steps), 1))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


# --- the run ----------------------------------------------------------------------------


@dataclass
class FineTunePlan:
    """A `training.Plan`: start from `base`, learn on MNIST + the class drawings."""

    base: keras.Model
    classes: ClassSplit
    class_share: float = CLASS_SHARE
    seed: int = LAB_SEED

    def training_data(
        self, x_train: np.ndarray, y_train: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        c = self.classes
        images, labels = mix(
            x_train, y_train, c.train_images, c.train_labels, self.class_share, self.seed
        )
        return mnist_data.to_model_input(images), mnist_data.one_hot(labels)

    def build_model(self, config: TrainConfig, total_steps: int) -> keras.Model:
        return with_augmentation(self.base, config.learning_rate, total_steps, config.seed)

    def epoch_metrics(self, model: keras.Model) -> dict[str, float]:
        c = self.classes
        return {HISTORY_KEY: evaluate(model, c.held_out_images, c.held_out_labels).accuracy}


def _preset_of(model: keras.Model) -> str:
    """build_model names a model after its preset ("lab7_5x5" for "lab7-5x5")."""
    by_name = {p.replace("-", "_"): p for p in PRESETS}
    return by_name.get(model.name, DEFAULT_PRESET)


SNAPSHOT_FILE = "class_snapshot.npz"  # in the run folder: what the run learns on
BASE_FILE = "base.keras"  # in the run folder: the model it starts from


def submit_fine_tune(
    base: ModelRef | Path,
    registry: RunRegistry,
    store: ClassSet,
    *,
    role: Role,
    epochs: int = FINE_TUNE_EPOCHS,
    learning_rate: float = FINE_TUNE_LEARNING_RATE,
    mnist_per_epoch: int = MNIST_PER_EPOCH,
    class_share: float = CLASS_SHARE,
    batch_size: int = LAB_BATCH_SIZE,
    test_size: int = TEST_SIZE,
    seed: int = LAB_SEED,
    lesson_cap: bool = True,
) -> Run:
    """Queue a fine-tune of `base` (a shipped or registered model, or a model file) on
    MNIST and the current class set's training drawings, as a normal run.

    Refuses before queueing (NotEnoughDrawingsError, ModelFileError, the training
    refusals). The class set is snapshotted now, into the run's folder: drawings sent
    meanwhile wait for the next run. The worker measures the *before* accuracies."""
    require(role, Action.START_TRAINING)
    if not 0 < class_share < 1:
        raise ValueError(f"class_share must be in (0, 1), not {class_share}")
    base_name, base_path = (
        (base.name, base.path) if isinstance(base, ModelRef) else (Path(base).name, Path(base))
    )
    classes = split_class_set(store.snapshot()).check()
    cfg = TrainConfig(
        preset=_preset_of(load_model(base_path)),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        train_size=mnist_per_epoch,
        test_size=test_size,
        seed=seed,
    )
    registry.check_epochs(cfg, lesson_cap)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        **{f: getattr(classes, f) for f in ARRAYS},
        set_id=classes.set_id,
        version=classes.version,
        train_sessions=np.array(sorted(classes.train_sessions), dtype=str),
        held_out_sessions=np.array(sorted(classes.held_out_sessions), dtype=str),
    )
    record = FineTuneRecord(
        base=base_name,
        base_path=str(base_path),
        class_set=classes.set_id,
        version=classes.version,
        train_drawings=classes.n_train,
        held_out_drawings=classes.n_held_out,
        train_students=len(classes.train_sessions),
        held_out_students=len(classes.held_out_sessions),
        class_share=class_share,
        snapshot_file=SNAPSHOT_FILE,
    )
    return registry.submit(
        cfg,
        role=role,
        fine_tune=record,
        lesson_cap=lesson_cap,
        # the base model travels with the run: deleting its file (or its run) while the
        # fine-tune waits in the queue changes nothing
        files={SNAPSHOT_FILE: buffer.getvalue(), BASE_FILE: Path(base_path).read_bytes()},
    )


ARRAYS = ("train_images", "train_labels", "held_out_images", "held_out_labels")


def plan_for(registry: RunRegistry, run: Run) -> FineTunePlan:
    """In the worker: the plan a fine-tune run's record describes, with the base model's
    *before* accuracies measured and recorded (on the same test subset the run is
    scored on)."""
    record = run.fine_tune
    assert record is not None, "plan_for is for fine-tune runs"
    with np.load(registry.run_dir(run.id) / record.snapshot_file) as saved:
        classes = ClassSplit(
            set_id=int(saved["set_id"]),
            version=int(saved["version"]),
            train_sessions=frozenset(saved["train_sessions"].tolist()),
            held_out_sessions=frozenset(saved["held_out_sessions"].tolist()),
            **{f: saved[f] for f in ARRAYS},
        )
    copy = registry.run_dir(run.id) / BASE_FILE
    base = load_model(copy if copy.exists() else Path(record.base_path))
    if record.before is None:
        _, (x_test, y_test) = mnist_data.load_mnist()
        cfg = run.config
        x_test, y_test = select_subset(x_test, y_test, cfg.test_size, cfg.seed)
        before = Accuracies(
            class_held_out=evaluate(
                base, classes.held_out_images, classes.held_out_labels
            ).accuracy,
            mnist=evaluate(base, x_test, y_test).accuracy,
        )
        registry.set_fine_tune(run.id, replace(record, before=before))
    return FineTunePlan(base, classes, record.class_share, run.config.seed)


# --- the result -------------------------------------------------------------------------


@dataclass(frozen=True)
class FineTuneResult:
    """Before -> after for a fine-tune run; `after` is None until an epoch has finished."""

    base: str
    train_drawings: int
    held_out_drawings: int
    before: Accuracies
    after: Accuracies | None

    def summary(self) -> str:
        """One line for the class: "held-out class drawings 81.0 % → 93.5 %, MNIST test
        99.32 % → 99.28 %"."""
        b, a = self.before, self.after
        if a is None:
            return (
                f"held-out class drawings {b.class_held_out:.1%}, MNIST test {b.mnist:.2%} "
                "before fine-tuning"
            )
        return (
            f"held-out class drawings {b.class_held_out:.1%} → {a.class_held_out:.1%}, "
            f"MNIST test {b.mnist:.2%} → {a.mnist:.2%}"
        )


def result(run: Run) -> FineTuneResult | None:
    """A run's before -> after, or None for a run that is not a fine-tune (or whose
    worker has not measured the base model yet)."""
    info = run.fine_tune
    if info is None or info.before is None:
        return None
    before = info.before
    class_after = run.history.get(HISTORY_KEY) or []
    after = (
        Accuracies(class_held_out=class_after[-1], mnist=run.test_accuracy)
        if class_after and run.test_accuracy is not None
        else None
    )
    return FineTuneResult(
        base=info.base,
        train_drawings=info.train_drawings,
        held_out_drawings=info.held_out_drawings,
        before=before,
        after=after,
    )
