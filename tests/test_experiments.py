"""Every student runs the lab (experiments.py): the card's ranges, one experiment queued
or running per student, the queue (the instructor first, students round-robin), pause,
cancel only one's own, the class's limits, the leaderboard's hidden column, and the
class's model for Draw, which only the instructor sets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mnist_demo import experiments, queue
from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.experiments import ClassLimits, ExperimentError
from mnist_demo.model import build_model, save_model
from mnist_demo.models import available_models, default_model, draw_model
from mnist_demo.recipe import Network, TrainConfig
from mnist_demo.runs import INSTRUCTOR, RunRegistry

TEACHER, STUDENT = Role.INSTRUCTOR, Role.STUDENT
TINY = replace(experiments.LAB_EXPERIMENT, train_size=500)
ANA, BO, CY = "a" * 16, "b" * 16, "c" * 16


@pytest.fixture
def registry(tmp_path) -> RunRegistry:
    return RunRegistry(tmp_path / "runs.sqlite")


def finish(registry: RunRegistry, run_id: int, accuracy: float = 0.97, model: bool = False):
    path = registry.run_dir(run_id) / "model.keras"
    if model:
        save_model(build_model("lab7", seed=None, compile=False), path)
    registry.record_epoch(run_id, {"loss": [0.4], "val_accuracy": [accuracy]}, path)
    return registry.finish_run(
        run_id, "finished", test_loss=0.2, test_accuracy=accuracy, misclassified=30, test_n=10_000
    )


def take(registry: RunRegistry):
    """What a worker takes next, finished at once (None: nothing to take)."""
    run = queue.claim_next(registry, "test-worker")
    if run is not None:
        finish(registry, run.id)
    return run


# --- the card and the class's limits --------------------------------------------------------


def test_values_out_of_range_are_refused_naming_each_with_its_range():
    with pytest.raises(ExperimentError) as e:
        experiments.card_config(
            {"conv1_filters": 500, "conv2_kernel": 4, "learning_rate": 2.0, "epochs": 0}
        )
    message = str(e.value)
    assert "Conv 1 filters must be between 4 and 128" in message
    assert "Conv 2 kernel must be one of 2, 3, 5" in message
    assert "Learning rate must be between 1e-05 and 0.5" in message
    assert "Epochs must be between 1 and 30" in message
    cfg = experiments.card_config({"conv2_kernel": 5, "epochs": 2})
    assert cfg.network == Network(conv2_kernel=5) and cfg.epochs == 2
    # every difference from the lab's own recipe (12 epochs on 60,000), epochs included
    assert experiments.changes(cfg) == "epochs 12 → 2, conv 2 kernel 2 → 5"


def test_the_class_s_limits_refuse_with_the_limit_and_only_the_instructor_sets_them(registry):
    with pytest.raises(ExperimentError, match="at most 5 epochs in this class"):
        experiments.submit(registry, ANA, replace(TINY, epochs=6))
    with pytest.raises(PermissionDeniedError):
        experiments.set_limits(registry, ClassLimits(max_epochs=10), role=STUDENT)
    with pytest.raises(ExperimentError, match="maximum epochs must be between 1 and 30"):
        experiments.set_limits(registry, ClassLimits(max_epochs=31), role=TEACHER)
    experiments.set_limits(registry, ClassLimits(max_epochs=1, max_train_images=1000), role=TEACHER)
    with pytest.raises(ExperimentError, match="at most 1,000 training images in this class"):
        experiments.submit(registry, ANA, replace(TINY, train_size=2000))
    assert experiments.submit(registry, ANA, TINY).status == "queued"


# --- quotas and the queue -----------------------------------------------------------------------


def test_one_experiment_queued_or_running_per_student_and_the_refusal_says_where(registry):
    experiments.submit(registry, BO, TINY)
    first = experiments.submit(registry, ANA, TINY)
    with pytest.raises(ExperimentError, match=rf"run {first.id}\) is already waiting, #2 in"):
        experiments.submit(registry, ANA, TINY)
    queue.claim_next(registry, "w")  # Bo's
    queue.claim_next(registry, "w")  # Ana's
    with pytest.raises(ExperimentError, match=rf"run {first.id}\) is training"):
        experiments.submit(registry, ANA, TINY)
    finish(registry, first.id)
    assert experiments.submit(registry, ANA, TINY).status == "queued"  # ended: a new one


def test_the_instructor_goes_first_then_three_students_round_robin(registry):
    """Ana submits, her run starts and ends, she submits again at once; meanwhile Bo and
    Cy wait and the instructor queues a run: the queue is the instructor, then Bo and Cy
    (none started yet), then Ana's second (one started already)."""
    a1 = experiments.submit(registry, ANA, TINY)
    assert take(registry).id == a1.id
    a2 = experiments.submit(registry, ANA, TINY)
    b1 = experiments.submit(registry, BO, TINY)
    c1 = experiments.submit(registry, CY, TINY)
    teacher = registry.submit(TINY, role=TEACHER)
    assert [r.id for r in queue.waiting(registry)] == [teacher.id, b1.id, c1.id, a2.id]
    assert queue.position(registry, a2.id) == 4
    order = [take(registry).id for _ in range(4)]
    assert order == [teacher.id, b1.id, c1.id, a2.id]
    # second round: each of them submits again, Ana first; the fewest started go first
    a3 = experiments.submit(registry, ANA, TINY)
    c2 = experiments.submit(registry, CY, TINY)
    b2 = experiments.submit(registry, BO, TINY)
    assert [take(registry).id for _ in range(3)] == [c2.id, b2.id, a3.id]
    assert take(registry) is None


def test_pause_holds_the_students_but_not_the_instructor(registry):
    student_run = experiments.submit(registry, ANA, TINY)
    with pytest.raises(PermissionDeniedError):
        queue.pause(registry, True, role=STUDENT)
    queue.pause(registry, True, role=TEACHER)
    assert queue.paused(registry)
    teacher = registry.submit(TINY, role=TEACHER)
    assert take(registry).id == teacher.id
    assert take(registry) is None  # Ana waits
    assert queue.position(registry, student_run.id) == 1  # still listed, waiting
    queue.pause(registry, False, role=TEACHER)
    assert take(registry).id == student_run.id


def test_a_student_cancels_only_their_own(registry):
    mine = experiments.submit(registry, ANA, TINY)
    theirs = experiments.submit(registry, BO, TINY)
    with pytest.raises(ExperimentError, match="only cancel your own"):
        experiments.cancel(registry, theirs.id, student=ANA, role=STUDENT)
    assert registry.get(theirs.id).status == "queued"
    assert experiments.cancel(registry, mine.id, student=ANA, role=STUDENT).status == "cancelled"
    instructor_run = registry.submit(TINY, role=TEACHER)
    with pytest.raises(ExperimentError, match="only cancel your own"):
        experiments.cancel(registry, instructor_run.id, student=ANA, role=STUDENT)
    # the instructor may cancel any
    assert experiments.cancel(registry, theirs.id, student="", role=TEACHER).status == "cancelled"


def test_clearing_a_student_is_the_instructor_s(registry):
    run = experiments.submit(registry, ANA, TINY)
    take(registry)
    with pytest.raises(PermissionDeniedError):
        experiments.clear_student(registry, ANA, role=STUDENT)
    assert experiments.clear_student(registry, ANA, role=TEACHER) == 1
    assert experiments.experiments_of(registry, ANA) == []
    assert run.id not in [r.id for r in registry.list_runs()]


# --- the leaderboard ---------------------------------------------------------------------------


def test_the_class_drawings_score_is_hidden_from_students_until_revealed(registry):
    for student, acc in ((ANA, 0.95), (BO, 0.98)):
        run = experiments.submit(registry, student, TINY)
        queue.claim_next(registry, "w")
        finish(registry, run.id, acc)
        registry.set_class_score(run.id, acc - 0.3, 20)
    interrupted = experiments.submit(registry, CY, TINY)
    queue.claim_next(registry, "w")
    registry.finish_run(interrupted.id, "interrupted")
    rows = experiments.leaderboard(registry, role=STUDENT)
    assert [r.owner for r in rows][:2] == [BO, ANA]
    assert rows[-1].run.status == "interrupted" and rows[-1].test_accuracy is None
    assert all(r.class_accuracy is None for r in rows)
    teacher_rows = experiments.leaderboard(registry, role=TEACHER)
    assert teacher_rows[0].class_accuracy == pytest.approx(0.68)
    with pytest.raises(PermissionDeniedError):
        experiments.reveal(registry, True, role=STUDENT)
    experiments.reveal(registry, True, role=TEACHER)
    rows = experiments.leaderboard(registry, role=STUDENT, sort="class_accuracy")
    assert [r.owner for r in rows][:2] == [BO, ANA]
    assert rows[0].class_accuracy == pytest.approx(0.68)


def test_the_leaderboard_is_paged():
    rows = list(range(260))
    shown, pages = experiments.page(rows, 3, 25)  # type: ignore[arg-type]
    assert pages == 11 and shown == list(range(50, 75))
    assert experiments.page(rows, 99, 25)[0] == list(range(250, 260))  # type: ignore[arg-type]
    assert experiments.page([], 1, 25) == ([], 1)


# --- the class's model for Draw, the projector, a student's models ---------------------


def test_only_the_instructor_makes_a_run_the_class_s_model_for_draw(registry):
    run = experiments.submit(registry, ANA, TINY)
    queue.claim_next(registry, "w")
    with pytest.raises(ExperimentError, match="no finished model"):
        experiments.set_draw_model(registry, run.id, role=TEACHER)
    finish(registry, run.id, model=True)
    with pytest.raises(PermissionDeniedError):
        experiments.set_draw_model(registry, run.id, role=STUDENT)
    assert draw_model(registry) is None
    before = default_model(registry, for_drawings=True).key
    experiments.set_draw_model(registry, run.id, role=TEACHER)
    assert default_model(registry, for_drawings=True).key == str(run.id)
    assert default_model(registry).key != str(run.id)  # the lab pages keep theirs
    registry.delete(run.id, role=TEACHER)  # gone: Draw falls back to the shipped model
    assert default_model(registry, for_drawings=True).key == before
    with pytest.raises(PermissionDeniedError):
        experiments.set_projector(registry, None, role=STUDENT)


def test_a_student_is_offered_their_own_models_and_the_instructor_s(registry):
    runs = {}
    for owner in (ANA, BO, INSTRUCTOR):
        run = (
            registry.submit(TINY, role=TEACHER)
            if owner == INSTRUCTOR
            else experiments.submit(registry, owner, TINY)
        )
        queue.claim_next(registry, "w")
        runs[owner] = finish(registry, run.id, model=True).id
    keys = {m.key for m in available_models(registry, role=STUDENT, student=ANA)}
    assert {str(runs[ANA]), str(runs[INSTRUCTOR])} <= keys and str(runs[BO]) not in keys
    experiments.set_draw_model(registry, runs[BO], role=TEACHER)  # shared with the class
    assert str(runs[BO]) in {m.key for m in available_models(registry, role=STUDENT, student=ANA)}
    assert str(runs[BO]) in {m.key for m in available_models(registry, role=TEACHER, student="")}


def test_estimate_grows_with_the_work(registry):
    small = experiments.estimate_seconds(TINY)
    big = experiments.estimate_seconds(replace(TINY, epochs=3, train_size=6000))
    assert 0 < small < big
    assert isinstance(TrainConfig().epochs, int)
