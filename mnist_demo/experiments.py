"""Every student runs the lab: experiment cards, quotas, the class queue, the leaderboard.

An experiment is a normal run (runs.py) of the lab's network with a student's values
(recipe.Network, the optimizer, learning rate, batch size, epochs, training images),
owned by the student. The rules live here, where an experiment is submitted or
cancelled, never only on the page:

- every value inside its range (RANGES), and inside the class's limits the instructor
  sets (maximum epochs and training images);
- at most one experiment queued or running per student;
- the instructor's runs go first; students' experiments are taken round-robin (the
  student with the fewest experiments started so far goes next: runs.claim_next), and
  the instructor can pause the students' queue;
- a student cancels their own experiment, never anyone else's.

The leaderboard ranks finished experiments on the MNIST test set, and on the class's
own drawings in a column hidden from students until the instructor reveals it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from mnist_demo import queue
from mnist_demo.classroom import Action, Role, require
from mnist_demo.errors import DigitLabError
from mnist_demo.models import DRAW_MODEL, PROJECTOR, shipped_info, usable
from mnist_demo.recipe import (
    LAB_BATCH_SIZE,
    LAB_LEARNING_RATE,
    LAB_SEED,
    OPTIMIZERS,
    TEST_SIZE,
    TRAIN_SIZE,
    Network,
    TrainConfig,
)
from mnist_demo.runs import ENDED, INSTRUCTOR, Run, RunRegistry

STUDENT_PRIORITY = 1  # after the instructor's runs (0)
LIMITS = "experiment_limits"  # settings keys
REVEALED = "leaderboard_revealed"


class ExperimentError(DigitLabError):
    """An experiment that cannot be submitted or changed; the message says why."""


# --- the card: what a student may change, and how far ----------------------------------


@dataclass(frozen=True)
class Knob:
    label: str
    low: float
    high: float
    words: str = ""  # the workbook's words, or why the range is what it is
    choices: tuple[Any, ...] = ()  # when only some values make sense


RANGES: dict[str, Knob] = {
    "conv1_filters": Knob("Conv 1 filters", 4, 128, "the lab: 32 feature maps"),
    "conv1_kernel": Knob("Conv 1 kernel", 2, 7, "the lab: 5x5", choices=(2, 3, 5, 7)),
    "conv2_filters": Knob("Conv 2 filters", 4, 128, "the lab: 64 feature maps"),
    "conv2_kernel": Knob(
        "Conv 2 kernel",
        2,
        5,
        "the workbook's text says 5x5, its code (2, 2): run both and settle it",
        choices=(2, 3, 5),
    ),
    "dropout_conv": Knob("Dropout after the convolutions", 0.0, 0.8, "the lab: 0.25"),
    "dense_units": Knob("Dense units", 16, 2000, "the lab: 1000"),
    "dropout_dense": Knob("Dropout before the output", 0.0, 0.8, "the lab: 0.5"),
    "learning_rate": Knob("Learning rate", 1e-5, 0.5, "the lab: Adam's 0.001"),
    "batch_size": Knob("Batch size", 8, 1024, "the lab: 128"),
    "epochs": Knob("Epochs", 1, 30, "the lab: 12"),
    "train_size": Knob("Training images", 500, TRAIN_SIZE, "the lab: all 60,000"),
}

# The class's default experiment: the lab's network and recipe on a slice of MNIST, small
# enough that thirty of them finish within a lesson on a 2-core laptop
# (benchmarks/experiments_capacity.py; README).
DEFAULT_EPOCHS = 1
DEFAULT_TRAIN_SIZE = 3_000
LAB_EXPERIMENT = TrainConfig(
    preset="lab7",
    epochs=DEFAULT_EPOCHS,
    batch_size=LAB_BATCH_SIZE,
    learning_rate=LAB_LEARNING_RATE,
    train_size=DEFAULT_TRAIN_SIZE,
    test_size=TEST_SIZE,
    seed=LAB_SEED,
    network=Network(),
)


def card_config(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from the card's values (any subset; the rest are the lab's), checked
    against RANGES: ExperimentError names every value out of range, with its range."""
    network_fields = set(Network.__dataclass_fields__)
    unknown = set(values) - set(RANGES) - {"optimizer"}
    if unknown:
        raise ExperimentError(f"not on the card: {', '.join(sorted(unknown))}")
    problems = []
    for name, value in values.items():
        if name == "optimizer":
            if value not in OPTIMIZERS:
                problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
            continue
        knob = RANGES[name]
        if knob.choices and value not in knob.choices:
            problems.append(f"{knob.label} must be one of {', '.join(map(str, knob.choices))}")
        elif not knob.low <= value <= knob.high:
            problems.append(f"{knob.label} must be between {knob.low:g} and {knob.high:g}")
    if problems:
        raise ExperimentError("; ".join(problems))
    network = replace(Network(), **{k: v for k, v in values.items() if k in network_fields})
    rest = {k: v for k, v in values.items() if k not in network_fields}
    return replace(LAB_EXPERIMENT, network=network, **rest)


def changes(cfg: TrainConfig) -> str:
    """'What I changed', as the difference from the lab's recipe: "conv2 kernel 2 → 5,
    epochs 1 → 3"; "the lab's recipe" when nothing changed."""
    diff = cfg.changes_from(LAB_EXPERIMENT)
    diff.pop("test_size", None)
    diff.pop("seed", None)
    if not diff:
        return "the lab's recipe"
    label = {k: v.label.lower() for k, v in RANGES.items()}
    return ", ".join(
        f"{label.get(k, k)} {a:g} → {b:g}"
        if isinstance(a, int | float) and isinstance(b, int | float)
        else f"{label.get(k, k)} {a} → {b}"
        for k, (a, b) in diff.items()
    )


# --- what it costs: parameters, multiply-adds, an estimate ------------------------------


def _conv_out(side: int) -> int:
    return side // 2  # 'same' convolutions keep the side; each 2x2 pool halves it


def parameters(net: Network) -> int:
    """The network's weights, counted as Keras counts them ('same' padding)."""
    c1 = (net.conv1_kernel**2 * 1 + 1) * net.conv1_filters
    c2 = (net.conv2_kernel**2 * net.conv1_filters + 1) * net.conv2_filters
    flat = _conv_out(_conv_out(28)) ** 2 * net.conv2_filters
    return c1 + c2 + (flat + 1) * net.dense_units + (net.dense_units + 1) * 10


def multiply_adds(net: Network) -> int:
    """Multiply-adds for one image's forward pass: what training time scales with."""
    c1 = 28 * 28 * net.conv1_kernel**2 * net.conv1_filters
    c2 = 14 * 14 * net.conv2_kernel**2 * net.conv1_filters * net.conv2_filters
    flat = 7 * 7 * net.conv2_filters
    return c1 + c2 + flat * net.dense_units + net.dense_units * 10


# Seconds per (image x multiply-add) for training (forward + backward + update) and for
# scoring, and a fixed cost per run: measured on this 2-core machine with the lab's
# network (a Lab 7 epoch of 60,000 images ~16 s; scoring 10,000 ~1.5 s; start ~1.5 s).
# `estimate_seconds` prefers what this server's own finished runs measured.
TRAIN_S_PER_MAC = 16.0 / (60_000 * 7_257_000)
SCORE_S_PER_MAC = 1.5 / (10_000 * 7_257_000)
START_S = 1.5


def estimate_seconds(cfg: TrainConfig, history: list[Run] | None = None) -> float:
    """About how long the run trains on this server. When finished runs of the lab's
    network are known, scaled by how much faster or slower they were than the constants
    (this server's own pace)."""
    scale = 1.0
    measured = [
        (r.duration_s, _model_seconds(r.config))
        for r in history or []
        if r.status == "finished" and r.duration_s and r.config.preset == "lab7"
    ]
    if measured:
        scale = sum(d for d, _ in measured) / max(sum(m for _, m in measured), 1e-9)
    return _model_seconds(cfg) * scale


def _model_seconds(cfg: TrainConfig) -> float:
    macs = multiply_adds(cfg.network or Network())
    train = cfg.epochs * cfg.train_size * macs * TRAIN_S_PER_MAC
    score = cfg.epochs * cfg.test_size * macs * SCORE_S_PER_MAC
    return START_S + train + score


# --- the class's rules, set by the instructor ---------------------------------------------


@dataclass(frozen=True)
class ClassLimits:
    max_epochs: int = 5
    max_train_images: int = 20_000


def limits(registry: RunRegistry) -> ClassLimits:
    raw = registry.store.setting(LIMITS)
    return ClassLimits(**json.loads(raw)) if raw else ClassLimits()


def set_limits(registry: RunRegistry, new: ClassLimits, *, role: Role) -> None:
    require(role, Action.MANAGE_EXPERIMENTS)
    if not 1 <= new.max_epochs <= RANGES["epochs"].high:
        raise ExperimentError(f"maximum epochs must be between 1 and {RANGES['epochs'].high:g}")
    if not RANGES["train_size"].low <= new.max_train_images <= TRAIN_SIZE:
        raise ExperimentError(
            f"maximum training images must be between {RANGES['train_size'].low:g} and {TRAIN_SIZE}"
        )
    registry.store.set_setting(LIMITS, json.dumps(new.__dict__))


# --- a student's experiments ---------------------------------------------------------------


def experiments_of(registry: RunRegistry, student: str) -> list[Run]:
    return [r for r in registry.list_runs() if r.owner == student]


def submit(registry: RunRegistry, student: str, cfg: TrainConfig) -> Run:
    """Queue a student's experiment, or refuse it (ExperimentError) saying why: a value
    outside the class's limits, or one already queued or running (and where it is)."""
    if not student or student == INSTRUCTOR:
        raise ExperimentError("an experiment belongs to a student")
    cfg.validate()
    problems = limit_problems(registry, cfg)
    if problems:
        raise ExperimentError("; ".join(problems) + " (the instructor sets these limits)")
    for run in experiments_of(registry, student):
        if run.status == "running":
            raise ExperimentError(
                f"your experiment (run {run.id}) is training: wait for it or cancel it first"
            )
        if run.status == "queued":
            place = queue.position(registry, run.id)
            raise ExperimentError(
                f"your experiment (run {run.id}) is already waiting, #{place} in the queue: "
                "wait for it or cancel it first"
            )
    return registry.enqueue(cfg, owner=student, priority=STUDENT_PRIORITY)


def limit_problems(registry: RunRegistry, cfg: TrainConfig) -> list[str]:
    """What in `cfg` the class's limits refuse (the card shows it before Submit)."""
    rules = limits(registry)
    problems = []
    if cfg.epochs > rules.max_epochs:
        problems.append(f"at most {rules.max_epochs} epochs in this class")
    if cfg.train_size > rules.max_train_images:
        problems.append(f"at most {rules.max_train_images:,} training images in this class")
    return problems


def current(registry: RunRegistry, student: str) -> Run | None:
    """The student's experiment queued or running, else their latest, else None."""
    mine = experiments_of(registry, student)
    waiting = [r for r in mine if not r.ended]
    found = waiting or mine
    return found[0] if found else None


def cancel(registry: RunRegistry, run_id: int, *, student: str, role: Role) -> Run:
    """A student cancels their own experiment (queued: at once; running: after its batch,
    keeping its last finished epoch); the instructor may cancel any."""
    run = registry.get(run_id)
    if role != Role.INSTRUCTOR and run.owner != student:
        raise ExperimentError("you can only cancel your own experiment")
    if run.status in ENDED:
        raise ExperimentError(f"run {run.id} has already ended ({run.status})")
    return registry.stop(run_id)


def clear_student(registry: RunRegistry, student: str, *, role: Role) -> int:
    """Remove a student's ended experiments and cancel a waiting one (moderation)."""
    require(role, Action.MANAGE_EXPERIMENTS)
    removed = 0
    for run in experiments_of(registry, student):
        if run.status == "queued":
            registry.stop(run.id)
        if run.status != "running":
            registry.delete(run.id, role=role)
            removed += 1
    return removed


# --- the leaderboard ---------------------------------------------------------------------


def revealed(registry: RunRegistry) -> bool:
    return registry.store.setting(REVEALED) == "1"


def reveal(registry: RunRegistry, on: bool, *, role: Role) -> None:
    """Show (or hide again) the class-drawings score to students."""
    require(role, Action.MANAGE_EXPERIMENTS)
    registry.store.set_setting(REVEALED, "1" if on else None)


@dataclass(frozen=True)
class Row:
    run: Run
    owner: str
    test_accuracy: float | None
    misclassified: int | None
    parameters: int
    seconds: float | None
    changes: str
    class_accuracy: float | None  # None for a student until revealed


def leaderboard(registry: RunRegistry, *, role: Role, sort: str = "test_accuracy") -> list[Row]:
    """Every experiment that ended with a score (finished, or stopped or interrupted with
    a finished epoch), best first; an interrupted one is listed too, marked by its status.
    The class-drawings score is None for a student until the instructor reveals it."""
    show_class = role == Role.INSTRUCTOR or revealed(registry)
    rows = []
    for run in registry.list_runs():
        if run.owner == INSTRUCTOR or run.status not in ENDED or run.status == "cancelled":
            continue
        rows.append(
            Row(
                run=run,
                owner=run.owner,
                test_accuracy=run.test_accuracy,
                misclassified=run.misclassified,
                parameters=parameters(run.config.network or Network()),
                seconds=run.duration_s,
                changes=changes(run.config),
                class_accuracy=run.class_accuracy if show_class else None,
            )
        )
    keys = {
        "test_accuracy": lambda r: -(r.test_accuracy or -1),
        "class_accuracy": lambda r: -(r.class_accuracy or -1),
        "parameters": lambda r: r.parameters,
        "seconds": lambda r: r.seconds or float("inf"),
    }
    if sort not in keys:
        raise ExperimentError(f"sort by one of {', '.join(keys)}")
    return sorted(rows, key=keys[sort])


def page(rows: list[Row], number: int, size: int = 25) -> tuple[list[Row], int]:
    """One page of the leaderboard (1-based, clamped) and how many pages there are: the
    page draws `size` rows whatever the class has finished."""
    pages = max(1, -(-len(rows) // size))
    number = min(max(number, 1), pages)
    return rows[(number - 1) * size : number * size], pages


@dataclass(frozen=True)
class Reference:
    """The lab's recipe as the leaderboard's reference row: the shipped Lab 7 model's
    figures (its .json), trained on all 60,000 images for 12 epochs."""

    test_accuracy: float | None
    misclassified: int | None
    parameters: int
    seconds: float | None
    history: dict[str, list[float]]
    test_loss: float | None


def reference() -> Reference:
    from mnist_demo import config

    info = shipped_info(config.DEFAULT_MODEL_PATH.with_suffix(".json"))
    return Reference(
        test_accuracy=info.get("test_accuracy"),
        misclassified=info.get("misclassified"),
        parameters=parameters(Network()),
        seconds=info.get("training_seconds"),
        history=info.get("history", {}),
        test_loss=info.get("test_loss"),
    )


# --- the projector and the class's model for Draw ------------------------------------------

def set_draw_model(registry: RunRegistry, run_id: int | None, *, role: Role) -> None:
    """Make a run's model the Draw page's default for every new session (None: back to
    the shipped robust model). Only the instructor; only a run whose model is there."""
    require(role, Action.SET_ACTIVE_MODEL)
    if run_id is not None and not usable(registry.get(run_id)):
        raise ExperimentError(f"run {run_id} has no finished model to read drawings with")
    registry.store.set_setting(DRAW_MODEL, None if run_id is None else str(run_id))


def set_projector(registry: RunRegistry, run_id: int | None, *, role: Role) -> None:
    require(role, Action.MANAGE_EXPERIMENTS)
    if run_id is not None:
        registry.get(run_id)  # RunNotFoundError for a run that is not there
    registry.store.set_setting(PROJECTOR, None if run_id is None else str(run_id))


def names(registry: RunRegistry) -> dict[str, str]:
    """Student id -> the name the class sees (nickname, or "Student 3f9a"); empty when
    the students module is not there yet (then pages show the tag)."""
    try:
        from mnist_demo import students
    except ImportError:  # pragma: no cover - an older tree
        return {}
    return {s.id: s.display_name for s in students.list_students(registry.store)}


def name_of(student: str, known: dict[str, str]) -> str:
    return known.get(student) or f"Student {student[:4]}"
