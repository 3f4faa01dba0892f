"""Fine-tuning on the class's drawings: refused with reasons before anything starts,
trained only on the students who are not held out, and, on a class that writes its own
way, better on that class's held-out students without forgetting MNIST."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_demo import finetune, queue
from mnist_demo.class_set import ClassSet, held_out
from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.config import DEFAULT_MODEL_PATH
from mnist_demo.errors import ModelFileError
from mnist_demo.finetune import NotEnoughDrawingsError
from mnist_demo.model import DrawingAugmentation, load_model
from mnist_demo.preprocess import DrawingTooSmallError, to_mnist
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import RunRegistry, resumable
from mnist_demo.training import train_run
from tools.drawn_digits import CANVAS, pen_path

TEACHER = Role.INSTRUCTOR


def session_tags(n_train: int, n_held_out: int) -> list[str]:
    """Tags that `held_out` puts on the training side (n_train) and aside (n_held_out)."""
    tags: dict[bool, list[str]] = {False: [], True: []}
    i = 0
    while len(tags[False]) < n_train or len(tags[True]) < n_held_out:
        tag = f"student-{i:03d}"
        side = held_out(tag)
        if len(tags[side]) < (n_held_out if side else n_train):
            tags[side].append(tag)
        i += 1
    return tags[False] + tags[True]


def blob(seed: int) -> np.ndarray:
    """A distinct non-blank 28x28 image per seed: enough for tests that never train."""
    image = np.zeros((28, 28), np.float32)
    image[6:22, 10:18] = np.random.default_rng(seed).random((16, 8), dtype=np.float32)
    return image


def fill(store: ClassSet, sessions: list[str], labels: list[int]) -> None:
    """One drawing per label, dealt round the sessions (timed apart: no send limit)."""
    first = store.snapshot().n
    for i, label in enumerate(labels, start=first):
        store.add(blob(i), label, session=sessions[i % len(sessions)], now=1e9 + 10 * i)


@pytest.fixture
def registry(tmp_path) -> RunRegistry:
    return RunRegistry(tmp_path / "runs.sqlite")


@pytest.fixture
def store(registry) -> ClassSet:
    return ClassSet(registry.path)  # the server's layout: one SQLite file for both


def fine_tune(registry, store, mnist, **kw):
    return finetune.submit_fine_tune(DEFAULT_MODEL_PATH, registry, store, role=TEACHER, **kw)


def claim_and_plan(registry, run_id):
    """What a trainer of the engine does with a fine-tune run: claim it, and build its
    plan from the run's record (the base model's *before* accuracies measured then)."""
    run = queue.claim_next(registry, "test-worker")
    assert run is not None and run.id == run_id
    return run, finetune.plan_for(registry, run)


# --- refusals, before anything starts ----------------------------------------------------


def test_too_few_drawings_are_refused_saying_how_many_more(registry, store, mnist):
    tags = session_tags(4, 1)
    fill(store, tags[:4], [d % 10 for d in range(32)])  # 32 to train on, every digit
    fill(store, tags[4:], [1, 2, 3])  # 3 held out
    with pytest.raises(NotEnoughDrawingsError) as refused:
        fine_tune(registry, store, mnist)
    message = str(refused.value)
    assert "32 drawings to train on (plus 3 held out), at least 50 needed: 18 more" in message
    assert "no drawing of" not in message
    assert registry.list_runs() == []  # no run was created


def test_digits_without_a_drawing_are_named(registry, store, mnist):
    tags = session_tags(5, 2)
    labels = [d for d in range(10) if d not in (3, 8)] * 8  # 64, no 3 and no 8
    fill(store, tags[:5], labels)
    fill(store, tags[5:], [3, 8])  # held out: they do not count for training
    with pytest.raises(NotEnoughDrawingsError, match=r"no drawing of 3, 8 to train on"):
        fine_tune(registry, store, mnist)
    assert registry.list_runs() == []


def test_a_set_with_nothing_held_out_is_refused(registry, store, mnist):
    fill(store, session_tags(6, 0), [d % 10 for d in range(60)])
    split = finetune.class_split(store)
    assert split.n_train == 60 and split.n_held_out == 0
    with pytest.raises(NotEnoughDrawingsError, match="none held out to measure the gain"):
        fine_tune(registry, store, mnist)


def test_students_and_missing_base_models_are_refused_before_a_run_exists(
    registry, store, mnist, tmp_path
):
    tags = session_tags(6, 2)
    fill(store, tags, [d % 10 for d in range(80)])
    with pytest.raises(PermissionDeniedError, match="Only the instructor can start training"):
        finetune.submit_fine_tune(DEFAULT_MODEL_PATH, registry, store, role=Role.STUDENT)
    with pytest.raises(ModelFileError, match="does not exist"):
        finetune.submit_fine_tune(tmp_path / "gone.keras", registry, store, role=TEACHER)
    assert registry.list_runs() == []


# --- the split and the mix -----------------------------------------------------------


def test_held_out_students_are_never_in_the_training_data(registry, store):
    tags = session_tags(8, 3)
    fill(store, tags, [d % 10 for d in range(110)])
    snapshot = store.snapshot()
    split = finetune.split_class_set(snapshot)
    assert split.n_train + split.n_held_out == snapshot.n == 110
    assert split.held_out_sessions == {t for t in tags if held_out(t)} != set()
    assert not split.train_sessions & split.held_out_sessions
    held_out_images = {
        img.tobytes()
        for img, s in zip(snapshot.images, snapshot.sessions, strict=True)
        if held_out(s)
    }
    train_images = {img.tobytes() for img in split.train_images}
    assert held_out_images == {img.tobytes() for img in split.held_out_images}
    assert not train_images & held_out_images

    # What a run fits on: the MNIST subset plus training drawings only, a quarter of it.
    mnist_x = np.zeros((300, 28, 28), np.uint8)
    images, labels = finetune.mix(
        mnist_x, np.zeros(300, np.int64), split.train_images, split.train_labels, share=0.25
    )
    drawn = images[300:]
    assert len(drawn) == 100 and len(labels) == 400  # 100 / 400 = the share
    assert {img.tobytes() for img in drawn} <= train_images


def test_oversampling_repeats_every_drawing_evenly():
    picked = finetune.oversample(n_drawings=30, n_mnist=900, share=0.25, seed=1)
    assert len(picked) == 300
    counts = np.bincount(picked, minlength=30)
    assert counts.min() == counts.max() == 10
    uneven = np.bincount(finetune.oversample(7, 90, 0.25, seed=1), minlength=7)
    assert uneven.sum() == 30 and uneven.max() - uneven.min() <= 1


def test_a_plain_run_has_no_fine_tune_result(registry):
    run = registry.submit(TrainConfig(epochs=1), role=TEACHER)
    assert run.fine_tune is None and finetune.result(run) is None


def test_a_small_fine_tune_is_a_queued_run_its_worker_plans_and_trains(registry, store, mnist):
    """submit_fine_tune queues a run with its record and a snapshot of the class set;
    the worker's plan_for measures the base model; train_run trains it like any run."""
    tags = session_tags(6, 2)
    fill(store, tags, [d % 10 for d in range(80)])
    split = finetune.class_split(store)
    run = fine_tune(registry, store, mnist, epochs=1, mnist_per_epoch=300, test_size=200)
    assert run.status == "queued" and queue.waiting(registry)[0].id == run.id
    record = run.fine_tune
    assert record is not None and record.before is None  # measured by the worker
    assert (record.train_drawings, record.held_out_drawings) == (split.n_train, split.n_held_out)
    assert (registry.run_dir(run.id) / record.snapshot_file).exists()
    assert run.config.train_size == 300 and run.config.epochs == 1
    assert run.config.learning_rate == finetune.FINE_TUNE_LEARNING_RATE
    fill(store, ["late-1"], [3, 4, 5])  # sent after the submit: not in this run

    claimed, plan = claim_and_plan(registry, run.id)
    assert plan.classes.n_train == split.n_train  # the snapshot, not the class set now
    before = registry.get(run.id).fine_tune.before
    assert before is not None and 0 <= before.class_held_out <= 1 and before.mnist > 0.9
    claimed = registry.get(run.id)
    done = train_run(registry, claimed, mnist, plan=plan)
    assert done.status == "finished" and done.error is None, done.error
    assert done.epochs_done == 1 and len(done.history[finetune.HISTORY_KEY]) == 1
    result = finetune.result(done)
    assert result is not None and result.after is not None and result.before == before
    assert result.after.mnist == done.test_accuracy and done.test_n == 200
    assert "→" in result.summary()
    saved = load_model(registry.model_path(run.id))  # the inference model, as other runs
    assert not any(isinstance(layer, DrawingAugmentation) for layer in saved.layers)
    assert not registry.resume_path(run.id).exists() and not resumable(done, registry)


# --- a real fine-tune on a class that writes its own way ----------------------------------


def slanted(digit: np.ndarray, slant: float) -> np.ndarray:
    """The digit sheared to the right: an italic hand."""
    shear = (1, slant, -slant * 14, 0, 1, 0)
    image = Image.fromarray(digit).transform(
        (28, 28), Image.Transform.AFFINE, shear, Image.Resampling.BILINEAR
    )
    return np.asarray(image)


def marker_drawing(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit's pen path (as drawn_digits traces it) painted on a 280x280 canvas with
    a felt marker a third to a quarter of the digit's height: loops close up, strokes
    merge. (drawn_digits.draw_canvas picks its brush itself, at most 40 px.)"""
    points = pen_path(digit)
    size = rng.uniform(120, 220)
    brush = size / rng.uniform(3.0, 4.0)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = (size - brush) / max(float((high - low).max()), 1.0)
    span = (high - low) * scale + brush
    top = rng.uniform(0, CANVAS - span[0]) + brush / 2 - low[0] * scale
    left = rng.uniform(0, CANVAS - span[1]) + brush / 2 - low[1] * scale
    ink = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(ink)
    for row, col in points:
        y, x = top + row * scale, left + col * scale
        draw.ellipse((x - brush / 2, y - brush / 2, x + brush / 2, y + brush / 2), fill=255)
    canvas = np.zeros((CANVAS, CANVAS, 4), np.uint8)  # black marker, transparent canvas
    canvas[..., 3] = np.asarray(ink)
    return canvas


def marker_class(
    store: ClassSet, mnist, sessions: list[str], per_student: int, seed: int, t0: float = 1e9
) -> None:
    """Students who all write slanted with a thick marker, each at their own slant, their
    digits taken from MNIST's training set and sent through the Draw page's to_mnist
    (which refuses a few as too small for the pen, as it would a student's)."""
    (x_train, y_train), _ = mnist
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(x_train), len(sessions) * per_student, replace=False)
    for s, session in enumerate(sessions):
        hand = np.random.default_rng([seed, s])
        slant = hand.uniform(0.35, 0.6)
        for j in range(per_student):
            i = picked[s * per_student + j]
            try:
                drawing = to_mnist(marker_drawing(slanted(x_train[i], slant), hand))
            except DrawingTooSmallError:
                continue
            store.add(drawing, int(y_train[i]), session=session, now=t0 + 10 * (s * 99 + j))


@pytest.mark.slow
def test_fine_tuning_learns_the_class_hand_and_keeps_mnist(registry, store, mnist, tmp_path):
    started = time.monotonic()
    marker_class(store, mnist, session_tags(32, 8), per_student=12, seed=0)
    base = tmp_path / "base.keras"  # a copy, deleted while the run trains
    shutil.copy(DEFAULT_MODEL_PATH, base)
    split = finetune.class_split(store)
    assert split.n_train > 300 and split.n_held_out > 70  # a few refused as too small
    built = time.monotonic()

    queued = finetune.submit_fine_tune(  # the recipe, shortened: 2 x 13,333 images
        base, registry, store, role=TEACHER, epochs=2, mnist_per_epoch=10_000
    )
    claimed, plan = claim_and_plan(registry, queued.id)
    base.unlink()  # the worker loaded the base model when it planned the run
    # sent meanwhile (later than the class's drawings: the class-wide cap counts by time)
    marker_class(store, mnist, ["late-1", "late-2"], per_student=5, seed=1, t0=2e9)
    run = train_run(registry, registry.get(claimed.id), mnist, plan=plan)
    finished = time.monotonic()

    assert run.status == "finished" and run.error is None, run.error
    info = run.fine_tune
    assert (info.train_drawings, info.held_out_drawings) == (split.n_train, split.n_held_out)
    assert run.config.epochs == 2 and run.config.train_size == 10_000
    assert run.epochs_done == 2 and len(run.history[finetune.HISTORY_KEY]) == 2
    result = finetune.result(run)
    assert result is not None and result.after is not None
    before, after = result.before, result.after
    print(
        f"\n{result.summary()}; class built in {built - started:.0f} s, "
        f"fine-tuned in {finished - built:.0f} s"
    )
    assert before.class_held_out < 0.9  # the class's hand is not MNIST's...
    assert after.class_held_out >= before.class_held_out + 0.04  # ...and it learnt it
    assert abs(after.mnist - before.mnist) <= 0.005  # without forgetting MNIST
    assert run.test_n == 10_000

    saved = load_model(registry.model_path(run.id))  # the inference model, as other runs
    assert not any(isinstance(layer, DrawingAugmentation) for layer in saved.layers)
    assert saved.name == "lab7" and len(saved.layers) == len(load_model(DEFAULT_MODEL_PATH).layers)
