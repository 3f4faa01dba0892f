import threading
import time

import numpy as np
import pytest

from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.evaluation import evaluate
from mnist_demo.model import load_model
from mnist_demo.runs import RunRegistry
from mnist_demo.training import (
    LESSON_MAX_EPOCHS,
    InvalidConfigError,
    Snapshot,
    TrainConfig,
    TrainingAlreadyRunningError,
    TrainingJob,
    current_job,
    select_subset,
    start_training,
)

TINY = TrainConfig(epochs=2, batch_size=32, train_size=600, test_size=200)


@pytest.fixture
def registry(tmp_path):
    return RunRegistry(tmp_path / "runs.sqlite")


def wait_for(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_a_tiny_run_learns_checkpoints_each_epoch_and_is_recorded(registry, tiny_mnist):
    saved_epochs = []
    record_epoch = registry.record_epoch
    registry.record_epoch = lambda run_id, history, path: (
        saved_epochs.append((len(history["loss"]), path.exists())),
        record_epoch(run_id, history, path),
    )
    job = start_training(TINY, registry, tiny_mnist, role=Role.INSTRUCTOR)
    assert job.wait(120)
    s = job.snapshot()
    assert s.status == "finished" and s.error is None
    assert saved_epochs == [(1, True), (2, True)]  # a checkpoint on disk at every epoch
    # 600 / 32 -> 19 batches per epoch, reported once per execution of 4 batches
    # (model.STEPS_PER_EXECUTION): after batches 4, 8, 12, 16 and 19 of each epoch
    positions = [p["epoch"] for p in s.batch_metrics]
    assert positions == pytest.approx([e + b / 19 for e in (0, 1) for b in (4, 8, 12, 16, 19)])
    assert s.history["loss"][1] < s.history["loss"][0]
    assert s.history["val_accuracy"][-1] > 0.5  # 600 images are enough to beat chance
    run = registry.get(job.run_id)
    assert run.status == "finished" and run.epochs_done == 2
    assert run.test_n == 200 and run.test_accuracy == pytest.approx(1 - run.misclassified / 200)
    assert run.test_accuracy == pytest.approx(s.history["val_accuracy"][-1], abs=1e-4)
    assert s.progress == 1.0 and s.eta_s is None
    # the result is the saved checkpoint's, though the job scores it only once, in training
    (_, _), (x_test, y_test) = tiny_mnist
    x_test, y_test = select_subset(x_test, y_test, TINY.test_size, TINY.seed)
    reloaded = evaluate(load_model(registry.model_path(job.run_id)), x_test, y_test)
    assert run.misclassified == reloaded.misclassified_count
    assert run.test_loss == pytest.approx(reloaded.loss, rel=1e-5)
    # nothing to resume after the last epoch: no resume checkpoint was written for it
    assert not registry.resume_path(job.run_id).exists()


def test_stop_ends_within_one_batch_and_keeps_the_last_full_epoch(registry, tiny_mnist):
    config = TrainConfig(epochs=30, batch_size=16, train_size=600, test_size=200)
    job = start_training(config, registry, tiny_mnist, role=Role.INSTRUCTOR)
    wait_for(lambda: len(job.snapshot().history["loss"]) >= 1 and job.snapshot().batch >= 3)
    with job._lock:  # count batches at the moment of the stop, atomically
        job.stop(role=Role.INSTRUCTOR)
        at_stop = len(job._batch_metrics)
    assert job.wait(30)
    s = job.snapshot()
    assert len(job._batch_metrics) - at_stop <= 1  # at most the batch already under way
    assert s.status == "stopped"
    run = registry.get(job.run_id)
    assert run.status == "stopped"
    assert run.epochs_done == len(s.history["loss"]) >= 1  # the partial epoch is dropped
    assert registry.model_path(run.id).exists() and run.test_accuracy is not None


def test_only_one_job_per_process(registry, tiny_mnist):
    config = TrainConfig(epochs=30, batch_size=16, train_size=600, test_size=200)
    job = start_training(config, registry, tiny_mnist, role=Role.INSTRUCTOR)
    try:
        with pytest.raises(TrainingAlreadyRunningError, match=f"run {job.run_id}"):
            start_training(TINY, registry, tiny_mnist, role=Role.INSTRUCTOR)
        assert current_job() is job
    finally:
        job.stop(role=Role.INSTRUCTOR)
        job.wait(30)
    assert len(registry.list_runs()) == 1  # the refused start left no record


MID_RUN_SNAPSHOTS = 100  # per reader, with an epoch already finished: ~50,000 measured


def test_snapshot_is_consistent_while_training(registry, tiny_mnist):
    config = TrainConfig(epochs=3, batch_size=16, train_size=600, test_size=200)
    job = start_training(config, registry, tiny_mnist, role=Role.INSTRUCTOR)
    errors = []
    mid_run = []  # per reader: snapshots of a running job that already had an epoch's history

    def reader():
        seen = 0
        while job.is_running:
            s = job.snapshot()
            if s.status != "running":
                continue  # the last moment of the run
            n = len(s.history.get("loss", []))
            if set(s.history) != {"loss", "accuracy", "val_loss", "val_accuracy"}:
                errors.append(f"history keys {sorted(s.history)}")
            elif any(len(v) != n for v in s.history.values()):
                errors.append(f"history lists of different lengths: {s.history}")
            if not (s.epoch - 1 <= n <= s.epoch <= config.epochs):
                errors.append(f"{n} finished epochs while in epoch {s.epoch}")
            if not 0 <= s.batch <= s.batches_per_epoch:
                errors.append(f"batch {s.batch} of {s.batches_per_epoch}")
            if n >= 1:
                seen += 1
            time.sleep(0)  # let the training thread have the GIL: same checks, less wait
        mid_run.append(seen)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    assert job.wait(120)
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert len(mid_run) == 3 and min(mid_run) >= MID_RUN_SNAPSHOTS, mid_run
    s = job.snapshot()
    assert s.status == "finished" and len(s.history["val_loss"]) == config.epochs


def test_a_failure_is_recorded_with_its_message(registry, tiny_mnist):
    (x, y), test = tiny_mnist
    broken = ((x[:, :20, :20], y), test)  # not 28x28
    job = start_training(
        TrainConfig(epochs=1, batch_size=8, train_size=100, test_size=50),
        registry,
        broken,
        role=Role.INSTRUCTOR,
    )
    assert job.wait(30)
    s = job.snapshot()
    assert s.status == "failed" and "28x28" in s.error
    assert registry.get(job.run_id).status == "failed"
    assert "28x28" in registry.get(job.run_id).error


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be between 1"),
        ({"batch_size": 1000, "train_size": 500}, "larger than the training subset"),
        ({"train_size": 70000}, "training subset must be between"),
        ({"learning_rate": 0.0}, "learning rate"),
        ({"preset": "vgg"}, "preset must be one of"),
        ({"seed": 2**32}, "seed must be between 0 and 4294967295"),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(registry, tiny_mnist, changes, message):
    cfg = TrainConfig(**{**TINY.__dict__, **changes})
    with pytest.raises(InvalidConfigError, match=message):
        TrainingJob(cfg, registry, tiny_mnist)
    assert registry.list_runs() == []


def test_subset_is_seeded_and_spans_the_data():
    x = np.arange(1000)
    a, _ = select_subset(x, x, 100, seed=7)
    b, _ = select_subset(x, x, 100, seed=7)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100
    assert a.max() > 500  # not simply the first 100
    full, _ = select_subset(x, x, 5000, seed=7)
    assert np.array_equal(full, x)


def test_only_the_instructor_starts_or_stops_and_long_runs_need_their_permission(
    registry, tiny_mnist
):
    with pytest.raises(PermissionDeniedError, match="Only the instructor can start training"):
        start_training(TINY, registry, tiny_mnist, role=Role.STUDENT)
    assert registry.list_runs() == []
    long = TrainConfig(epochs=LESSON_MAX_EPOCHS + 1, batch_size=32, train_size=100, test_size=50)
    with pytest.raises(InvalidConfigError, match=f"at most {LESSON_MAX_EPOCHS} epochs"):
        start_training(long, registry, tiny_mnist, role=Role.INSTRUCTOR)
    assert registry.list_runs() == []
    registry.allow_long_runs(True, role=Role.INSTRUCTOR)
    job = start_training(long, registry, tiny_mnist, role=Role.INSTRUCTOR)
    try:
        with pytest.raises(PermissionDeniedError, match="Only the instructor can stop the run"):
            job.stop(role=Role.STUDENT)
        assert not job.snapshot().stop_requested
    finally:
        job.stop(role=Role.INSTRUCTOR)
        assert job.wait(60)
    assert job.snapshot().status == "stopped"


def test_progress_is_zero_before_the_first_batch_not_negative():
    """A page that polls in the instant a run starts (epoch 0) must not crash its bar."""
    s = Snapshot(run_id=1, config=TINY, status="running", epoch=0, batch=0,
                 batches_per_epoch=30, elapsed_s=0.0, eta_s=None)  # fmt: skip
    assert s.progress == 0.0
