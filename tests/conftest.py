"""Shared fixtures. Tests never touch the user's data home: the session gets its own
MNIST_DEMO_HOME, and MNIST_DEMO_DATA points at the verified cache `make setup` built,
so the real dataset is read once from disk rather than fetched per test.

Tests that need the training engine share ONE real one per session (`engine`): a
`python -m mnist_demo engine` subprocess (a local Ray head as its own process, warm
trainers) serving a data home of its own, started the first time a test asks for it and
stopped with SIGTERM at the end of the session, leaving no Ray process behind. Its
capacity is one run at a time, so runs queue behind each other."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_demo import config, queue

os.environ["MNIST_DEMO_DATA"] = str(config.data_dir())
os.environ["MNIST_DEMO_HOME"] = tempfile.mkdtemp(prefix="digit-lab-tests-")
# A page under test never starts a training engine of its own (a plain server does when
# it finds none): the tests that need one start it, and stop it by pid.

import numpy as np
import pytest

from mnist_demo.data import load_mnist

REPO = Path(__file__).resolve().parents[1]
ENGINE_START_S = 120  # a cold engine on two busy cores: Ray head + trainers
ENGINE_STOP_S = 90  # SIGTERM: stop runs, kill trainers, stop the head
ENGINE_STOP_GRACE_S = 5  # MNIST_DEMO_STOP_GRACE_S of the test engine: an ignored stop
# is cancelled after this (a stop that is honoured takes well under a second here)


@pytest.fixture(scope="session")
def mnist():
    """The real, verified MNIST."""
    return load_mnist()


@pytest.fixture(scope="session")
def tiny_mnist(mnist):
    """A few hundred real images: enough for a loss to fall, fast enough for a unit test."""
    (x_train, y_train), (x_test, y_test) = mnist
    return (x_train[:600], y_train[:600]), (x_test[:200], y_test[:200])


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty data home for one test."""
    monkeypatch.setenv("MNIST_DEMO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(7)


# --- waiting ----------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition", every=0.02
) -> Any:
    """Poll until `predicate()` is truthy; return its value (AssertionError on timeout)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not met within {timeout:.0f} s")
        time.sleep(every)


# --- the training engine ------------------------------------------------------------------


@dataclass
class Engine:
    """A running `python -m mnist_demo engine` and the data home it serves."""

    home: Path
    proc: subprocess.Popen
    log: Path
    ray_session: int | None = None  # the Ray head's session id: all its processes

    @property
    def registry(self):  # a fresh one per call is cheap; tests share the store
        from mnist_demo.runs import RunRegistry
        from mnist_demo.store import Store

        return RunRegistry(Store(self.home / "runs.sqlite"))

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a CLI call on this engine's data home."""
        return dict(os.environ, MNIST_DEMO_HOME=str(self.home), **extra)

    def ray_processes(self) -> list[str]:
        """Every process of its Ray head still alive: the head's session (workers change
        their command lines, but keep the session) and anything naming its temp dir."""
        found = set()
        if self.ray_session and self.ray_session != os.getsid(0):  # never our own
            found |= set(_pgrep("-s", str(self.ray_session)))
        found |= set(_pgrep("-f", f"digit-lab-ray-{self.proc.pid}"))
        return sorted(found)

    def describe_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


def _pgrep(*args: str) -> list[str]:
    result = subprocess.run(["pgrep", "-a", *args], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if line.strip()]


def _session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    session = int(stat.rsplit(")", 1)[1].split()[3])  # state ppid pgrp session ...
    return session or None


def start_engine(home: Path, **extra_env: str) -> Engine:
    """Start an engine for `home` and wait until the store says it runs."""
    from mnist_demo.serve import engine as engine_mod
    from mnist_demo.store import Store

    home.mkdir(parents=True, exist_ok=True)
    log = home / "supervisor.log"
    env = dict(os.environ, MNIST_DEMO_HOME=str(home), MNIST_DEMO_RUN_CPUS="2")
    env.setdefault("MNIST_DEMO_STOP_GRACE_S", str(ENGINE_STOP_GRACE_S))
    env.update(extra_env)
    env.pop("RAY_ADDRESS", None)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mnist_demo", "engine", "--cpus", "2"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    handle = Engine(home, proc, log)
    store = Store(home / "runs.sqlite")
    try:
        wait_for(
            # the lease is taken before the Ray head starts: running with trainers
            lambda: (
                proc.poll() is not None
                or ((s := engine_mod.status(store)).running and s.capacity > 0)
            ),
            ENGINE_START_S,
            "the engine to start",
            every=0.2,
        )
        if proc.poll() is not None:
            raise AssertionError(f"the engine exited ({proc.returncode}):\n{handle.describe_log()}")
        head = _pgrep("-f", f"ray start --head .*digit-lab-ray-{proc.pid}$")
        assert len(head) == 1, head  # the Ray head the supervisor started, own session
        handle.ray_session = _session_of(int(head[0].split()[0]))
        assert handle.ray_session == int(head[0].split()[0]) != os.getsid(0)
    except BaseException:
        stop_engine(handle, check=False)
        raise
    finally:
        store.dispose()
    return handle


def stop_engine(handle: Engine, check: bool = True) -> None:
    """SIGTERM, as `make run`'s Ctrl+C does, by pid; then no Ray process of it is left."""
    if handle.proc.poll() is None:
        handle.proc.send_signal(signal.SIGTERM)
        try:
            handle.proc.wait(timeout=ENGINE_STOP_S)
        except subprocess.TimeoutExpired:
            handle.proc.kill()
            handle.proc.wait()
            if check:
                raise AssertionError(
                    f"the engine did not stop within {ENGINE_STOP_S} s:\n{handle.describe_log()}"
                ) from None
    try:
        wait_for(lambda: not handle.ray_processes(), 20, "the Ray processes to end", every=0.5)
    except AssertionError:
        left = handle.ray_processes()
        if handle.ray_session and handle.ray_session != os.getsid(0):  # never leave them
            for line in _pgrep("-s", str(handle.ray_session)):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(line.split()[0]), signal.SIGKILL)
        if check:
            raise AssertionError(f"Ray processes left behind by the engine: {left}") from None


@pytest.fixture(scope="session")
def engine(tmp_path_factory) -> Iterator[Engine]:
    """The session's training engine on a data home of its own (shared by every test
    that asks for it: runs accumulate there, so tests go by the ids they get back)."""
    handle = start_engine(tmp_path_factory.mktemp("engine-home"))
    yield handle
    # Stopped as `make run`'s Ctrl+C stops it, with a run training: the run is asked to
    # stop and keeps its last finished epoch, then nothing of Ray is left.
    from mnist_demo.classroom import OWNER
    from mnist_demo.recipe import TrainConfig

    registry = handle.registry
    for queued in queue.waiting(registry):
        queue.cancel_queued(registry, queued.id, role=OWNER)
    cfg = TrainConfig(epochs=30, batch_size=16, train_size=1000, test_size=100)
    run = registry.submit(cfg, role=OWNER)
    wait_for(lambda: registry.get(run.id).epochs_done >= 1, 180, "an epoch", every=0.1)
    stop_engine(handle)
    assert handle.proc.returncode == 0, (handle.proc.returncode, handle.describe_log())
    assert "engine: stopped" in handle.describe_log()
    run = registry.get(run.id)
    assert run.status == "stopped" and run.error is None, (run.status, run.error)
    assert 1 <= run.epochs_done < cfg.epochs and run.has_model


# The longest test files first (seconds of one file on this machine, from `pytest
# --durations=0`; rough, the machine swings 2x). `make test` runs two workers that take
# whole files in the order collected (xdist --dist loadfile --no-loadscope-reorder), so a
# long file left for last runs alone while the other worker idles; its default order
# (most tests first) put one-test browser files, some of the longest, at the very end.
LONGEST_FILES = {
    "tests/test_supervisor.py": 170,
    "tests/test_cli.py": 150,
    "tests/e2e/test_train_e2e.py": 150,
    "tests/e2e/test_projector_e2e.py": 120,
    "tests/test_resume.py": 105,
    "tests/e2e/test_first_load_e2e.py": 80,
    "tests/e2e/test_fair_class_e2e.py": 100,
    "tests/e2e/test_pages_e2e.py": 90,
    "tests/e2e/test_hall_e2e.py": 85,
    "tests/e2e/test_canvas_e2e.py": 80,
    "tests/test_engine.py": 75,
    "tests/e2e/test_supervisor_e2e.py": 70,
    "tests/e2e/test_experiments_e2e.py": 60,
    "tests/test_store_faults.py": 55,
    "tests/test_hall.py": 48,
    "tests/e2e/test_students_e2e.py": 45,
    "tests/e2e/test_accessibility.py": 41,
    "tests/test_finetune.py": 40,
    "tests/e2e/test_class_e2e.py": 40,
    "tests/test_training.py": 37,
    "tests/e2e/test_hall_address_e2e.py": 37,
}


def pytest_collection_modifyitems(items: list[Any]) -> None:
    def seconds(item: Any) -> float:
        return LONGEST_FILES.get(item.nodeid.split("::")[0], 0)

    items.sort(key=seconds, reverse=True)  # stable: each file's own order is kept
