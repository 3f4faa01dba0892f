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

from mnist_demo import training
from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.runs import RunRegistry
from mnist_demo.training import (
    CannotResumeError,
    TrainConfig,
    resumable,
    resume_training,
    start_training,
)
from tests.test_cli import run_cli

SMALL = TrainConfig(epochs=4, batch_size=32, train_size=600, test_size=200, seed=7)
STOP_AFTER = 2
# Per-epoch metrics of a resumed run vs an uninterrupted one. Weights, optimizer state
# and step count are restored exactly; what is not is the random stream: fit's shuffle
# order and dropout masks are drawn from the process's random state, which a new fit
# restarts (Keras's BackupAndRestore has the same limit). On 600 images that moves an
# epoch's metrics by about a point (measured: see the report printed by -s).
TOLERANCE = {"loss": 0.15, "accuracy": 0.08, "val_loss": 0.15, "val_accuracy": 0.08}


@pytest.fixture
def registry(tmp_path):
    return RunRegistry(tmp_path / "runs.sqlite")


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


def train_stopped_after(config, registry, data, epochs: int):
    """Start a run and stop it as soon as `epochs` epochs are recorded: the stop lands in
    the first batch of the next epoch, which therefore does not count."""
    job_box = []
    record = registry.record_epoch

    def record_then_stop(run_id, history, path):
        record(run_id, history, path)
        if len(history["loss"]) == epochs:
            job_box[0].stop(role=Role.INSTRUCTOR)

    registry.record_epoch = record_then_stop
    job_box.append(start_training(config, registry, data, role=Role.INSTRUCTOR))
    assert job_box[0].wait(300)
    registry.record_epoch = record
    return job_box[0]


@pytest.mark.parametrize("preset", ["lab7", "robust"])
def test_a_resumed_run_ends_like_an_uninterrupted_one(preset, tmp_path, mnist, checkpoints):
    config = TrainConfig(**{**SMALL.__dict__, "preset": preset})
    straight = RunRegistry(tmp_path / "a" / "runs.sqlite")
    job = start_training(config, straight, mnist, role=Role.INSTRUCTOR)
    assert job.wait(300)
    reference = straight.get(job.run_id)
    assert reference.status == "finished"
    assert not straight.resume_path(job.run_id).exists()  # finished: no optimizer state kept
    straight_steps = checkpoints[-1][1:]
    checkpoints.clear()

    resumed = RunRegistry(tmp_path / "b" / "runs.sqlite")
    stopped = train_stopped_after(config, resumed, mnist, STOP_AFTER)
    run = resumed.get(stopped.run_id)
    assert run.status == "stopped" and run.epochs_done == STOP_AFTER  # the partial 3rd is not
    assert resumed.resume_path(run.id).exists() and resumable(run, resumed)
    before_stop = [c[1:] for c in checkpoints]

    job = resume_training(run.id, resumed, mnist, role=Role.INSTRUCTOR)
    assert job.run_id == run.id
    assert job.wait(300)
    after = resumed.get(run.id)
    assert [r.id for r in resumed.list_runs()] == [run.id]  # the same run, no new one
    assert after.status == "finished" and after.error is None
    assert after.epochs_done == config.epochs
    assert after.history["loss"][:STOP_AFTER] == run.history["loss"]  # kept as recorded
    assert not resumed.resume_path(run.id).exists()
    assert json.loads((resumed.run_dir(run.id) / "run.json").read_text())["status"] == "finished"
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


def recorded_run(registry, status: str, epochs_done: int, **extra_config):
    """A run as the registry holds it, without training (for the refusals)."""
    run = registry.create_run({**SMALL.__dict__, **extra_config})
    if epochs_done:
        history = {k: [0.5] * epochs_done for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        registry.record_epoch(run.id, history, registry.run_dir(run.id) / "model.keras")
    registry.finish_run(run.id, status)
    return registry.get(run.id)


def test_runs_that_cannot_be_resumed_are_refused_with_the_reason(registry, mnist):
    def refused(run_id, *needles, role=Role.INSTRUCTOR):
        with pytest.raises(CannotResumeError) as caught:
            resume_training(run_id, registry, mnist, role=role)
        for needle in needles:
            assert needle in str(caught.value), (needle, str(caught.value))

    job = start_training(SMALL, registry, mnist, role=Role.INSTRUCTOR)
    refused(job.run_id, "still training")
    assert job.wait(300)
    refused(job.run_id, "has finished")
    assert not registry.resume_path(job.run_id).exists()

    never = recorded_run(registry, "stopped", 0)
    refused(never.id, "finished no epoch")
    old = recorded_run(registry, "interrupted", 1)  # e.g. from before resuming existed
    refused(old.id, "no resume checkpoint")
    failed = recorded_run(registry, "failed", 1)
    refused(failed.id, "only a stopped or interrupted run")
    complete = recorded_run(registry, "stopped", SMALL.epochs)
    refused(complete.id, f"all its {SMALL.epochs} epochs")
    tuned = recorded_run(registry, "stopped", 1, fine_tune={"base": "shipped"})
    refused(tuned.id, "fine-tune run")
    for run in (never, old, failed, complete, tuned):
        assert not resumable(registry.get(run.id), registry)
        assert registry.get(run.id).status == run.status  # a refusal changes nothing

    # a damaged checkpoint is a refusal too, and leaves the run as it was
    registry.resume_path(old.id).write_bytes(b"not a keras file")
    refused(old.id, "unreadable")
    assert registry.get(old.id).status == "interrupted"

    with pytest.raises(PermissionDeniedError):
        resume_training(old.id, registry, mnist, role=Role.STUDENT)


def test_an_interrupted_run_left_running_by_a_dead_process_is_resumed(registry, mnist):
    stopped = train_stopped_after(
        TrainConfig(**{**SMALL.__dict__, "epochs": 2}), registry, mnist, 1
    )
    # as a killed server leaves it: "running", with a heartbeat long silent
    registry._execute(
        "UPDATE runs SET status = 'running', finished_at = NULL, heartbeat = 0 WHERE id = ?",
        (stopped.run_id,),
    )
    job = resume_training(stopped.run_id, registry, mnist, role=Role.INSTRUCTOR)
    assert job.wait(300)
    run = registry.get(stopped.run_id)
    assert run.status == "finished" and run.epochs_done == 2 and len(run.history["loss"]) == 2


def test_the_cli_resumes_a_stopped_run(tmp_path, mnist):
    home = tmp_path / "home"
    registry = RunRegistry(home / "runs.sqlite")
    stopped = train_stopped_after(SMALL, registry, mnist, STOP_AFTER)
    result = run_cli("train", "--resume", stopped.run_id, home=home)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert f"run {stopped.run_id} resumed after epoch {STOP_AFTER}" in result.stdout
    assert "epoch 1:" not in result.stdout and "epoch 3:" in result.stdout
    assert f"run {stopped.run_id} finished" in result.stdout
    run = registry.get(stopped.run_id)
    assert run.status == "finished" and run.epochs_done == SMALL.epochs
    assert not registry.resume_path(run.id).exists()

    again = run_cli("train", "--resume", run.id, home=home)
    assert again.returncode == 2 and "has finished" in again.stderr
    assert "Traceback" not in again.stderr
