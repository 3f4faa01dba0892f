"""One supervisor, real processes, real faults (issue 30).

- serve/processes.py against tiny real processes (sh, sleep, python -c): a piece that
  ends is started again with back-off; one that keeps ending is left down with a message
  after RESTART_LIMIT ends; an end in exit_codes_final is not restarted; a failing health
  check restarts; stop goes in the reverse order and takes a piece's whole session; a
  killed supervisor leaves nothing running.
- lease.py: acquire, renew, release, takeover after LEASE_S with token + 1, a dead local
  holder taken over at once, and the fence: a stale token is refused by queue.claim_next,
  RunRegistry.record_progress and training.train_run.
- The whole installation (`python -m mnist_demo serve`, a real Streamlit server, a real
  engine and Ray head; `hall` with real PostgreSQL and nginx), each piece SIGKILLed
  mid-run: the run ends finished with every point and every epoch once, never two Ray
  heads or two engines, and at the end no process of the test's data home is left. (The
  web server killed under `serve`: tests/e2e/test_supervisor_e2e.py, with its page.)
- Two engines on one store: the second says who holds it, in one line, and exits 3.
- A plain `streamlit run streamlit_app.py` starts no engine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnist_demo import config, lease, queue
from mnist_demo.classroom import OWNER
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import Run, RunRegistry
from mnist_demo.serve import engine as engine_mod
from mnist_demo.serve import hall as hall_module
from mnist_demo.serve import processes as processes_mod
from mnist_demo.serve.processes import Piece, Processes, StartError, pid_alive
from mnist_demo.store import Store
from tests.conftest import REPO, wait_for
from tools.hall_process import HallProcess, _cmdline, processes_of

# --- serve/processes.py with tiny real processes -----------------------------------------


@pytest.fixture
def fast_backoff(monkeypatch):
    """Back-off of tenths of a second (the shape of the real one, 10 times faster)."""
    monkeypatch.setattr(processes_mod, "RESTART_DELAYS_S", (0.1, 0.2, 0.4, 0.8, 1.5))


def tend_until(processes: Processes, predicate, timeout: float = 30.0, what: str = "it"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        processes.tend(health_every_s=0.0)
        time.sleep(0.02)


def test_a_piece_that_keeps_ending_is_restarted_with_back_off_then_left_down(
    tmp_path, fast_backoff
):
    said: list[str] = []
    starts = tmp_path / "starts"
    piece = Piece(
        "flaky",
        ["sh", "-c", f"date +%s.%N >> {starts}; echo 'no disk left'; sleep 0.3; exit 1"],
        tmp_path / "flaky.log",
    )
    processes = Processes(say=said.append)
    processes.start(piece)
    tend_until(processes, lambda: processes.given_up() == ["flaky"], 40, "the piece left down")
    times = [float(x) for x in starts.read_text().split()]
    assert len(times) == processes_mod.RESTART_LIMIT  # the first start and 4 restarts
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # each wait is its run (0.3 s) plus a back-off that doubles: 0.1, 0.2, 0.4, 0.8
    for gap, delay in zip(gaps, processes_mod.RESTART_DELAYS_S, strict=False):
        assert gap >= 0.3 + delay - 0.05, (gaps, processes_mod.RESTART_DELAYS_S)
    assert gaps[-1] > gaps[0] + 0.5, gaps
    assert said[:4] == [f"flaky ended (exit 1): starting it again in {d:.0f} s" for d in
                        processes_mod.RESTART_DELAYS_S[:4]]  # fmt: skip
    assert said[-1] == (
        f"flaky ended {processes_mod.RESTART_LIMIT} times within "
        f"{processes_mod.RESTART_WINDOW_S:.0f} s: left down (last words: no disk left)"
    )
    # left down: no more starts however long it is tended
    for _ in range(20):
        processes.tend(health_every_s=0.0)
        time.sleep(0.02)
    assert len(starts.read_text().split()) == processes_mod.RESTART_LIMIT
    processes.stop()
    assert processes.running == []


def test_ends_outside_the_window_do_not_add_up(tmp_path, fast_backoff, monkeypatch):
    monkeypatch.setattr(processes_mod, "RESTART_WINDOW_S", 0.5)
    said: list[str] = []
    piece = Piece("slow", ["sh", "-c", "sleep 0.6; exit 1"], tmp_path / "slow.log")
    processes = Processes(say=said.append)
    processes.start(piece)
    tend_until(processes, lambda: len(said) >= processes_mod.RESTART_LIMIT + 1, 30, "6 ends")
    assert processes.given_up() == []
    assert all("starting it again in 0 s" in line for line in said), said
    processes.stop()


def test_a_final_exit_code_is_not_restarted_and_a_signal_is_named(tmp_path, fast_backoff):
    said: list[str] = []
    processes = Processes(say=said.append)
    held = processes.start(
        Piece("engine", ["sh", "-c", "sleep 0.3; exit 3"], tmp_path / "e.log",
              exit_codes_final=(3,))
    )  # fmt: skip
    pid = held.pid
    tend_until(processes, lambda: processes.given_up() == ["engine"], 10, "a final end")
    assert said == ["engine ended (3)"] and held.pid == pid
    killed = processes.start(Piece("web", ["sleep", "60"], tmp_path / "w.log"))
    first = killed.pid
    os.kill(first, signal.SIGKILL)
    tend_until(processes, lambda: killed.pid != first and killed.alive(), 10, "a restart")
    assert said[-1] == "web ended (killed by SIGKILL): starting it again in 0 s"
    assert not pid_alive(first)
    processes.stop()
    assert not pid_alive(killed.pid)


def test_a_failing_health_check_restarts_the_piece(tmp_path, fast_backoff):
    said: list[str] = []
    healthy = {"ok": True}
    processes = Processes(say=said.append)
    process = processes.start(
        Piece("web", ["sleep", "60"], tmp_path / "w.log", healthy=lambda: healthy["ok"])
    )
    first = process.pid
    for _ in range(5):
        processes.tend(health_every_s=0.0)
    assert process.pid == first and said == []
    healthy["ok"] = False
    for _ in range(processes_mod.HEALTH_FAILURES - 1):
        processes.tend(health_every_s=0.0)
    assert process.alive() and said == []  # two misses are not an end
    processes.tend(health_every_s=0.0)
    assert said == ["web stopped answering: starting it again"]
    assert not pid_alive(first)
    healthy["ok"] = True
    tend_until(processes, lambda: process.pid != first and process.alive(), 10, "a restart")
    processes.stop()
    assert not pid_alive(process.pid)


def test_start_waits_for_ready_and_says_why_a_piece_did_not_start(tmp_path):
    processes = Processes(say=lambda _: None)
    marker = tmp_path / "ready"
    started = time.monotonic()
    processes.start(
        Piece("slow", ["sh", "-c", f"sleep 0.5; touch {marker}; sleep 60"], tmp_path / "s.log",
              ready=marker.exists)
    )  # fmt: skip
    assert marker.exists() and time.monotonic() - started >= 0.4
    with pytest.raises(StartError, match=r"^broken exited at start \(2\): port 8501 is taken$"):
        processes.start(
            Piece("broken", ["sh", "-c", "echo 'port 8501 is taken'; exit 2"], tmp_path / "b.log",
                  ready=lambda: False)
        )  # fmt: skip
    with pytest.raises(StartError, match="was not ready within 1 s"):
        processes.start(
            Piece("never", ["sleep", "60"], tmp_path / "n.log", ready=lambda: False,
                  ready_timeout_s=1)
        )  # fmt: skip
    never = processes.get("never")
    assert never is not None and not never.alive()
    processes.stop()


def test_stop_goes_in_reverse_order_and_takes_each_whole_session(tmp_path):
    order = tmp_path / "order"
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        f"    open({str(order)!r}, 'a').write(sys.argv[1] + '\\n'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('up', flush=True)\n"
        "while True: time.sleep(0.05)\n"
    )
    processes = Processes(say=lambda _: None)
    pids = []
    for name in ("store", "engine", "web"):
        log = tmp_path / f"{name}.log"
        pids.append(
            processes.start(
                Piece(name, [sys.executable, "-c", script, name], log,
                      ready=lambda log=log: "up" in log.read_text())
            ).pid
        )  # fmt: skip
    # one that ignores SIGTERM and has a child in its session: both killed after its patience
    stubborn = processes.start(
        Piece("stubborn", ["sh", "-c", "trap '' TERM; sleep 300 & wait"], tmp_path / "x.log",
              stop_timeout_s=1)
    )  # fmt: skip
    wait_for(lambda: _children(stubborn.pid), 10, "the stubborn piece's child")
    child = _children(stubborn.pid)[0]
    started = time.monotonic()
    processes.stop()
    assert time.monotonic() - started < 15
    assert order.read_text().split() == ["web", "engine", "store"]
    assert not any(pid_alive(pid) for pid in [*pids, stubborn.pid, child])
    assert processes.running == []


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def test_a_killed_supervisor_leaves_no_child_running(tmp_path):
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from mnist_demo.serve.processes import Piece, Processes\n"
        "p = Processes(say=print)\n"
        f"c = p.start(Piece('child', ['sleep', '300'], Path({str(tmp_path / 'c.log')!r})))\n"
        "print(c.pid, flush=True)\n"
        "p.watch()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert pid_alive(child)
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not pid_alive(child), 10, "the child to end with its supervisor")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


# --- lease.py ---------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store(tmp_path / "runs.sqlite")
    yield s
    s.dispose()


def _info(pid: int | None = None, host: str | None = None) -> dict:
    return {"host": host or socket.gethostname(), "pid": pid or os.getpid(), "capacity": 1}


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_lease_acquire_renew_release_and_one_holder_at_a_time(store):
    assert lease.read(store) is None and not engine_mod.status(store).running
    assert lease.acquire(store, "a", _info()) == 1
    assert lease.acquire(store, "a", _info()) == 1  # asking again changes nothing
    assert engine_mod.status(store).running and engine_mod.status(store).capacity == 1
    with pytest.raises(lease.LeaseHeldError) as refused:
        lease.acquire(store, "b", _info())
    message = str(refused.value)
    assert "\n" not in message and f"process {os.getpid()} on {socket.gethostname()}" in message
    assert "(token 1," in message
    lease.renew(store, "a", 1, _info())
    with pytest.raises(lease.LeaseLostError):
        lease.renew(store, "b", 1, _info())
    with pytest.raises(lease.LeaseLostError):
        lease.renew(store, "a", 2, _info())
    lease.release(store, "a", 1)
    held = lease.read(store)
    assert held is not None and held.holder is None and not held.live()
    assert not engine_mod.status(store).running
    assert lease.acquire(store, "b", _info()) == 2  # free at once after a clean stop
    with pytest.raises(lease.LeaseLostError):
        lease.renew(store, "a", 1, _info())


def test_a_silent_holder_is_taken_over_after_lease_s_with_the_next_token(store):
    t0 = time.time()
    remote = _info(pid=1, host="another-machine")
    assert lease.acquire(store, "a", remote, now=t0) == 1
    lease.renew(store, "a", 1, remote, now=t0 + 5)
    with pytest.raises(lease.LeaseHeldError):
        lease.acquire(store, "b", _info(), now=t0 + 5 + lease.LEASE_S - 0.5)
    assert engine_mod.status(store, now=t0 + 5 + lease.LEASE_S - 0.5).running
    assert not engine_mod.status(store, now=t0 + 5 + lease.LEASE_S + 0.5).running
    assert lease.acquire(store, "b", _info(), now=t0 + 5 + lease.LEASE_S + 0.5) == 2
    with pytest.raises(lease.LeaseLostError):  # the old holder learns it at its next beat
        lease.renew(store, "a", 1, remote, now=t0 + 16)
    lease.release(store, "a", 1)  # a late release by the old holder frees nothing
    assert lease.read(store).holder == "b"


def test_a_dead_holder_on_this_machine_is_taken_over_at_once(store):
    assert lease.acquire(store, "a", _info(pid=_dead_pid())) == 1
    assert lease.acquire(store, "b", _info()) == 2
    # on another machine a pid says nothing: wait for LEASE_S
    lease.release(store, "b", 2)
    assert lease.acquire(store, "c", _info(pid=_dead_pid(), host="another-machine")) == 3
    with pytest.raises(lease.LeaseHeldError):
        lease.acquire(store, "d", _info())


TINY = TrainConfig(epochs=1, batch_size=32, train_size=300, test_size=100, seed=7)


def test_a_stale_token_can_neither_claim_nor_write_progress(tmp_path):
    registry = RunRegistry(Store(tmp_path / "runs.sqlite"))
    old = lease.acquire(registry.store, "old", _info(pid=_dead_pid()))
    new = lease.acquire(registry.store, "new", _info())
    assert (old, new) == (1, 2)
    submitted = registry.submit(TINY, role=OWNER)
    with pytest.raises(lease.StaleTokenError, match="fencing token 1 is stale"):
        queue.claim_next(registry, "trainer-0", token=old)
    assert registry.get(submitted.id).status == "queued"
    run = queue.claim_next(registry, "trainer-0", token=new)
    assert run is not None and run.id == submitted.id and run.lease_token == new
    progress = dict(epoch=1, batch=4, batches_per_epoch=10, new_points=[(0, 0.4, 2.0, 0.3)])
    with pytest.raises(lease.StaleTokenError):
        registry.record_progress(run.id, token=old, **progress)
    assert registry.points(run.id) == []
    assert registry.record_progress(run.id, token=new, **progress) is False
    assert [p[0] for p in registry.points(run.id)] == [0]
    # no token: a test or the CLI calling the job directly, not fenced
    registry.record_progress(run.id, token=None, **{**progress, "new_points": []})
    registry.store.dispose()


def test_train_run_under_a_replaced_engine_returns_none_and_records_nothing(tmp_path, tiny_mnist):
    from mnist_demo.training import train_run

    registry = RunRegistry(Store(tmp_path / "runs.sqlite"))
    token = lease.acquire(registry.store, "old", _info(pid=1, host="another-machine"))
    registry.submit(TINY, role=OWNER)
    run = queue.claim_next(registry, "trainer-0", token=token)
    assert run is not None
    # the engine is replaced (its holder went silent) before the first progress write
    t = time.time() + lease.LEASE_S + 1
    assert lease.acquire(registry.store, "new", _info(), now=t) == token + 1
    assert train_run(registry, run, tiny_mnist, token=token) is None
    after = registry.get(run.id)
    assert after.status == "running" and after.epochs_done == 0  # the new engine's to decide
    assert registry.points(run.id) == [] and after.history.get("loss", []) == []
    registry.store.dispose()


# --- the whole installation, real processes ---------------------------------------------

# 2000 images in batches of 32: 63 batches an epoch, a few seconds each on 2 busy cores
RUN = TrainConfig(epochs=3, batch_size=32, train_size=2000, test_size=300, seed=7)
START_S = 300  # serve/hall from nothing on 2 cores shared with others: Ray, TensorFlow
RUN_S = 300
STOP_S = 240
FINAL = ("finished", "stopped", "failed", "cancelled")  # interrupted is not: it resumes


def _new_home(prefix: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=f"digit-lab-{prefix}-"))
    home.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    return home


def _pids(home: Path, *needles: bytes) -> list[int]:
    """The processes of `home` whose command line holds every needle."""
    return [pid for pid in processes_of(home) if all(n in _cmdline(pid) for n in needles)]


def ray_heads(home: Path) -> list[int]:
    """The Ray heads of `home` (`ray start --head` processes; not a head's child caught
    between fork and exec, which still has its parent's command line)."""
    heads = _pids(home, b"ray start --head")
    return [pid for pid in heads if _ppid(pid) not in heads]


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def kill_all(home: Path) -> list[str]:
    """Whatever of `home` still runs, SIGKILLed by pid (a failed test leaves nothing);
    returns what was left."""
    left = []
    for pid in processes_of(home):
        left.append(_cmdline(pid)[:100].decode(errors="replace"))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def none_left(home: Path, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [_cmdline(pid)[:100].decode(errors="replace") for pid in processes_of(home)]


class Serve(HallProcess):
    """`python -m mnist_demo serve --port P` (make run) as a child on a data home: one
    web server on SQLite, the engine, no nginx. Reads its output as HallProcess does."""

    def start(self, timeout: float = START_S) -> Serve:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MNIST_DEMO_DATA": str(config.data_dir()),
            "MNIST_DEMO_HOME": str(self.home),
            "MNIST_DEMO_RUN_CPUS": "2",  # one run at a time on this 2-core machine
            "MNIST_DEMO_STOP_GRACE_S": "5",
            **self.env,
        }
        env.pop("RAY_ADDRESS", None)
        env.pop("MNIST_DEMO_DATABASE_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mnist_demo", "serve", "--port", str(self.port)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, bufsize=1,
        )  # fmt: skip
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip("\n"))
                if "Ctrl+C stops everything" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise AssertionError("serve did not start: " + " | ".join(self.output[-5:]))
        return self

    @property
    def registry(self) -> RunRegistry:
        return RunRegistry(Store(self.home / "runs.sqlite"))


@pytest.fixture
def serve() -> Iterator[Serve]:
    home = _new_home("serve")
    running = Serve(home, port=hall_module.pick_port(0, set()))
    try:
        yield running
    finally:
        running.stop(STOP_S)
        kill_all(home)
        shutil.rmtree(home, ignore_errors=True)


def say_stopped_and_nothing_left(running: HallProcess) -> None:
    """Ctrl+C (SIGTERM): exit 0, "Stopped." last, no process of its home left."""
    assert running.stop(STOP_S) == 0, running.output[-8:]
    assert running.output[-1] == "Stopped.", running.output[-8:]
    left = none_left(running.home)
    assert left == [], f"processes left behind: {left}"


def health(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except OSError:
        return 0


def wait_running(registry: RunRegistry, run_id: int, epochs_done: int = 0) -> Run:
    def check():
        r = registry.get(run_id)
        assert not r.ended, f"run {run_id} ended {r.status}: {r.error}"
        return r.status == "running" and r.epochs_done >= epochs_done and r.batch >= 1 and r

    return wait_for(check, RUN_S, f"run {run_id} running past epoch {epochs_done}", 0.05)


def wait_ended(registry: RunRegistry, run_id: int, timeout: float = RUN_S) -> Run:
    """The run at its end: an interrupted run is not at its end (the engine resumes it)."""
    return wait_for(
        lambda: _quiet(lambda: (r := registry.get(run_id)).status in FINAL and r),
        timeout,
        f"run {run_id} to end",
        0.2,
    )


def assert_whole(registry: RunRegistry, run_id: int, cfg: TrainConfig = RUN) -> Run:
    """Finished with every point (seq 0..n-1, positions rising to the last epoch's end)
    and every epoch once."""
    run = registry.get(run_id)
    assert run.status == "finished" and run.error is None, (run.status, run.error)
    assert run.epochs_done == cfg.epochs and len(run.history["loss"]) == cfg.epochs
    points = registry.points(run_id)
    assert [p[0] for p in points] == list(range(len(points)))
    positions = [p[1] for p in points]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert positions[-1] == pytest.approx(cfg.epochs)
    per_epoch = run.batches_per_epoch
    assert per_epoch and len(points) >= cfg.epochs * (per_epoch // 4), (len(points), per_epoch)
    return run


class Watch:
    """Samples the store and the processes every 0.1 s in a thread while a fault plays out:
    the most runs running at once, the most Ray heads at once, each run's statuses."""

    def __init__(self, home: Path, registry: RunRegistry) -> None:
        self.home, self.registry = home, registry
        self.max_running = 0
        self.max_heads = 0
        self.heads_seen: list = []  # the heads at the sample with the most
        self.statuses: dict[int, list[tuple[float, str]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(Exception):
                runs = self.registry.list_runs()
                self.max_running = max(self.max_running, sum(r.status == "running" for r in runs))
                for r in runs:
                    seen = self.statuses.setdefault(r.id, [])
                    if not seen or seen[-1][1] != r.status:
                        seen.append((time.monotonic(), r.status))
            heads = ray_heads(self.home)
            if len(heads) > self.max_heads:
                self.max_heads = len(heads)
                self.heads_seen = [(pid, _cmdline(pid)[-60:], _ppid(pid)) for pid in heads]

    def first(self, run_id: int, status: str) -> float | None:
        return next((t for t, s in self.statuses.get(run_id, []) if s == status), None)


def test_serve_a_killed_engine_is_started_again_one_ray_head_the_run_resumes_once(serve):
    started = time.monotonic()
    serve.start()
    registry = serve.registry
    first = registry.submit(RUN, role=OWNER)
    second = registry.submit(RUN, role=OWNER)  # queued behind it: claimed once, later
    with Watch(serve.home, registry) as watch:
        wait_running(registry, first.id, epochs_done=1)
        engine_pid = _pids(serve.home, b"mnist_demo engine")
        assert len(engine_pid) == 1 and len(ray_heads(serve.home)) == 1
        os.kill(engine_pid[0], signal.SIGKILL)
        wait_for(
            lambda: any(line.startswith("engine ended (killed by SIGKILL): starting it again")
                        for line in serve.output),
            30, "the supervisor to say it starts the engine again",
        )  # fmt: skip
        resumed = wait_ended(registry, first.id, RUN_S)
        wait_ended(registry, second.id, RUN_S)
        heads = ray_heads(serve.home)
    assert len(heads) == 1, heads  # one Ray head afterwards, and never two at once
    assert watch.max_heads == 1, watch.heads_seen
    assert watch.max_running <= 1, "two runs running at once: a run claimed twice"
    engines = _pids(serve.home, b"mnist_demo engine")
    assert len(engines) == 1 and engines != engine_pid
    assert_whole(registry, first.id)
    assert resumed.auto_resumes == 1, resumed.auto_resumes
    assert_whole(registry, second.id)
    assert registry.get(second.id).auto_resumes == 0
    assert [s for _, s in watch.statuses[second.id]][-2:] == ["running", "finished"]
    say_stopped_and_nothing_left(serve)
    print(f"test {time.monotonic() - started:.0f} s; statuses {watch.statuses[first.id]}")


def test_serve_a_killed_raylet_interrupts_the_run_within_10_s_then_it_resumes_and_the_queue_goes_on(
    serve,
):
    started = time.monotonic()
    serve.start()
    registry = serve.registry
    first = registry.submit(RUN, role=OWNER)
    second = registry.submit(RUN, role=OWNER)
    with Watch(serve.home, registry) as watch:
        wait_running(registry, first.id, epochs_done=1)
        raylet = _pids(serve.home, b"/raylet")
        assert len(raylet) == 1, raylet
        os.kill(raylet[0], signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: watch.first(first.id, "interrupted"), 15, "the run interrupted", 0.1)
        noticed = watch.first(first.id, "interrupted") - killed
        wait_ended(registry, first.id, RUN_S)
        wait_ended(registry, second.id, RUN_S)
    assert noticed <= 10, f"interrupted {noticed:.1f} s after the raylet died"
    assert any(line.startswith("engine ended (exit 75)") for line in serve.output), serve.output
    assert_whole(registry, first.id)
    assert_whole(registry, second.id)
    assert watch.max_running <= 1 and len(ray_heads(serve.home)) == 1
    assert watch.max_heads == 1, watch.heads_seen
    say_stopped_and_nothing_left(serve)
    print(f"interrupted in {noticed:.1f} s; test {time.monotonic() - started:.0f} s")


# --- two engines on one store -------------------------------------------------------------


def _engine_once(home: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "MNIST_DEMO_HOME": str(home), **env}
    full.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "mnist_demo", "engine"],
        cwd=REPO, env=full, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_a_second_engine_on_one_store_says_who_holds_it_and_exits_3(tmp_path):
    from tests.conftest import start_engine, stop_engine

    home = _new_home("engines")
    other = _new_home("engines-other")
    first = start_engine(home)
    try:
        store = Store(home / "runs.sqlite")
        held = lease.read(store)
        assert held is not None and held.info["pid"] == first.proc.pid
        who = f"process {first.proc.pid} on {socket.gethostname()} (token {held.token},"
        # the same data home
        same = _engine_once(home)
        assert same.returncode == engine_mod.EXIT_LEASE_HELD, same.stdout + same.stderr
        lines = same.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"engine: a training engine for {home} is already running: {who}"
        ), lines
        # another data home on the same database
        url = f"sqlite:///{home / 'runs.sqlite'}"
        shared = _engine_once(other, MNIST_DEMO_DATABASE_URL=url)
        assert shared.returncode == engine_mod.EXIT_LEASE_HELD, shared.stdout + shared.stderr
        lines = shared.stdout.strip().splitlines()
        assert len(lines) == 1, lines
        # (a SQLite store's engine folder is beside its file: the first's lock says it)
        assert lines[0].startswith("engine: ") and who in lines[0], lines
        # the first goes on, still the holder, with its one Ray head
        assert first.proc.poll() is None and engine_mod.status(store).running
        assert lease.read(store).info["pid"] == first.proc.pid
        assert lease.read(store).token == held.token
        assert len(ray_heads(home)) == 1 and processes_of(other) == []
        store.dispose()
    finally:
        stop_engine(first, check=False)
    assert first.proc.returncode == 0, first.describe_log()
    assert none_left(home) == [] and none_left(other) == []
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(other, ignore_errors=True)


# --- a plain streamlit run ------------------------------------------------------------------


def plain_streamlit(home: Path, port: int) -> subprocess.Popen:
    """`streamlit run streamlit_app.py` on `home`, as a user might start it by hand."""
    env = {**os.environ, "MNIST_DEMO_HOME": str(home), "MNIST_DEMO_DATA": str(config.data_dir())}
    env.pop("MNIST_DEMO_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port",
         str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc


def test_a_plain_streamlit_run_starts_no_engine_and_leaves_nothing(tmp_path):
    home = _new_home("plain")
    port = hall_module.pick_port(0, set())
    proc = plain_streamlit(home, port)
    try:
        wait_for(lambda: health(f"http://127.0.0.1:{port}/_stcore/health") == 200, 120,
                 "streamlit to answer", 0.3)  # fmt: skip
        # the pages themselves run in tests/e2e/test_supervisor_e2e.py (a browser)
        for path in ("/", "/train"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                assert r.status == 200
        time.sleep(3)
        assert processes_of(home) == [proc.pid]
        assert not engine_mod.status(Store(home / "runs.sqlite")).running
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert none_left(home, 10) == []
    assert not (home / "engine" / "head.json").exists()
    shutil.rmtree(home, ignore_errors=True)


# --- PostgreSQL killed in the hall -----------------------------------------------------------

needs_hall = pytest.mark.skipif(
    hall_module.nginx_binary() is None or hall_module.missing_packages() != [],
    reason="needs Debian's nginx and postgresql (make nginx postgres)",
)


@needs_hall
def test_hall_a_killed_postgresql_is_started_again_and_the_run_finishes():
    from mnist_demo.serve.postgres import LocalPostgres

    started = time.monotonic()
    home = _new_home("hall-pg")
    hall = HallProcess(home, port=hall_module.pick_port(0, set()), replicas=1,
                       env={"MNIST_DEMO_RUN_CPUS": "2"})  # fmt: skip
    try:
        hall.start(START_S)
        pg = LocalPostgres(home / "hall" / "postgres", hall.postgres_port)
        registry = RunRegistry(Store(pg.url))
        run = registry.submit(RUN, role=OWNER)
        wait_running(registry, run.id, epochs_done=1)
        postmaster = _pids(home, b"postgres -D")
        assert len(postmaster) == 1, postmaster
        os.kill(postmaster[0], signal.SIGKILL)
        killed = time.monotonic()
        wait_for(
            lambda: "postgres ended (killed by SIGKILL): starting it again in 1 s" in hall.output,
            30, "the supervisor to say it starts PostgreSQL again",
        )  # fmt: skip
        wait_for(
            lambda: (p := _pids(home, b"postgres -D")) and p != postmaster,
            60, "a new postmaster",
        )  # fmt: skip
        ended = wait_ended(registry, run.id)
        back = time.monotonic() - killed
        assert_whole(registry, run.id)
        assert ended.status == "finished"
        # the web server and nginx stayed up through it
        assert health(f"{hall.url}/healthz/r1") == 200
        assert not any(line.startswith(("web server ended", "nginx ended", "engine ended"))
                       for line in hall.output), hall.output  # fmt: skip
        registry.store.dispose()
        say_stopped_and_nothing_left(hall)
        print(f"run finished {back:.0f} s after the kill; test {time.monotonic() - started:.0f} s")
    finally:
        hall.stop(STOP_S)
        kill_all(home)
        shutil.rmtree(home, ignore_errors=True)


def _quiet(read):
    """A read that may meet the database while it restarts."""
    try:
        return read()
    except Exception:
        return None
