"""The training job (training.train_run) on a claimed run, in this process: what a
trainer of the engine runs. tests/test_engine.py runs the same job in real Ray workers."""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from mnist_demo import queue, training
from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.evaluation import evaluate
from mnist_demo.live import LiveFeed
from mnist_demo.model import STEPS_PER_EXECUTION, load_model
from mnist_demo.recipe import InvalidConfigError, TrainConfig
from mnist_demo.runs import LESSON_MAX_EPOCHS, Run, RunRegistry, resumable
from mnist_demo.store import StoreError
from mnist_demo.training import select_subset, train_run

TINY = TrainConfig(epochs=2, batch_size=32, train_size=600, test_size=200)
TEACHER = Role.INSTRUCTOR


@pytest.fixture
def registry(tmp_path):
    return RunRegistry(tmp_path / "runs.sqlite")


def claimed(registry: RunRegistry, cfg: TrainConfig, **kw) -> Run:
    """Submit a run and claim it, as a trainer of the engine would."""
    submitted = registry.submit(cfg, role=TEACHER, **kw)
    run = queue.claim_next(registry, "test-worker")
    assert run is not None and run.id == submitted.id and run.status == "running"
    return run


def positions(registry: RunRegistry, run_id: int) -> list[float]:
    return [p for _, p, _, _ in registry.points(run_id)]


def test_a_tiny_run_learns_checkpoints_each_epoch_and_is_recorded(registry, tiny_mnist):
    saved_epochs = []
    record_epoch = registry.record_epoch
    registry.record_epoch = lambda run_id, history, path, token=None: (
        saved_epochs.append((len(history["loss"]), path.exists())),
        record_epoch(run_id, history, path, token),
    )
    run = claimed(registry, TINY)
    assert run.pid == os.getpid() and run.worker == "test-worker"
    ended = train_run(registry, run, tiny_mnist)
    assert ended.status == "finished" and ended.error is None
    assert saved_epochs == [(1, True), (2, True)]  # a checkpoint on disk at every epoch
    # 600 / 32 -> 19 batches per epoch, reported once per execution of 4 batches
    # (model.STEPS_PER_EXECUTION): after batches 4, 8, 12, 16 and 19 of each epoch
    assert STEPS_PER_EXECUTION == 4
    assert positions(registry, run.id) == pytest.approx(
        [e + b / 19 for e in (0, 1) for b in (4, 8, 12, 16, 19)]
    )
    seqs = [s for s, _, _, _ in registry.points(run.id)]
    assert seqs == list(range(10))
    run = registry.get(run.id)
    assert run.status == "finished" and run.epochs_done == 2
    assert run.history["loss"][1] < run.history["loss"][0]
    assert run.history["val_accuracy"][-1] > 0.5  # 600 images are enough to beat chance
    assert run.test_n == 200 and run.test_accuracy == pytest.approx(1 - run.misclassified / 200)
    assert run.test_accuracy == pytest.approx(run.history["val_accuracy"][-1], abs=1e-4)
    assert run.progress == 1.0 and run.batches_per_epoch == 19
    view = LiveFeed(registry).view(run.id)
    assert view.eta_s is None and len(view.batch_metrics) == 10
    # the result is the saved checkpoint's, though the job scores it only once, in training
    (_, _), (x_test, y_test) = tiny_mnist
    x_test, y_test = select_subset(x_test, y_test, TINY.test_size, TINY.seed)
    reloaded = evaluate(load_model(registry.model_path(run.id)), x_test, y_test)
    assert run.misclassified == reloaded.misclassified_count
    assert run.test_loss == pytest.approx(reloaded.loss, rel=1e-5)
    # nothing to resume after the last epoch: no resume checkpoint is kept
    assert not registry.resume_path(run.id).exists()


def test_points_reach_the_store_in_batches_not_one_write_per_batch(registry, tiny_mnist):
    """A few writes a second, whatever the number of batches: each write carries every
    point since the last one, with the run's position and heartbeat."""
    calls: list[int] = []
    record = registry.record_progress

    def counting(run_id, **kw):
        calls.append(len(kw["new_points"]))
        return record(run_id, **kw)

    registry.record_progress = counting
    cfg = TrainConfig(epochs=2, batch_size=8, train_size=600, test_size=200)
    run = claimed(registry, cfg)
    started = time.monotonic()
    assert train_run(registry, run, tiny_mnist).status == "finished"
    took = time.monotonic() - started
    points = registry.points(run.id)
    # 600 / 8 = 75 batches an epoch, reported every 4: 19 points an epoch
    assert len(points) == sum(calls) == 2 * 19
    assert [s for s, _, _, _ in points] == list(range(38))
    forced = 1 + 3 * cfg.epochs  # before fit; each epoch's start, scoring and saving
    assert len(calls) <= forced + math.ceil(took / training.FLUSH_EVERY_S) + 1, (calls, took)
    assert len(calls) < len(points), calls
    assert max(calls) > 1  # a write carried several points


def test_without_a_timed_flush_only_the_epoch_edges_write(registry, tiny_mnist, monkeypatch):
    monkeypatch.setattr(training, "FLUSH_EVERY_S", 3600.0)
    calls: list[int] = []
    record = registry.record_progress
    registry.record_progress = lambda run_id, **kw: (
        calls.append(len(kw["new_points"])),
        record(run_id, **kw),
    )[1]
    run = claimed(registry, TINY)
    assert train_run(registry, run, tiny_mnist).status == "finished"
    # before fit; each epoch: its start, scoring (its 5 points), saving (phases named)
    assert calls == [0, 0, 5, 0, 0, 5, 0]
    assert len(registry.points(run.id)) == 10


def test_a_stop_is_honoured_after_the_batch_and_keeps_the_last_full_epoch(
    registry, tiny_mnist, monkeypatch
):
    monkeypatch.setattr(training, "FLUSH_EVERY_S", 0.0)  # the store hears every batch
    cfg = TrainConfig(epochs=30, batch_size=8, train_size=600, test_size=200)
    run = claimed(registry, cfg)
    record = registry.record_progress
    at_stop: list[float] = []

    def stop_in_epoch_2(run_id, **kw):
        if kw["epoch"] == 2 and kw["batch"] >= 8 and not at_stop:
            registry.request_stop(run_id, role=TEACHER)  # as a page would, meanwhile
            at_stop.append(kw["new_points"][-1][1])  # the batch this write reports
        return record(run_id, **kw)

    registry.record_progress = stop_in_epoch_2
    ended = train_run(registry, run, tiny_mnist)
    assert at_stop == [pytest.approx(1 + 8 / 75)]  # epoch 2, after batch 8 of 75
    # no batch trained after the one under way when the stop was read
    assert positions(registry, run.id)[-1] == pytest.approx(at_stop[0])
    assert ended.status == "stopped" and ended.error is None
    assert ended.epochs_done == 1 and len(ended.history["val_loss"]) == 1  # partial dropped
    assert registry.model_path(run.id).exists()
    assert ended.test_accuracy == pytest.approx(ended.history["val_accuracy"][0], abs=1e-4)
    assert registry.resume_path(run.id).exists() and resumable(ended, registry)
    assert ended.stop_requested_at is not None


def test_a_stop_before_fit_trains_nothing(registry, tiny_mnist):
    run = claimed(registry, TINY)
    registry.request_stop(run.id, role=TEACHER)
    ended = train_run(registry, run, tiny_mnist)
    assert ended.status == "stopped" and ended.epochs_done == 0
    assert registry.points(run.id) == [] and not ended.has_model


MID_RUN_VIEWS = 5  # per reader, with an epoch already finished


def test_a_live_view_is_consistent_while_the_run_trains(registry, tiny_mnist):
    cfg = TrainConfig(epochs=3, batch_size=16, train_size=600, test_size=200)
    run = claimed(registry, cfg)
    done = threading.Event()
    errors: list[str] = []
    mid_run: list[int] = []

    def reader():
        feed, seen = LiveFeed(registry), 0
        while not done.is_set():
            view = feed.view(run.id)
            r = view.run
            n = len(r.history.get("loss", []))
            if any(len(v) != n for v in r.history.values()) or r.epochs_done != n:
                errors.append(f"history of {r.epochs_done} epochs: {r.history}")
            if r.status == "running":
                if not (r.epoch - 1 <= n <= max(r.epoch, 0) <= cfg.epochs):
                    errors.append(f"{n} finished epochs while in epoch {r.epoch}")
                if not 0 <= r.batch <= r.batches_per_epoch:
                    errors.append(f"batch {r.batch} of {r.batches_per_epoch}")
                if not 0.0 <= r.progress <= 1.0:
                    errors.append(f"progress {r.progress}")
                seen += n >= 1
            xs = [p["epoch"] for p in view.batch_metrics]
            if xs != sorted(xs):
                errors.append("points out of order")
            time.sleep(0.01)
        mid_run.append(seen)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        ended = train_run(registry, run, tiny_mnist)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert len(mid_run) == 3 and min(mid_run) >= MID_RUN_VIEWS, mid_run
    assert ended.status == "finished" and len(ended.history["val_loss"]) == cfg.epochs


def test_a_failure_is_recorded_with_its_message(registry, tiny_mnist):
    (x, y), test = tiny_mnist
    broken = ((x[:, :20, :20], y), test)  # not 28x28
    run = claimed(registry, TrainConfig(epochs=1, batch_size=8, train_size=100, test_size=50))
    ended = train_run(registry, run, broken)
    assert ended.status == "failed" and "28" in ended.error
    stored = registry.get(run.id)
    assert stored.status == "failed" and stored.error == ended.error
    assert not registry.resume_path(run.id).exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be between 1"),
        ({"batch_size": 1000, "train_size": 500}, "larger than the training subset"),
        ({"train_size": 70000}, "training subset must be between"),
        ({"test_size": 0}, "test subset must be between"),
        ({"learning_rate": 0.0}, "learning rate"),
        ({"preset": "vgg"}, "preset must be one of"),
        ({"seed": 2**32}, "seed must be between 0 and 4294967295"),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(registry, changes, message):
    cfg = TrainConfig(**{**TINY.to_dict(), **changes})
    with pytest.raises(InvalidConfigError, match=message):
        cfg.validate()
    with pytest.raises(InvalidConfigError, match=message):
        registry.submit(cfg, role=TEACHER)
    assert registry.list_runs() == [] and queue.waiting(registry) == []


def test_every_problem_is_named_at_once():
    cfg = TrainConfig(epochs=0, learning_rate=2.0, seed=-1)
    with pytest.raises(InvalidConfigError) as refused:
        cfg.validate()
    assert "epochs" in str(refused.value) and "learning rate" in str(refused.value)
    assert "seed" in str(refused.value)


def test_subset_is_seeded_and_spans_the_data():
    x = np.arange(1000)
    a, _ = select_subset(x, x, 100, seed=7)
    b, _ = select_subset(x, x, 100, seed=7)
    c, _ = select_subset(x, x, 100, seed=8)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100
    assert not np.array_equal(a, c)
    assert a.max() > 500  # not simply the first 100
    full, _ = select_subset(x, x, 5000, seed=7)
    assert np.array_equal(full, x)


def test_only_the_instructor_submits_stops_resumes_or_cancels(registry, tiny_mnist):
    student = Role.STUDENT
    with pytest.raises(PermissionDeniedError, match="Only the instructor can start training"):
        registry.submit(TINY, role=student)
    assert registry.list_runs() == []
    long = TrainConfig(epochs=LESSON_MAX_EPOCHS + 1, batch_size=32, train_size=100, test_size=50)
    with pytest.raises(InvalidConfigError, match=f"at most {LESSON_MAX_EPOCHS} epochs"):
        registry.submit(long, role=TEACHER)
    assert registry.list_runs() == []
    with pytest.raises(PermissionDeniedError):
        registry.allow_long_runs(True, role=student)
    registry.allow_long_runs(True, role=TEACHER)

    running = claimed(registry, long)
    queued = registry.submit(TINY, role=TEACHER)
    with pytest.raises(PermissionDeniedError, match="Only the instructor can stop the run"):
        registry.request_stop(running.id, role=student)
    assert registry.get(running.id).stop_requested_at is None
    with pytest.raises(PermissionDeniedError, match="Only the instructor can stop the run"):
        queue.cancel_queued(registry, queued.id, role=student)
    with pytest.raises(PermissionDeniedError, match="Only the instructor can stop the run"):
        registry.request_stop(queued.id, role=student)
    assert registry.get(queued.id).status == "queued"

    registry.request_stop(running.id, role=TEACHER)  # the stop is read at the first write
    stopped = train_run(registry, running, tiny_mnist)
    assert stopped.status == "stopped"
    with pytest.raises(PermissionDeniedError, match="Only the instructor can start training"):
        registry.resume(stopped.id, role=student)
    assert registry.get(stopped.id).status == "stopped"

    assert queue.cancel_queued(registry, queued.id, role=TEACHER).status == "cancelled"
    with pytest.raises(StoreError, match="not queued"):
        queue.cancel_queued(registry, queued.id, role=TEACHER)
    with pytest.raises(StoreError, match="nothing to stop"):
        registry.request_stop(stopped.id, role=TEACHER)


def test_a_queued_run_is_cancelled_by_a_stop_and_never_claimed(registry):
    first = registry.submit(TINY, role=TEACHER)
    second = registry.submit(TINY, role=TEACHER)
    assert [r.id for r in queue.waiting(registry)] == [first.id, second.id]
    assert registry.request_stop(first.id, role=TEACHER).status == "cancelled"
    assert queue.claim_next(registry, "w").id == second.id
    assert queue.claim_next(registry, "w") is None


def test_progress_is_zero_before_the_first_batch_not_negative():
    """A page that polls in the instant a run starts (epoch 0) must not crash its bar."""
    run = Run(id=1, created_at=0.0, status="running", config=TINY, epoch=0, batch=0,
              batches_per_epoch=30)  # fmt: skip
    assert run.progress == 0.0


def test_a_run_from_a_spare_trains_exactly_as_a_fresh_one(registry, tiny_mnist):
    """The spare's training step is traced by a real step, then every variable is put back:
    a run started from it ends with the same weights, history and points as one that
    built its model on claim. A run with another config does not take it."""
    cfg = TrainConfig.for_preset("quick", batch_size=32, train_size=600, test_size=200, seed=3)
    spare = training.Spare(cfg, tiny_mnist)
    assert spare.model.train_function is not None  # traced ahead of the run
    assert not spare.fits(claimed(registry, replace(cfg, seed=4)))

    from_spare = train_run(registry, claimed(registry, cfg), tiny_mnist, spare=spare)
    fresh = train_run(registry, claimed(registry, cfg), tiny_mnist)
    assert from_spare.status == fresh.status == "finished"
    assert from_spare.history == fresh.history
    assert [p[1:] for p in registry.points(from_spare.id)] == [
        p[1:] for p in registry.points(fresh.id)
    ]
    a, b = load_model(from_spare.model_path), load_model(fresh.model_path)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


# --- the store and the disk are not the run's ------------------------------------------


def flaky(method, fail_first: int, error=None):
    """`method`, refusing its first `fail_first` calls as an unanswering store would."""
    from mnist_demo.store import StoreUnavailableError

    calls = {"n": 0}

    def call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= fail_first:
            raise error or StoreUnavailableError("the database is not answering")
        return method(*args, **kwargs)

    call.calls = calls
    return call


def test_a_store_outage_loses_no_point_and_does_not_end_the_run(registry, tiny_mnist, monkeypatch):
    monkeypatch.setattr(training, "RETRY_EVERY_S", 0.01)
    registry.record_progress = flaky(registry.record_progress, fail_first=6)
    registry.record_epoch = flaky(registry.record_epoch, fail_first=3)
    registry.finish_run = flaky(registry.finish_run, fail_first=3)
    run = claimed(registry, TINY)
    ended = train_run(registry, run, tiny_mnist)
    assert ended.status == "finished" and ended.error is None, ended.error
    assert registry.record_progress.calls["n"] > 6  # it did fail, and was tried again
    seqs = [s for s, _, _, _ in registry.points(run.id)]
    assert seqs == list(range(len(seqs))) and len(seqs) == TINY.epochs * 5  # every report
    assert ended.epochs_done == TINY.epochs and len(ended.history["val_accuracy"]) == 2


def test_an_outage_past_the_limit_interrupts_the_run_keeping_its_checkpoint(
    registry, tiny_mnist, monkeypatch
):
    monkeypatch.setattr(training, "RETRY_EVERY_S", 0.01)
    monkeypatch.setattr(training, "OUTAGE_LIMIT_S", 0.0)
    cfg = replace(TINY, epochs=3)
    record = registry.record_epoch
    run = claimed(registry, cfg)

    def then_the_store_goes(run_id, history, path, token=None):
        record(run_id, history, path, token)
        registry.record_progress = flaky(registry.record_progress, fail_first=10**6)

    registry.record_epoch = then_the_store_goes
    ended = train_run(registry, run, tiny_mnist)
    assert ended.status == "interrupted", (ended.status, ended.error)
    assert "did not answer" in ended.error
    assert ended.epochs_done == 1 and registry.resume_path(run.id).exists()  # resumable
    assert resumable(ended, registry)


def test_a_disk_that_refuses_an_epoch_interrupts_the_run_never_fails_it(
    registry, tiny_mnist, monkeypatch
):
    saves = {"n": 0}
    real_save = training.save_model

    def full_disk_on_the_second(model, path):
        saves["n"] += 1
        if saves["n"] == 2:
            raise OSError(28, "No space left on device")
        real_save(model, path)

    monkeypatch.setattr(training, "save_model", full_disk_on_the_second)
    run = claimed(registry, replace(TINY, epochs=3))
    ended = train_run(registry, run, tiny_mnist)
    assert ended.status == "interrupted", (ended.status, ended.error)
    assert "No space left" in ended.error
    assert ended.epochs_done == 1 and registry.resume_path(run.id).exists()


def test_a_fenced_trainer_stops_and_writes_nothing_more(registry, tiny_mnist):
    from mnist_demo import lease

    token = lease.acquire(registry.store, "old-engine", {})
    run = queue.claim_next(registry.submit(TINY, role=TEACHER) and registry, "w", token=token)
    assert run is not None and run.lease_token == token
    # the old engine falls silent; a new one takes the store over
    lease.acquire(registry.store, "new-engine", {}, now=time.time() + lease.LEASE_S + 1)
    assert train_run(registry, run, tiny_mnist, token=token) is None
    after = registry.get(run.id)
    assert after.status == "running" and after.epochs_done == 0  # left to the new engine
    with pytest.raises(lease.StaleTokenError):
        queue.claim_next(registry, "w", token=token)


def test_a_run_its_trainer_still_holds_is_never_marked_interrupted(registry):
    from mnist_demo import lease
    from mnist_demo.store import runs as runs_table

    run = claimed(registry, TINY)
    with registry.store.write() as con:  # an outage silenced its heartbeat for a minute
        con.execute(
            runs_table.update()
            .where(runs_table.c.id == run.id)
            .values(heartbeat=time.time() - 60, pid=None)
        )
    token = lease.acquire(registry.store, "engine", {})
    assert registry.mark_interrupted() == []  # a page: the engine holds the store, it decides
    assert registry.mark_interrupted(held={run.id}) == []  # its trainer says it holds it
    assert registry.get(run.id).status == "running"
    assert registry.mark_interrupted(held=set()) == [run.id]  # no trainer holds it
    assert registry.get(run.id).status == "interrupted"
    lease.release(registry.store, "engine", token)
