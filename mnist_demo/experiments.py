"""Every student runs the lab: experiment cards, quotas, the class queue, the leaderboard.

An experiment is a normal run (runs.py) of the lab's network with a student's values
(recipe.Network, the optimizer, learning rate, batch size, epochs, training images),
owned by the student. The rules live here, where an experiment is submitted or
cancelled, never only on the page:

- every value inside its range (RANGES), a whole number where it must be one, and inside
  the class's limits the instructor sets (maximum epochs and training images, and a
  compute budget: the experiment's estimated minutes on this engine);
- at most one experiment queued or running per seat, checked in the transaction that
  queues it (three submits at once queue one);
- the instructor's runs go first; students' experiments are taken round-robin per
  person (queue.py), and the instructor can pause the students' queue;
- a student cancels their own experiment, never anyone else's;
- the engine stops an experiment that runs well past its budget (`overrunning`),
  keeping its last finished epoch and saying why.

The leaderboard ranks finished experiments on the MNIST test set, beside the lab's own
network trained within the class's limits, and on the class's own drawings in a column
hidden from students until the instructor reveals it (`class_scores_visible`: every page
asks it before showing any class-drawings score to a student).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from mnist_demo import queue, students
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
from mnist_demo.store import runs as runs_table

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
    whole: bool = True  # a count (filters, units, images, epochs): a whole number


RANGES: dict[str, Knob] = {
    "conv1_filters": Knob("Conv 1 filters", 4, 128, "the lab: 32 feature maps"),
    "conv1_kernel": Knob("Conv 1 kernel", 2, 7, "the lab: 5x5", choices=(2, 3, 5, 7)),
    "conv2_filters": Knob("Conv 2 filters", 4, 128, "the lab: 64 feature maps"),
    "conv2_kernel": Knob(
        "Conv 2 kernel",
        2,
        5,
        "the lab's code: 2x2 (its text says 5x5: try both and compare)",
        choices=(2, 3, 5),
    ),
    "dropout_conv": Knob("Dropout after the convolutions", 0.0, 0.8, "the lab: 0.25", whole=False),
    "dense_units": Knob("Dense units", 16, 2000, "the lab: 1000"),
    "dropout_dense": Knob("Dropout before the output", 0.0, 0.8, "the lab: 0.5", whole=False),
    "learning_rate": Knob("Learning rate", 1e-5, 0.5, "the lab: Adam's 0.001", whole=False),
    "batch_size": Knob("Batch size", 8, 1024, "the lab: 128"),
    "epochs": Knob("Epochs", 1, 30, "the lab: 12"),
    "train_size": Knob("Training images", 500, TRAIN_SIZE, "the lab: all 60,000"),
}

# The lab's own recipe (the workbook: 12 epochs on all 60,000 images): what "What I
# changed" is measured from.
LAB_RECIPE = TrainConfig(
    preset="lab7",
    epochs=12,
    batch_size=LAB_BATCH_SIZE,
    learning_rate=LAB_LEARNING_RATE,
    train_size=TRAIN_SIZE,
    test_size=TEST_SIZE,
    seed=LAB_SEED,
    network=Network(),
)
# The class's default experiment: the lab's network and recipe, one epoch on every
# training image — 98.5 % on the MNIST test set in about 25 s on this 2-core laptop
# (benchmarks/default_experiment.py; README), inside the default budget.
DEFAULT_EPOCHS = 1
DEFAULT_TRAIN_SIZE = TRAIN_SIZE
LAB_EXPERIMENT = replace(LAB_RECIPE, epochs=DEFAULT_EPOCHS, train_size=DEFAULT_TRAIN_SIZE)


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
        # True is 1 to Python and 64.5 filters is no network: a value is a number of the
        # right kind first (a bool is refused, a whole 64.0 is taken as 64).
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            problems.append(f"{knob.label} must be a number, not {value!r}")
            continue
        if knob.whole:
            if value != int(value):
                problems.append(f"{knob.label} must be a whole number, not {value:g}")
                continue
            values = {**values, name: int(value)}
        else:
            values = {**values, name: float(value)}
        value = values[name]
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
    """'What I changed': every difference from the lab's own recipe (12 epochs on all
    60,000 images, the workbook's network), epochs and images included: "epochs 12 → 1,
    conv 2 kernel 2 → 5"; "nothing: the lab's recipe" when nothing changed."""
    diff = cfg.changes_from(LAB_RECIPE)
    diff.pop("test_size", None)
    diff.pop("seed", None)
    if not diff:
        return "nothing: the lab's recipe"
    label = {k: v.label.lower() for k, v in RANGES.items()}
    return ", ".join(f"{label.get(k, k)} {_shown(a)} → {_shown(b)}" for k, (a, b) in diff.items())


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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


PACE_RUNS = 10  # the newest finished runs the pace is taken from: the machine's load now
PACE_RANGE = (1 / 3, 10.0)  # a pace outside it is a broken record, not this machine's


def estimate_seconds(cfg: TrainConfig, history: list[Run] | None = None) -> float:
    """About how long the run trains on this server. When finished runs of the lab's
    network are known (`history`, newest first, as list_runs gives it), scaled by how
    much faster or slower the newest of them were than the constants: this server's
    pace now (measured 3-5x slower with the machine loaded than quiet)."""
    scale = 1.0
    measured = [  # a run shorter than a start-up measured nothing (a record made by hand)
        (r.duration_s, _model_seconds(r.config))
        for r in history or []
        if r.status == "finished"
        and r.duration_s is not None
        and r.duration_s > START_S
        and r.config.preset == "lab7"
    ][:PACE_RUNS]
    if measured:
        pace = sum(d for d, _ in measured) / max(sum(m for _, m in measured), 1e-9)
        scale = min(max(pace, PACE_RANGE[0]), PACE_RANGE[1])
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
    max_train_images: int = TRAIN_SIZE
    # An experiment's compute budget: its estimated minutes on this engine. The default
    # fits the default experiment on a 2-core laptop with room to spare: about 20 s
    # quiet, 55-90 s with the machine loaded 5x over (benchmarks/default_experiment.py),
    # so a student can double the default's work; thirty default experiments on a quiet
    # machine finish in about 12 minutes (README: capacity).
    budget_minutes: float = 2.0


BUDGET_MINUTES_RANGE = (0.25, 30.0)
OVERRUN_FACTOR = 1.5  # the engine stops an experiment past 1.5x its budget ...
OVERRUN_GRACE_S = 20.0  # ... plus this (starting up, scoring): the estimate's own error


def limits(registry: RunRegistry) -> ClassLimits:
    raw = registry.store.setting(LIMITS)
    if not raw:
        return ClassLimits()
    stored = json.loads(raw)
    known = set(ClassLimits.__dataclass_fields__)
    return ClassLimits(**{k: v for k, v in stored.items() if k in known})


def set_limits(registry: RunRegistry, new: ClassLimits, *, role: Role) -> None:
    require(role, Action.MANAGE_EXPERIMENTS)
    problems = []
    for name, value in (
        ("maximum epochs", new.max_epochs),
        ("maximum training images", new.max_train_images),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name} must be a whole number, not {value!r}")
    if problems:
        raise ExperimentError("; ".join(problems))
    if not 1 <= new.max_epochs <= RANGES["epochs"].high:
        raise ExperimentError(f"maximum epochs must be between 1 and {RANGES['epochs'].high:g}")
    if not RANGES["train_size"].low <= new.max_train_images <= TRAIN_SIZE:
        raise ExperimentError(
            f"maximum training images must be between {RANGES['train_size'].low:g} and {TRAIN_SIZE}"
        )
    low, high = BUDGET_MINUTES_RANGE
    budget = new.budget_minutes
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not low <= budget <= high:
        raise ExperimentError(f"the budget must be between {low:g} and {high:g} minutes")
    registry.store.set_setting(LIMITS, json.dumps(new.__dict__))


# --- a student's experiments ---------------------------------------------------------------


def experiments_of(registry: RunRegistry, student: str) -> list[Run]:
    return [r for r in registry.list_runs() if r.owner == student]


def submit(
    registry: RunRegistry, student: str, cfg: TrainConfig, *, network: str | None = None
) -> Run:
    """Queue a student's experiment, or refuse it (ExperimentError) saying why: a value
    outside the class's limits or budget, or one already queued or running (and where it
    is). `network`: the submitter's address group (classroom.address_group), what the
    queue's fair share counts. The student's seat is made here if they had none."""
    if not student or student == INSTRUCTOR:
        raise ExperimentError("an experiment belongs to a student")
    cfg.validate()
    problems = limit_problems(registry, cfg)
    if problems:
        raise ExperimentError("; ".join(problems) + " (the instructor sets these limits)")
    students.take_seat(registry.store, student, network)

    def one_per_seat(con: sa.Connection) -> None:
        # inside the locked transaction that inserts the row: no second submit passes
        # this check until the first is queued and visible to it
        waiting = con.execute(
            sa.select(runs_table.c.id)
            .where(runs_table.c.owner == student, runs_table.c.status.in_(("queued", "running")))
            .limit(1)
        ).scalar_one_or_none()
        if waiting is not None:
            raise _Waiting(waiting)

    try:
        return registry.enqueue(
            cfg,
            owner=student,
            priority=STUDENT_PRIORITY,
            network=network,
            budget_s=limits(registry).budget_minutes * 60,
            guard=one_per_seat,
        )
    except _Waiting as e:
        run = registry.get(e.run_id)
    if run.status == "running":
        raise ExperimentError(
            f"your experiment (run {run.id}) is training: wait for it or cancel it first"
        )
    place = queue.position(registry, run.id)
    raise ExperimentError(
        f"your experiment (run {run.id}) is already waiting, #{place} in the queue: wait "
        "for it or cancel it first"
    )


class _Waiting(Exception):
    """The seat has an experiment queued or running (raised inside the transaction)."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id


def limit_problems(registry: RunRegistry, cfg: TrainConfig) -> list[str]:
    """What in `cfg` the class's limits refuse (the card shows it before Submit)."""
    rules = limits(registry)
    problems = []
    if cfg.epochs > rules.max_epochs:
        problems.append(f"at most {rules.max_epochs} epochs in this class")
    if cfg.train_size > rules.max_train_images:
        problems.append(f"at most {rules.max_train_images:,} training images in this class")
    estimate = estimate_seconds(cfg, registry.list_runs())
    if estimate > rules.budget_minutes * 60:
        problems.append(
            f"about {minutes(estimate)} to train here, over the class's budget of "
            f"{minutes(rules.budget_minutes * 60)} an experiment: fewer epochs, images or "
            "filters"
        )
    return problems


def minutes(seconds: float) -> str:
    """ "40 s", "1.5 min": how the card and the reasons say a duration."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def overrunning(registry: RunRegistry, now: float | None = None) -> list[tuple[Run, str]]:
    """Students' experiments running well past their budget (OVERRUN_FACTOR times it,
    plus OVERRUN_GRACE_S), each with the reason to stop it: what the engine calls every
    second (serve/engine.py Supervisor.tend), stopping each with `registry.stop(run.id,
    reason)` so it keeps its last finished epoch and says why."""
    now = time.time() if now is None else now
    found = []
    for run in registry.running():
        if run.owner == INSTRUCTOR or run.budget_s is None or run.started_at is None:
            continue
        if run.stop_requested_at is not None:
            continue  # already asked
        took = now - run.started_at
        if took > run.budget_s * OVERRUN_FACTOR + OVERRUN_GRACE_S:
            found.append(
                (
                    run,
                    f"stopped by the engine after {minutes(took)}: well past the class's "
                    f"budget of {minutes(run.budget_s)} an experiment (its last finished "
                    "epoch is kept)",
                )
            )
    return found


def experiment_counts(registry: RunRegistry) -> dict[str, int]:
    """Seat -> how many experiments it has submitted (the roster), in one query."""
    with registry.store.read() as con:
        rows = con.execute(
            sa.select(runs_table.c.owner, sa.func.count())
            .where(runs_table.c.owner != INSTRUCTOR)
            .group_by(runs_table.c.owner)
        ).all()
    return {owner: int(n) for owner, n in rows}


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


class HiddenScoreError(ExperimentError):
    """A student asked for a class-drawings score the instructor has not revealed."""


def class_score_hidden(registry: RunRegistry, model_owner: str, role: Role) -> bool:
    """Is a model's score on the class's drawings hidden from this session? The hidden
    score is the experiments' private column: while the instructor has not revealed it,
    a student sees no class-drawings score of any student's experiment (their own
    included) on any page — the leaderboard, the Class page, Test set or Misclassified
    on the class's drawings. The shipped models and the instructor's runs are the
    lesson's own material: their scores stay visible (the projector's "this class at")."""
    return role != Role.INSTRUCTOR and model_owner != INSTRUCTOR and not revealed(registry)


def check_class_score(registry: RunRegistry, model_owner: str, role: Role) -> None:
    """HiddenScoreError when `class_score_hidden` says so, saying what to do instead."""
    if class_score_hidden(registry, model_owner, role):
        raise HiddenScoreError(
            "How a student's experiment reads the class's drawings is hidden until the "
            "instructor reveals it: choose a shipped model or the instructor's in the "
            "sidebar, or look at MNIST's test set."
        )


def reveal(registry: RunRegistry, on: bool, *, role: Role) -> None:
    """Show (or hide again) the class-drawings score to students."""
    require(role, Action.MANAGE_EXPERIMENTS)
    registry.store.set_setting(REVEALED, "1" if on else None)


@dataclass(frozen=True)
class Row:
    rank: int  # 1-based, by the sort asked for; equal scores share a rank
    run: Run
    owner: str
    test_accuracy: float | None
    misclassified: int | None
    parameters: int
    seconds: float | None
    changes: str
    class_accuracy: float | None  # None for a student until revealed
    class_n: int | None  # drawings the class score is on (None with it)


SORTS = ("test_accuracy", "class_accuracy", "parameters", "seconds")


def leaderboard(registry: RunRegistry, *, role: Role, sort: str = "test_accuracy") -> list[Row]:
    """Every experiment that ended with a score (finished, or stopped or interrupted with
    a finished epoch), best first, ranked; an interrupted one is listed too, marked by
    its status. The class-drawings score is None for a student until the instructor
    reveals it, and a student cannot sort by it meanwhile (the order would tell)."""
    if sort not in SORTS:
        raise ExperimentError(f"sort by one of {', '.join(SORTS)}")
    show_class = not class_score_hidden(registry, "", role)
    if sort == "class_accuracy" and not show_class:
        raise HiddenScoreError(
            "The class-drawings score is hidden until the instructor reveals it: sort by "
            "MNIST test accuracy instead."
        )
    found = []
    for run in registry.list_runs():
        if run.owner == INSTRUCTOR or run.status not in ENDED or run.status == "cancelled":
            continue
        found.append(run)
    keys = {
        "test_accuracy": lambda r: -(r.test_accuracy if r.test_accuracy is not None else -1),
        "class_accuracy": lambda r: -(r.class_accuracy if r.class_accuracy is not None else -1),
        "parameters": lambda r: parameters(r.config.network or Network()),
        "seconds": lambda r: r.duration_s if r.duration_s is not None else float("inf"),
    }
    found.sort(key=lambda r: (keys[sort](r), r.id))
    rows: list[Row] = []
    for place, run in enumerate(found, start=1):
        tied = rows and keys[sort](rows[-1].run) == keys[sort](run)
        rows.append(
            Row(
                rank=rows[-1].rank if tied else place,
                run=run,
                owner=run.owner,
                test_accuracy=run.test_accuracy,
                misclassified=run.misclassified,
                parameters=parameters(run.config.network or Network()),
                seconds=run.duration_s,
                changes=changes(run.config),
                class_accuracy=run.class_accuracy if show_class else None,
                class_n=run.class_n if show_class and run.class_accuracy is not None else None,
            )
        )
    return rows


def page(rows: list[Row], number: int, size: int = 25) -> tuple[list[Row], int]:
    """One page of the leaderboard (1-based, clamped) and how many pages there are: the
    page draws `size` rows whatever the class has finished."""
    pages = max(1, -(-len(rows) // size))
    number = min(max(number, 1), pages)
    return rows[(number - 1) * size : number * size], pages


@dataclass(frozen=True)
class Reference:
    """A reference row: the lab's network trained as `config` says, and its figures once
    a run measured them (None: not trained yet)."""

    label: str
    config: TrainConfig
    run_id: int | None
    test_accuracy: float | None
    misclassified: int | None
    parameters: int
    seconds: float | None
    history: dict[str, list[float]]


def reference_config(rules: ClassLimits) -> TrainConfig:
    """The lab's network and recipe within the class's current limits: the default
    experiment, with no more epochs or images than the class allows."""
    return replace(
        LAB_EXPERIMENT,
        epochs=min(LAB_EXPERIMENT.epochs, rules.max_epochs),
        train_size=min(LAB_EXPERIMENT.train_size, rules.max_train_images),
    )


def references(registry: RunRegistry) -> list[Reference]:
    """The leaderboard's two reference rows: first the lab's network trained within the
    class's limits (what a student can reach; its figures from the newest finished
    instructor run of exactly that recipe, `train_reference`), then the shipped Lab 7
    model (12 epochs on all 60,000 images, from its .json)."""
    from mnist_demo import config

    within = reference_config(limits(registry))
    measured = next(
        (
            r
            for r in registry.list_runs()
            if r.owner == INSTRUCTOR
            and r.status == "finished"
            and r.fine_tune is None
            and r.config == within
        ),
        None,
    )
    info = shipped_info(config.DEFAULT_MODEL_PATH.with_suffix(".json"))
    return [
        Reference(
            label="the lab within this class's limits",
            config=within,
            run_id=measured.id if measured else None,
            test_accuracy=measured.test_accuracy if measured else None,
            misclassified=measured.misclassified if measured else None,
            parameters=parameters(Network()),
            seconds=measured.duration_s if measured else None,
            history=measured.history if measured else {},
        ),
        Reference(
            label="Lab 7 as shipped",
            config=LAB_RECIPE,
            run_id=None,
            test_accuracy=info.get("test_accuracy"),
            misclassified=info.get("misclassified"),
            parameters=parameters(Network()),
            seconds=info.get("training_seconds"),
            history=info.get("history", {}),
        ),
    ]


def train_reference(registry: RunRegistry, *, role: Role) -> Run:
    """Queue the lab within the class's limits as an instructor run (its figures fill
    the first reference row when it finishes)."""
    require(role, Action.START_TRAINING)
    return registry.submit(reference_config(limits(registry)), role=role)


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
    """Student id -> the name the class sees (nickname, or "Student 3f9a")."""
    return {s.id: s.display_name for s in students.list_students(registry.store)}


def name_of(student: str, known: dict[str, str]) -> str:
    return known.get(student) or f"Student {student[:4]}"
