"""The training engine: Ray runs every training job, never a web server.

How the pieces fit:

- **The queue is the store.** Starting a run (a page, the CLI, a fine-tune, a resume, a
  student's experiment) only writes a *queued* row (runs.RunRegistry.submit); it returns
  at once, from any server. Nothing in a web server talks to Ray.
- **Trainers pull.** Each trainer is a detached, named Ray actor holding one warm worker
  process (TensorFlow imported, MNIST in memory, its threads set to its CPUs). It claims
  the next queued run from the store (atomically: two trainers never take the same run),
  trains it with training.train_run, and claims again. How many trainers exist is the
  engine's capacity: one per `run_cpus` CPUs of the cluster; further runs wait in the
  queue, in order. A trainer killed mid-run is restarted by Ray; its run is marked
  *interrupted* (dead pid on this host, or a silent heartbeat) and can be resumed.
- **The engine's supervisor** (`python -m mnist_demo engine`; `make run`, `make class` and
  `make hall` start it as one of their pieces, serve/hall.py) first takes the store's
  lease (lease.py: exactly one engine per store; a second one says who holds it and
  exits), then starts a local Ray head bound to loopback as its child (or joins a cluster
  with `RAY_ADDRESS`). Every second it renews the lease (what pages read as "the engine
  is running"), keeps the trainers at capacity (a machine that joins the cluster adds
  trainers), marks runs whose worker died interrupted, puts a run the engine's own
  failure interrupted back in the queue to resume, cancels through Ray a run whose
  worker ignores a stop request for STOP_GRACE_S, and stops a student's experiment that
  runs well past its budget. On Ctrl+C it asks running runs to stop (each keeps its last
  finished epoch), waits for them, stops the Ray head, removes Ray's temporary folder
  and frees the lease: nothing is left behind.
- **When a piece dies.** A Ray head (its raylet or GCS) that dies is noticed within a
  second: the supervisor marks the running runs interrupted, frees the lease and exits
  (EXIT_RAY_DIED), and whoever started it starts it again with a new head; the
  interrupted runs resume from their last finished epoch. A supervisor that dies takes
  its Ray head with it (the head gets SIGTERM from the kernel: serve/processes.py); the
  next one finds the lease's holder dead and takes over at once, with a new token, so a
  trainer left behind can no longer claim or write (it stops itself).

Ray's token authentication stays on: the supervisor makes a token in the data home
(readable by its owner only); every process that joins reads it from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnist_demo import config, experiments, lease, queue
from mnist_demo.classroom import OWNER
from mnist_demo.errors import DigitLabError
from mnist_demo.runs import HOST, INSTRUCTOR, Run, RunRegistry, resumable
from mnist_demo.serve.processes import (
    Piece,
    kill_session,
    session_members,
    spawn,
    stop_process,
)
from mnist_demo.store import Store, StoreError

if TYPE_CHECKING:  # TensorFlow loads in the trainer only, never in the supervisor
    from mnist_demo.data import Arrays
    from mnist_demo.recipe import TrainConfig
    from mnist_demo.training import Spare

EXIT_RAY_DIED = 75  # the Ray head died under the supervisor: start the engine again
EXIT_LEASE_HELD = 3  # another engine serves this store
AUTO_RESUMES = 2  # an interrupted run is resumed by the engine at most this often
AUTO_RESUME_WINDOW_S = 600.0  # ... and only soon after it was interrupted
# a worker that ignores a stop request this long is cancelled through Ray
STOP_GRACE_S = config.stop_grace_s()
# The engine's own writes (lease beat, run ends) wait this long for another writer's lock,
# then its round is tried again a second later: a trainer frozen in a write never stalls
# the engine for the store's 30 s, and its stop is still enforced after STOP_GRACE_S.
STORE_LOCK_WAIT_S = 5.0
SHUTDOWN_WAIT_S = 60.0  # Ctrl+C: how long running runs get to stop after their batch
CLAIM_EVERY_S = 0.2  # an idle trainer looks at the queue this often
NAMESPACE_PREFIX = "digit-lab"
START_COMMAND = "make run (or python -m mnist_demo engine)"


class EngineUnavailableError(DigitLabError):
    """The training engine is not running or cannot be reached."""


def not_running_message() -> str:
    return f"the training engine is not running: start it with `{START_COMMAND}`"


# --- where the engine's files live ------------------------------------------------------


def engine_dir(home: Path | None = None) -> Path:
    return (home or config.home()) / "engine"


def token_path(home: Path | None = None) -> Path:
    return engine_dir(home) / "auth_token"


def _ensure_token(home: Path) -> Path:
    path = token_path(home)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def _free_ports(n: int) -> list[int]:
    """n ports free now, from the system's ephemeral range (above Ray's worker ports,
    10002-19999). Every port a head listens on is chosen, none left to Ray's fixed
    defaults: two heads on one machine (a test beside `make run`) must not collide."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


HEAD_PORT_OPTIONS = (
    "--port",
    "--ray-client-server-port",
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
    "--dashboard-agent-grpc-port",
    "--dashboard-agent-listen-port",
    "--dashboard-port",  # Ray still starts a dashboard process with the dashboard off
)


# --- status, as every server sees it (from the store) -----------------------------------


@dataclass(frozen=True)
class EngineStatus:
    running: bool
    capacity: int  # runs that can train at once
    address: str | None
    beat_age_s: float | None

    @property
    def message(self) -> str | None:
        return None if self.running else not_running_message()


def status(store: Store, now: float | None = None) -> EngineStatus:
    """Is an engine serving this store? Read from the lease its supervisor renews."""
    held = lease.read(store)
    if held is None:
        return EngineStatus(False, 0, None, None)
    return EngineStatus(
        held.live(now), int(held.info.get("capacity", 0)), held.info.get("address"), held.age(now)
    )


def require_engine(store: Store) -> EngineStatus:
    """The engine's status, or EngineUnavailableError with what to run."""
    engine = status(store)
    if not engine.running:
        raise EngineUnavailableError(not_running_message())
    return engine


# --- the trainer: one warm worker process ------------------------------------------------


class Trainer:
    """A warm training worker (a Ray actor). Loads TensorFlow and MNIST once, then claims
    and trains queued runs until the engine stops."""

    def __init__(self, store_url: str, home: str, data_dir: str, cpus: int, name: str, token: int):
        os.environ["MNIST_DEMO_HOME"] = home
        os.environ["MNIST_DEMO_DATA"] = data_dir
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        # Ray set OMP_NUM_THREADS to this actor's CPUs; TensorFlow's own pools are set
        # to match, so two trainers on one machine split its cores instead of fighting.
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, cpus))
        from mnist_demo.data import load_mnist

        self.name = name
        self.token = token  # the engine lease's fencing token, presented with every write
        self.fenced = False  # a newer engine took the store: this trainer stopped itself
        self.registry = RunRegistry(Store(store_url))
        self.data = load_mnist()
        self.current: int | None = None
        threading.Thread(target=self._serve, name="trainer", daemon=True).start()

    def _serve(self) -> None:
        from mnist_demo.recipe import QUICK_DEMO
        from mnist_demo.training import train_run

        spare: Spare | None = None
        make_spare = True  # once per idle spell: a failure is not retried in a loop
        while True:
            try:
                run = queue.claim_next(self.registry, self.name, token=self.token)
            except lease.StaleTokenError as e:
                print(f"trainer {self.name}: {e}; stopping", flush=True)
                self.fenced = True
                return
            except StoreError:
                run = None  # the store is unavailable for a moment: try again
            if run is None:
                if make_spare:  # idle: get the Quick demo's model ready (2 s here)
                    spare, make_spare = _spare_or_none(QUICK_DEMO, self.data), False
                else:
                    time.sleep(CLAIM_EVERY_S)
                continue
            self.current = run.id
            used = spare if spare is not None and spare.fits(run) else None
            if used is not None:  # this run trains it: the next idle spell makes another
                spare, make_spare = None, True
            try:
                plan = _plan_for(self.registry, run)
                ended = train_run(
                    self.registry, run, self.data, plan=plan, spare=used, token=self.token
                )
                if ended is None:  # fenced, or the store stayed away: the engine decides
                    self.fenced = self.fenced or _fenced(self.registry, self.token)
                    if self.fenced:
                        return
                elif ended.owner != INSTRUCTOR and ended.has_model:
                    _score_on_class_set(self.registry, ended)
            except Exception as e:  # never let one run end the trainer
                print(f"trainer {self.name}: run {run.id} failed outside fit: {e}", flush=True)
            finally:
                self.current = None

    def ping(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": os.getpid(),
            "host": HOST,
            "run": self.current,
            "fenced": self.fenced,
        }


def _fenced(registry: RunRegistry, token: int) -> bool:
    try:
        held = lease.read(registry.store)
    except StoreError:
        return False
    return held is not None and held.token != token


def _spare_or_none(config: TrainConfig, data: Arrays) -> Spare | None:
    """A Spare for `config`, or None if it could not be made (runs then build their
    own model, as they would without one)."""
    from mnist_demo.training import Spare

    try:
        return Spare(config, data)
    except Exception as e:
        print(f"trainer: no spare model ({type(e).__name__}: {e})", flush=True)
        return None


def _score_on_class_set(registry: RunRegistry, run: Run) -> None:
    """A student's experiment, scored on the class's own drawings (the current set) for
    the leaderboard's private column."""
    from mnist_demo.class_set import ClassSet
    from mnist_demo.evaluation import evaluate
    from mnist_demo.model import load_model

    snapshot = ClassSet(registry.store).snapshot()
    if snapshot.n == 0:
        registry.set_class_score(run.id, None, 0)
        return
    model = load_model(registry.model_path(run.id))
    accuracy = evaluate(model, snapshot.images, snapshot.labels).accuracy
    registry.set_class_score(run.id, accuracy, snapshot.n)


def _plan_for(registry: RunRegistry, run: Run) -> Any:
    """The plan a run's record asks for (the job itself knows no plan by name)."""
    if run.fine_tune is None:
        return None
    from mnist_demo import finetune

    return finetune.plan_for(registry, run)


# --- the supervisor ---------------------------------------------------------------------


class RayDiedError(DigitLabError):
    """The local Ray head (its raylet or GCS) died under the supervisor."""


class Supervisor:
    """Holds the store's lease, owns (or joins) a Ray cluster and keeps the trainers
    serving the store."""

    def __init__(self, store: Store, *, address: str | None = None, cpus: int | None = None):
        self.store = store
        self.registry = RunRegistry(store)
        self.home = store.home
        self.cpus_per_run = config.run_cpus()
        self.head_cpus = cpus or os.cpu_count() or 1
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.head: subprocess.Popen | None = None
        self.temp_dir: Path | None = None
        self.trainers: dict[str, Any] = {}
        self.namespace = f"{NAMESPACE_PREFIX}-{hashlib.sha256(store.url.encode()).hexdigest()[:12]}"
        self.holder = lease.new_holder()
        self.token: int | None = None
        self._stopping = threading.Event()

    # -- start ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """What every server shows of this engine (stored with the lease)."""
        return {
            "host": HOST,
            "pid": os.getpid(),
            "address": self.address,
            "capacity": len(self.trainers),
        }

    def start(self) -> None:
        """Take the lease (lease.LeaseHeldError: another engine serves this store), stop
        what a dead predecessor on this machine left, start or join Ray, start the
        trainers."""
        self.token = lease.acquire(self.store, self.holder, self.info())
        for run in self.registry.running():
            if run.lease_token is not None and run.lease_token != self.token:
                self.registry.interrupt(run.id, "the training engine stopped under it")
        _stop_predecessor(self.home)
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(_ensure_token(self.home)))
        if self.address is None:
            os.environ.update(LOCAL_RAY_ENV)
            self.address = self._start_head()
        import ray

        try:
            ray.init(
                address=self.address,
                namespace=self.namespace,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=False,
            )
        except Exception as e:
            self.stop_head()
            self._release()
            raise EngineUnavailableError(
                f"cannot join the Ray cluster at {self.address}: {e}"
            ) from e
        self.ensure_trainers()
        self.beat()

    def _start_head(self, attempts: int = 3) -> str:
        """A local Ray head, a child of this process (serve/processes.py: own session,
        SIGTERM if this process dies). A port taken between choosing and binding it
        (another head starting) is tried again."""
        for attempt in range(attempts):
            try:
                return self._try_head()
            except EngineUnavailableError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _try_head(self) -> str:
        ports = _free_ports(len(HEAD_PORT_OPTIONS))
        self.temp_dir = Path("/tmp") / f"digit-lab-ray-{os.getpid()}"
        log = engine_dir(self.home) / "ray-head.log"
        start = log.stat().st_size if log.exists() else 0
        ray_bin = Path(sys.executable).with_name("ray")
        command = [str(ray_bin), "start", "--head", "--block"]
        for option, port in zip(HEAD_PORT_OPTIONS, ports, strict=True):
            command += [option, str(port)]
        command += [
            "--node-ip-address",
            LOOPBACK,
            "--num-cpus",
            str(self.head_cpus),
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--temp-dir",
            str(self.temp_dir),
        ]
        env = {**os.environ, **LOCAL_RAY_ENV}
        self.head = spawn(Piece("ray-head", command, log, env=env))
        atomic_json(
            head_file(self.home),
            {"pid": self.head.pid, "temp_dir": str(self.temp_dir), "engine_pid": os.getpid()},
        )
        address = f"{LOOPBACK}:{ports[0]}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.head.poll() is not None:
                raise EngineUnavailableError(
                    f"the Ray head did not start (exit {self.head.returncode}); see {log}"
                )
            with open(log, "rb") as f:
                f.seek(start)
                if b"Ray runtime started" in f.read():
                    return address
            with contextlib.suppress(StoreError):  # a slow start must not look like a dead one
                self.beat()
            time.sleep(0.2)
        self.stop_head()
        raise EngineUnavailableError(f"the Ray head did not start within 90 s; see {log}")

    def capacity(self) -> int:
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 0))
        return max(1, cpus // self.cpus_per_run)

    def ensure_trainers(self) -> None:
        """One trainer per `cpus_per_run` CPUs in the cluster, each found by name (any
        supervisor, or a restarted one, finds the same trainers)."""
        import ray

        want = self.capacity()
        actor = ray.remote(Trainer)
        for i in range(want):
            name = f"trainer-{i}"
            if name in self.trainers:
                continue
            self.trainers[name] = actor.options(
                name=name,
                namespace=self.namespace,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=self.cpus_per_run,
                max_restarts=-1,
                max_concurrency=2,  # ping answers while a run trains
                # the worker imports this package from where the supervisor runs it
                runtime_env={"env_vars": {"PYTHONPATH": str(config.PACKAGE_DIR.parent)}},
            ).remote(
                self.store.url,
                str(self.home),
                str(config.data_dir()),
                self.cpus_per_run,
                name,
                self.token,
            )

    def beat(self) -> None:
        """Renew the lease (lease.LeaseLostError if another engine took it over)."""
        assert self.token is not None
        lease.renew(self.store, self.holder, self.token, self.info())

    # -- every second --------------------------------------------------------------

    def tend(self) -> None:
        self.check_head()
        # first, and before any write: a trainer frozen inside a write transaction holds
        # the store's lock until it is killed (a beat would wait for it in vain)
        self.cancel_ignored_stops()
        self.beat()
        self.ensure_trainers()
        self.registry.mark_interrupted(held=self.held_runs())
        self.resume_interrupted()
        for run, reason in experiments.overrunning(self.registry):  # past its budget
            self.registry.stop(run.id, reason)

    def check_head(self) -> None:
        """RayDiedError when the local head has ended (`ray start --block` ends when its
        raylet or GCS dies): asked before any call into Ray, which would wait a minute
        for a GCS that is gone."""
        if self.head is None:
            return
        if self.head.poll() is not None:
            raise RayDiedError(f"the Ray head ended (exit {self.head.returncode})")
        # `ray start` ends when a part is killed, but not when one is asked to stop
        parts = b"".join(_cmdline(pid) for pid in session_members(self.head.pid))
        for part in (b"raylet/raylet", b"gcs/gcs_server"):
            if part not in parts:
                raise RayDiedError(f"the Ray head's {part.split(b'/')[1].decode()} ended")

    def held_runs(self) -> set[int]:
        """Runs the live trainers say they hold (a trainer busy in fit still answers)."""
        import ray

        pings = {name: t.ping.remote() for name, t in self.trainers.items()}
        ready, _ = ray.wait(list(pings.values()), num_returns=len(pings), timeout=2.0)
        held = set()
        for ref in ready:
            try:
                answer = ray.get(ref, timeout=0)
            except Exception:
                continue  # that trainer is restarting
            if answer.get("run") is not None:
                held.add(int(answer["run"]))
        return held

    def resume_interrupted(self, now: float | None = None) -> list[int]:
        """Runs the engine's own failures interrupted (a worker or Ray died, the store
        stayed away too long) go back in the queue, from their last finished epoch, at
        most AUTO_RESUMES times each and only soon after: nothing a class started is
        lost to a fault of ours, and a run that keeps killing its worker stops trying."""
        now = time.time() if now is None else now
        resumed = []
        # Only the last few minutes' interrupted runs: this runs every second.
        for run in self.registry.interrupted_since(now - AUTO_RESUME_WINDOW_S):
            if run.auto_resumes < AUTO_RESUMES and (
                run.epochs_done == 0 or resumable(run, self.registry)
            ):
                self.registry.resume_after_failure(run.id)
                resumed.append(run.id)
        return resumed

    def cancel_ignored_stops(self, now: float | None = None) -> list[int]:
        """A run asked to stop STOP_GRACE_S ago and still running: its worker is not
        answering. Kill the worker through Ray (Ray restarts it, warm again) and record
        the run as stopped, with its last finished epoch kept."""
        import ray

        now = time.time() if now is None else now
        cancelled = []
        for run in self.registry.running():
            asked = run.stop_requested_at
            if asked is None or now - asked < STOP_GRACE_S:
                continue
            trainer = self.trainers.get(run.worker or "")
            if trainer is not None:
                ray.kill(trainer, no_restart=False)
            self.registry.finish_run(
                run.id,
                "stopped",
                error=f"the worker did not stop within {STOP_GRACE_S:.0f} s and was cancelled",
            )
            cancelled.append(run.id)
        return cancelled

    def serve_forever(self) -> None:
        """Tend every second until stopped. Ends (RayDiedError) when the local Ray head
        died, or (lease.LeaseLostError) when another engine took the store over."""
        while not self._stopping.wait(1.0):
            try:
                self.tend()
            except (RayDiedError, lease.LeaseLostError):
                raise
            except StoreError as e:
                print(f"engine: the store is not answering ({e}); retrying", flush=True)
            except Exception as e:
                print(f"engine: {type(e).__name__}: {e}", flush=True)

    # -- stop ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Ask running runs to stop (each keeps its last finished epoch), wait for them,
        stop the trainers and the Ray head this supervisor started, free the lease."""
        self._stopping.set()
        owner = OWNER
        try:
            for run in queue.waiting(self.registry):
                queue.cancel_queued(self.registry, run.id, role=owner)
            for run in self.registry.running():
                self.registry.request_stop(run.id, role=owner)
            deadline = time.monotonic() + SHUTDOWN_WAIT_S
            while self.registry.running() and time.monotonic() < deadline:
                time.sleep(0.5)
            self.registry.mark_interrupted(held=frozenset())
        except StoreError as e:
            print(f"engine: could not stop the runs cleanly ({e})", flush=True)
        try:
            import ray

            if self.head is not None:
                for trainer in self.trainers.values():
                    ray.kill(trainer, no_restart=True)
            ray.shutdown()
        except Exception:
            pass
        self.stop_head()
        self._release()

    def abandon(self, reason: str) -> None:
        """The Ray head died (or the lease was lost): no call into Ray (it would wait for
        a GCS that is gone). The running runs are interrupted, to be resumed by the next
        engine; the head's leftovers are stopped; the lease is freed."""
        self._stopping.set()
        try:
            for run in self.registry.running():
                self.registry.interrupt(run.id, reason)
        except StoreError as e:
            print(f"engine: could not mark the runs interrupted ({e})", flush=True)
        self.stop_head()
        self._release()

    def _release(self) -> None:
        if self.token is None:
            return
        with contextlib.suppress(StoreError):  # else it expires by itself in LEASE_S
            lease.release(self.store, self.holder, self.token)

    def stop_head(self) -> None:
        if self.head is not None:
            stop_process(self.head, signal.SIGTERM, 60)
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        head_file(self.home).unlink(missing_ok=True)


# --- a local Ray head: loopback only, and what a dead predecessor left -------------------

LOOPBACK = "127.0.0.1"
# A one-machine engine's Ray listens on loopback only (a cluster is opt-in: RAY_ADDRESS).
# Ray replaces a node address of 127.0.0.1 by the machine's routable one, and then binds
# its servers to every interface, unless this is 0 (measured with Ray 2.60: every
# listener on 127.0.0.1 with it). The head, the supervisor (a driver) and the workers
# (they inherit it) all need it. A stop drains the node for 30 s by default; the
# supervisor has already stopped the runs, so the head stops at once.
LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}


def head_file(home: Path) -> Path:
    """Where the supervisor records its Ray head (pid, temporary folder)."""
    return engine_dir(home) / "head.json"


def atomic_json(path: Path, value: dict[str, Any]) -> None:
    from mnist_demo.store import atomic_write

    atomic_write(path, json.dumps(value))


def _stop_predecessor(home: Path) -> None:
    """A supervisor killed before it could stop its head (its head gets SIGTERM from the
    kernel, but may take a moment) leaves head.json: its head's session is stopped and
    its temporary folder removed, so there is never a second Ray head on one store."""
    path = head_file(home)
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    pid = int(recorded.get("pid", 0))
    if pid > 0 and _is_ray_head(pid):
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.monotonic() + wait
            while _is_ray_head(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
    if pid > 0:
        kill_session(pid)  # its workers left its process group, not its session
    temp = recorded.get("temp_dir")
    if temp:
        shutil.rmtree(temp, ignore_errors=True)
    path.unlink(missing_ok=True)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _is_ray_head(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and b"ray" in cmdline and b"--head" in cmdline


def run_supervisor(store: Store, address: str | None = None, cpus: int | None = None) -> int:
    """The `engine` command: start, serve until SIGINT/SIGTERM, stop in order; returns the
    exit code (EXIT_RAY_DIED: start it again; EXIT_LEASE_HELD: another engine serves
    this store). One supervisor per data home on a machine (a file lock) and one per
    store anywhere (the lease)."""
    import fcntl

    lock_path = engine_dir(store.home) / "supervisor.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(lock_path, "w")  # noqa: SIM115  (held until this process ends)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        who = ""
        with contextlib.suppress(Exception):  # who holds it, when the store says so
            held = lease.read(store)
            who = f": {held.describe()}" if held is not None and held.live() else ""
        print(f"engine: a training engine for {store.home} is already running{who}", flush=True)
        return EXIT_LEASE_HELD
    supervisor = Supervisor(store, address=address, cpus=cpus)

    def on_signal(signum: int, frame: Any) -> None:
        supervisor._stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        supervisor.start()
    except lease.LeaseHeldError as e:
        print(f"engine: {e}", flush=True)
        return EXIT_LEASE_HELD
    # ray.init installs its own SIGTERM handler (it ends the process at once, leaving the
    # head and the trainers running): take SIGTERM back so it stops in order, as Ctrl+C.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(
        f"engine: Ray at {supervisor.address}, {len(supervisor.trainers)} trainer(s) of "
        f"{supervisor.cpus_per_run} CPU(s), lease token {supervisor.token}",
        flush=True,
    )
    try:
        supervisor.serve_forever()
    except RayDiedError as e:
        print(f"engine: {e}; running runs are interrupted, to resume", flush=True)
        supervisor.abandon("Ray stopped under it; it resumes from its last finished epoch")
        return EXIT_RAY_DIED
    except lease.LeaseLostError as e:
        print(f"engine: {e}; stopping", flush=True)
        supervisor.abandon("its training engine was replaced")
        return EXIT_LEASE_HELD
    supervisor.shutdown()
    print("engine: stopped", flush=True)
    return 0
