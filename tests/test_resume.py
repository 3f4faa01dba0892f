"""Resuming a stopped or interrupted run from its last finished epoch.

The promise: a resumed run ends where an uninterrupted one would (weights, optimizer state
and the learning-rate schedule's position are restored), as the same run, and the
optimizer state is only kept while the run can still be resumed.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import sqlalchemy as sa

from mnist_demo import queue, training
from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.recipe import FineTuneRecord, TrainConfig
from mnist_demo.runs import CannotResumeError, Run, RunRegistry, resumable
from mnist_demo.store import runs as runs_table
from mnist_demo.training import train_run

TEACHER = Role.INSTRUCTOR
SMALL = TrainConfig(epochs=4, batch_size=32, train_size=600, test_size=200, seed=7)
STOP_AFTER = 2
# Per-epoch metrics of a resumed run vs an uninterrupted one. Weights, optimizer state
# and step count are restored exactly; what is not is the random stream: fit's shuffle
# order and dropout masks are drawn from the process's random state, which a new fit
# restarts (Keras's BackupAndRestore has the same limit). On 600 images that moves an
# epoch's metrics by a few points (measured: see the report printed by -s; the robust
# preset's augmentation moved val_accuracy by 0.085, 17 of 200 images, once the
# uninterrupted run's stream started at its fit, as a Spare-built run's does).
TOLERANCE = {"loss": 0.15, "accuracy": 0.1, "val_loss": 0.15, "val_accuracy": 0.1}


@pytest.fixture
def registry(tmp_path):
    return RunRegistry(tmp_path / "runs.sqlite")


def claim(registry: RunRegistry, run_id: int) -> Run:
    """Claim the queued run, as a trainer of the engine would."""
    run = queue.claim_next(registry, "test-worker")
    assert run is not None and run.id == run_id
    return run


def train(registry: RunRegistry, cfg: TrainConfig, data) -> Run:
    return train_run(registry, claim(registry, registry.submit(cfg, role=TEACHER).id), data)


@pytest.fixture
def checkpoints(monkeypatch):
    """(epochs done, optimizer steps, learning rate) at every resume checkpoint saved."""
    saved: list[tuple[int, int, float]] = []
    save = training._save_resume_checkpoint

    def spy(model, path):
        save(model, path)
        opt = model.optimizer
        steps = int(keras.ops.convert_to_numpy(opt.iterations))
        saved.append((len(saved), steps, float(keras.ops.convert_to_numpy(opt.learning_rate))))

    monkeypatch.setattr(training, "_save_resume_checkpoint", spy)
    return saved


def train_stopped_after(config, registry, data, epochs: int) -> Run:
    """Train a run and ask it to stop as soon as `epochs` epochs are recorded: the stop
    lands in the first batch of the next epoch, which therefore does not count."""
    record = registry.record_epoch
    run = registry.submit(config, role=TEACHER)

    def record_then_stop(run_id, history, path, token=None):
        record(run_id, history, path, token)
        if len(history["loss"]) == epochs:
            registry.request_stop(run_id, role=TEACHER)

    registry.record_epoch = record_then_stop
    try:
        return train_run(registry, claim(registry, run.id), data)
    finally:
        registry.record_epoch = record


@pytest.mark.parametrize("preset", ["lab7", "robust"])
def test_a_resumed_run_ends_like_an_uninterrupted_one(preset, tmp_path, mnist, checkpoints):
    config = TrainConfig(**{**SMALL.to_dict(), "preset": preset})
    straight = RunRegistry(tmp_path / "a" / "runs.sqlite")
    reference = train(straight, config, mnist)
    assert reference.status == "finished"
    assert not straight.resume_path(reference.id).exists()  # finished: no optimizer state
    straight_steps = checkpoints[-1][1:]
    checkpoints.clear()

    resumed = RunRegistry(tmp_path / "b" / "runs.sqlite")
    run = train_stopped_after(config, resumed, mnist, STOP_AFTER)
    assert run.status == "stopped" and run.epochs_done == STOP_AFTER  # the partial 3rd is not
    assert resumed.resume_path(run.id).exists() and resumable(run, resumed)
    assert max(p for _, p, _, _ in resumed.points(run.id)) > STOP_AFTER  # the partial epoch's
    before_stop = [c[1:] for c in checkpoints]

    queued = resumed.resume(run.id, role=TEACHER)
    assert queued.id == run.id and queued.status == "queued" and queued.resume
    # the partial epoch's points are dropped; the kept ones stay
    kept_points = resumed.points(run.id)
    assert max(p for _, p, _, _ in kept_points) == pytest.approx(STOP_AFTER)
    after = train_run(resumed, claim(resumed, run.id), mnist)
    assert [r.id for r in resumed.list_runs()] == [run.id]  # the same run, no new one
    assert after.status == "finished" and after.error is None
    assert after.epochs_done == config.epochs
    assert after.history["loss"][:STOP_AFTER] == run.history["loss"]  # kept as recorded
    assert not resumed.resume_path(run.id).exists()
    assert json.loads((resumed.run_dir(run.id) / "run.json").read_text())["status"] == "finished"
    points = resumed.points(run.id)
    assert points[: len(kept_points)] == kept_points
    assert [s for s, _, _, _ in points] == list(range(len(points)))  # seq goes on, no gap
    positions = [p for _, p, _, _ in points]
    assert positions == sorted(positions) and positions[-1] == pytest.approx(config.epochs)
    # the optimizer went on from its step count, so the schedule did too
    assert before_stop[-1][0] == STOP_AFTER * 19  # 600 / 32 -> 19 batches an epoch
    assert checkpoints[-1][1:] == pytest.approx(straight_steps)
    # the last is after epoch 3 of 4: after the final epoch there is nothing to resume
    assert checkpoints[-1][1] == (config.epochs - 1) * 19

    diffs = {
        key: np.abs(np.array(after.history[key]) - np.array(reference.history[key]))
        for key in TOLERANCE
    }
    print(f"\n{preset}: |resumed - uninterrupted| per epoch:")
    for key, d in diffs.items():
        print(f"  {key:13s} " + " ".join(f"{v:.4f}" for v in d))
    for key, d in diffs.items():
        assert d[:STOP_AFTER].max() == pytest.approx(0, abs=1e-6), key  # the same epochs
        assert d.max() <= TOLERANCE[key], (key, d)
    assert after.test_accuracy == pytest.approx(reference.test_accuracy, abs=0.05)


def recorded_run(registry, status: str, epochs_done: int, fine_tune=None) -> Run:
    """A run as the registry holds it, without training (for the refusals)."""
    run = registry.submit(SMALL, role=TEACHER, fine_tune=fine_tune)
    claim(registry, run.id)
    if epochs_done:
        history = {k: [0.5] * epochs_done for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        registry.record_epoch(run.id, history, registry.run_dir(run.id) / "model.keras")
    registry.finish_run(run.id, status)
    return registry.get(run.id)


TUNED = FineTuneRecord(
    base="shipped", base_path="base.keras", class_set=1, version=1, train_drawings=60,
    held_out_drawings=10, train_students=6, held_out_students=2, class_share=0.25,
)  # fmt: skip


def test_runs_that_cannot_be_resumed_are_refused_with_the_reason(registry, mnist):
    def refused(run_id, *needles, role=TEACHER):
        before = registry.get(run_id)
        with pytest.raises(CannotResumeError) as caught:
            registry.resume(run_id, role=role)
        for needle in needles:
            assert needle in str(caught.value), (needle, str(caught.value))
        assert registry.get(run_id).status == before.status  # a refusal changes nothing

    queued = registry.submit(SMALL, role=TEACHER)
    refused(queued.id, "still queued")
    running = claim(registry, queued.id)
    refused(running.id, "still running")  # this process is alive and beating
    finished = train_run(registry, running, mnist)
    refused(finished.id, "has finished")
    assert not registry.resume_path(finished.id).exists()

    never = recorded_run(registry, "stopped", 0)
    refused(never.id, "finished no epoch")
    old = recorded_run(registry, "interrupted", 1)  # e.g. from before resuming existed
    refused(old.id, "no resume checkpoint")
    failed = recorded_run(registry, "failed", 1)
    refused(failed.id, "only a stopped or interrupted run")
    complete = recorded_run(registry, "stopped", SMALL.epochs)
    refused(complete.id, f"all its {SMALL.epochs} epochs")
    tuned = recorded_run(registry, "stopped", 1, fine_tune=TUNED)
    refused(tuned.id, "fine-tune run")
    for run in (never, old, failed, complete, tuned):
        assert not resumable(registry.get(run.id), registry)

    # a damaged checkpoint is a refusal too, before the run is queued again
    registry.resume_path(old.id).write_bytes(b"not a keras file")
    refused(old.id, "unreadable")
    assert queue.waiting(registry) == []

    with pytest.raises(PermissionDeniedError):
        registry.resume(old.id, role=Role.STUDENT)


def test_an_interrupted_run_left_running_by_a_dead_worker_is_resumed(registry, mnist):
    config = TrainConfig(**{**SMALL.to_dict(), "epochs": 2})
    stopped = train_stopped_after(config, registry, mnist, 1)
    # as a killed worker leaves it: "running", with a heartbeat long silent
    with registry.store.write() as con:
        con.execute(
            sa.update(runs_table)
            .where(runs_table.c.id == stopped.id)
            .values(status="running", finished_at=None, heartbeat=0.0)
        )
    queued = registry.resume(stopped.id, role=TEACHER)  # marked interrupted, then queued
    assert queued.status == "queued"
    run = train_run(registry, claim(registry, stopped.id), mnist)
    assert run.status == "finished" and run.epochs_done == 2 and len(run.history["loss"]) == 2


def test_a_checkpoint_out_of_step_with_the_record_fails_the_run_with_the_reason(registry, mnist):
    """A crash between an epoch's checkpoint and its record leaves them out of step: the
    worker refuses to continue from the wrong place, and says so."""
    run = train_stopped_after(SMALL, registry, mnist, STOP_AFTER)
    history = {k: v[:1] for k, v in run.history.items()}  # the record says 1 epoch
    registry.record_epoch(run.id, history, registry.model_path(run.id))
    registry.resume(run.id, role=TEACHER)
    failed = train_run(registry, claim(registry, run.id), mnist)
    assert failed.status == "failed" and "at step" in failed.error
