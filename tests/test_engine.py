"""The training engine against a real local Ray: the session's engine (conftest.engine,
one `python -m mnist_demo engine` subprocess, one trainer of 2 CPUs) trains every run
these tests submit, in its own worker process; the tests only write to and read from the
store, as a web server does. Subsets are tiny, so each run takes seconds."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_demo import lease, queue
from mnist_demo.classroom import Role
from mnist_demo.live import LiveFeed
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import HOST, Run, RunRegistry, resumable
from mnist_demo.serve import engine as engine_mod
from mnist_demo.store import Store
from tests.conftest import ENGINE_STOP_GRACE_S, REPO, _session_of, wait_for

TEACHER = Role.INSTRUCTOR
FIRST_RUN_S = 180  # the first run also waits for the trainer to import TensorFlow
RUN_S = 120
# 1000 images in batches of 16: 63 batches an epoch, reported every 4 (16 points)
SMALL = TrainConfig(epochs=4, batch_size=16, train_size=1000, test_size=200, seed=7)
LONG = TrainConfig(epochs=30, batch_size=16, train_size=1000, test_size=200, seed=7)
TINY = TrainConfig(epochs=1, batch_size=32, train_size=300, test_size=100, seed=7)
# A resumed run vs an uninterrupted one (tests/test_resume.py measures these): the
# weights, optimizer state and step count are restored exactly, fit's random stream is not.
TOLERANCE = {"loss": 0.15, "accuracy": 0.08, "val_loss": 0.15, "val_accuracy": 0.08}


def ended(registry: RunRegistry, run_id: int, timeout: float = RUN_S) -> Run:
    return wait_for(
        lambda: (r := registry.get(run_id)).ended and r, timeout, f"run {run_id} to end", 0.1
    )


def running(registry: RunRegistry, run_id: int, timeout: float = FIRST_RUN_S) -> Run:
    def check():
        r = registry.get(run_id)
        assert not r.ended, f"run {run_id} ended {r.status}: {r.error}"
        return r.status == "running" and r

    return wait_for(check, timeout, f"run {run_id} to start", 0.05)


def mid_epoch(registry: RunRegistry, run_id: int, timeout: float = FIRST_RUN_S) -> Run:
    """The run as soon as it has an epoch recorded and is early in the next one (far
    from the moment an epoch's checkpoint is written)."""

    def check():
        r = registry.get(run_id)
        assert not r.ended, f"run {run_id} ended {r.status}: {r.error}"
        return (
            r.status == "running"
            and r.epochs_done >= 1
            and r.epoch == r.epochs_done + 1
            and 1 <= r.batch <= r.batches_per_epoch // 2
            and r
        )

    return wait_for(check, timeout, f"run {run_id} to be mid-epoch", 0.01)


def test_a_run_trains_in_a_worker_process_and_its_points_arrive_while_it_runs(engine):
    registry = engine.registry
    run = registry.submit(SMALL, role=TEACHER)  # returns at once: a queued row
    assert run.status == "queued" and queue.waiting(registry)[-1].id == run.id
    started = running(registry, run.id)
    # trained by the engine's Ray worker: another process, in the Ray head's session
    assert started.pid != os.getpid() and started.host == HOST
    assert started.worker.startswith("trainer-")
    assert _session_of(started.pid) == engine.ray_session is not None
    assert b"ray::" in Path(f"/proc/{started.pid}/cmdline").read_bytes()

    seen_while_running: list[int] = []
    feed = LiveFeed(registry)
    while True:
        view = feed.view(run.id)
        if view.run.ended:
            break
        if view.run.status == "running":
            seen_while_running.append(len(view.batch_metrics))
        time.sleep(0.05)
    counts = sorted(set(seen_while_running) - {0})
    assert len(counts) >= 3, counts  # points arrived in several writes, during the run
    done = registry.get(run.id)
    assert done.status == "finished" and done.error is None, done.error
    assert done.epochs_done == SMALL.epochs and done.test_n == SMALL.test_size
    points = registry.points(run.id)
    assert len(points) == SMALL.epochs * 16
    assert [s for s, _, _, _ in points] == list(range(len(points)))
    assert points[-1][1] == pytest.approx(SMALL.epochs)
    assert done.history["val_accuracy"][-1] > 0.7
    assert done.has_model and not registry.resume_path(run.id).exists()


def test_a_killed_worker_leaves_the_run_interrupted_and_the_engine_resumes_it_to_the_same_end(
    engine,
):
    registry = engine.registry
    reference = registry.submit(SMALL, role=TEACHER)
    reference = ended(registry, reference.id, FIRST_RUN_S)
    assert reference.status == "finished", reference.error

    run = registry.submit(SMALL, role=TEACHER)
    at_kill = mid_epoch(registry, run.id)
    os.kill(at_kill.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    interrupted = None
    while interrupted is None and time.monotonic() - killed_at < 15:
        seen = registry.get(run.id)
        if seen.status == "interrupted" or seen.auto_resumes:
            interrupted = seen
        time.sleep(0.05)
    took = time.monotonic() - killed_at
    assert interrupted is not None, "the run was never interrupted"
    assert took < 5, f"interrupted only {took:.1f} s after the kill"  # the engine looks every 1 s
    assert 1 <= interrupted.epochs_done < SMALL.epochs
    assert interrupted.has_model

    # the engine puts it back in the queue by itself; Ray restarts the killed trainer
    # (warm again) and it claims the run, from its last finished epoch
    after = ended(registry, run.id, FIRST_RUN_S)
    assert after.status == "finished" and after.error is None, after.error
    assert after.auto_resumes == 1 and after.resume
    assert after.pid != at_kill.pid
    assert after.epochs_done == SMALL.epochs and not registry.resume_path(run.id).exists()
    kept = interrupted.epochs_done
    assert after.history["loss"][:kept] == interrupted.history["loss"]  # kept as recorded
    points = registry.points(run.id)
    assert [s for s, _, _, _ in points] == list(range(len(points)))  # no gap, no repeat
    assert points[-1][1] == pytest.approx(SMALL.epochs)
    for key, limit in TOLERANCE.items():
        diff = np.abs(np.array(after.history[key]) - np.array(reference.history[key]))
        assert diff[:kept].max() <= 1e-3, (key, diff)  # the same epochs, another process
        assert diff.max() <= limit, (key, diff)
    assert after.test_accuracy == pytest.approx(reference.test_accuracy, abs=0.05)


def test_a_stop_during_a_run_is_honoured_and_keeps_the_last_epoch(engine):
    registry = engine.registry
    run = registry.submit(LONG, role=TEACHER)
    mid_epoch(registry, run.id)
    asked = registry.request_stop(run.id, role=TEACHER)
    assert asked.stop_requested_at is not None
    stopped = ended(registry, run.id, 30)
    assert stopped.status == "stopped" and stopped.error is None, stopped.error
    assert stopped.finished_at - stopped.stop_requested_at < ENGINE_STOP_GRACE_S
    assert 1 <= stopped.epochs_done < LONG.epochs
    assert len(stopped.history["val_accuracy"]) == stopped.epochs_done
    assert stopped.has_model and stopped.test_accuracy is not None
    assert resumable(stopped, registry)


def test_a_stop_the_worker_ignores_ends_in_a_cancel_and_the_worker_restarts(engine):
    registry = engine.registry
    run = registry.submit(LONG, role=TEACHER)
    before = mid_epoch(registry, run.id)
    registry.request_stop(run.id, role=TEACHER)
    os.kill(before.pid, signal.SIGSTOP)  # a worker that does not answer
    try:
        cancelled = ended(registry, run.id, ENGINE_STOP_GRACE_S + 30)
        assert cancelled.status == "stopped", (cancelled.status, cancelled.error)
        assert "did not stop within" in cancelled.error and "cancelled" in cancelled.error
        waited = cancelled.finished_at - cancelled.stop_requested_at
        assert ENGINE_STOP_GRACE_S <= waited < ENGINE_STOP_GRACE_S + 10, waited
        assert cancelled.epochs_done >= 1 and cancelled.has_model  # its last epoch kept
        # cancelled through Ray: the stopped worker process is gone
        wait_for(lambda: not os.path.exists(f"/proc/{before.pid}"), 30, "the worker to die")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(before.pid, signal.SIGCONT)
    assert registry.get(run.id).status == "stopped"  # nothing rewrote it afterwards
    # the trainer was restarted by Ray: the next run trains
    nxt = registry.submit(TINY, role=TEACHER)
    done = ended(registry, nxt.id, FIRST_RUN_S)
    assert done.status == "finished", done.error
    assert done.pid != before.pid


def submit_from_cli(engine, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_demo", "train", "--detach", *map(str, args)],
        cwd=REPO,
        env=engine.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_runs_queue_behind_the_first_and_start_in_order_from_two_processes(engine):
    registry = engine.registry
    first = registry.submit(LONG, role=TEACHER)
    running(registry, first.id)
    # two other processes (as two servers would) submit at the same moment
    tiny = ("--epochs", 1, "--batch-size", 32, "--train-size", 300, "--test-size", 100)
    procs = [submit_from_cli(engine, *tiny), submit_from_cli(engine, *tiny, "--seed", 8)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, (out, err)
        assert "is queued" in out
    third = registry.submit(TINY, role=TEACHER)
    waiting = queue.waiting(registry)
    assert registry.get(first.id).status == "running", "the first run ended too soon"
    assert len(waiting) == 3 and waiting[-1].id == third.id
    order = [r.id for r in waiting]  # by time of submission
    assert [r.queued_at for r in waiting] == sorted(r.queued_at for r in waiting)
    assert {r.config.seed for r in waiting[:2]} == {7, 8}

    registry.request_stop(first.id, role=TEACHER)  # no need to wait out 30 epochs
    runs = [ended(registry, first.id, 30)] + [ended(registry, i, RUN_S) for i in order]
    assert [r.status for r in runs] == ["stopped", "finished", "finished", "finished"]
    # one trainer: each started after the one before it ended, in the queue's order
    for before, after in itertools.pairwise(runs):
        assert after.started_at >= before.finished_at, (before.id, after.id)
    assert [r.id for r in sorted(runs[1:], key=lambda r: r.started_at)] == order


def test_without_an_engine_the_core_says_how_to_start_it(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    assert not engine_mod.status(store).running
    with pytest.raises(engine_mod.EngineUnavailableError) as refused:
        engine_mod.require_engine(store)
    message = str(refused.value)
    assert message.startswith("the training engine is not running")
    assert "make run" in message and "python -m mnist_demo engine" in message
    assert engine_mod.status(store).message == message

    holder = lease.new_holder()
    token = lease.acquire(store, holder, {"capacity": 1, "address": "127.0.0.1:1"})
    assert engine_mod.require_engine(store).capacity == 1
    later = time.time() + lease.LEASE_S + 1  # silent: gone
    assert not engine_mod.status(store, now=later).running
    lease.release(store, holder, token)  # said goodbye
    assert not engine_mod.status(store).running
