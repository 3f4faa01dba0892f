"""The run registry: every training run is a row in the store, its model a file beside it.

A run's life: *queued* (submitted by a page, the CLI or a student's experiment; waits in
the one queue every server shares) → *running* (a training worker claimed it) →
*finished*, *stopped*, *failed* or *interrupted* (its worker died) — or *cancelled*
before it started. While it runs, its worker writes per-batch points, progress and a
heartbeat here, and reads its stop request from here: any server shows any run live by
reading the store, and no process keeps anything another would need.

Each run also keeps a `run.json` in its folder, rewritten at every epoch and at the end.
It costs nothing and means a damaged database can be rebuilt without losing a run.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mnist_demo import config, lease
from mnist_demo.classroom import Action, Role, require
from mnist_demo.errors import DigitLabError, ModelFileError
from mnist_demo.files import restore as restore_class_state
from mnist_demo.models import INSTRUCTOR, usable
from mnist_demo.recipe import FineTuneRecord, InvalidConfigError, TrainConfig
from mnist_demo.serve.processes import pid_alive
from mnist_demo.store import (
    Store,
    StoreCorruptError,
    StoreError,
    StoreWriteError,
    atomic_write,
    explain_os_error,
    points,
    runs,
)

STATUSES = ("queued", "running", "finished", "stopped", "failed", "interrupted", "cancelled")
ENDED = ("finished", "stopped", "failed", "interrupted", "cancelled")
ACTIVE_RUN = "active_run"  # settings keys
LONG_RUNS = "long_runs"
ACTIVE_FILE = "active.json"  # in the runs folder: which run is active, for recovery
RESUME_FILE = "resume.keras"  # in a run folder: the training model with its optimizer state
HOST = socket.gethostname()

HEARTBEAT_EVERY_S = 2.0  # how often a training worker says it is alive
HEARTBEAT_STALE_S = 30.0  # a "running" run silent this long was interrupted

# Kept for errors other modules raise about the registry.
RegistryError = StoreError
RegistryCorruptError = StoreCorruptError


class CannotResumeError(DigitLabError):
    """This run cannot be continued; the message says why."""


class RunNotFoundError(StoreError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class Run:
    id: int
    created_at: float
    status: str
    config: TrainConfig
    fine_tune: FineTuneRecord | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_done: int = 0
    finished_at: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    misclassified: int | None = None
    test_n: int | None = None
    model_path: str | None = None
    error: str | None = None
    pid: int | None = None
    heartbeat: float | None = None  # time.time() of the worker's last sign of life
    owner: str = INSTRUCTOR
    priority: int = 0
    queued_at: float | None = None
    started_at: float | None = None
    resume: bool = False
    host: str | None = None
    worker: str | None = None
    stop_requested_at: float | None = None
    epoch: int = 0  # 1-based epoch in progress (0: not started)
    batch: int = 0  # batches done in it
    batches_per_epoch: int = 0
    class_accuracy: float | None = None  # on the class's drawings (the leaderboard)
    class_n: int | None = None
    # what the run is doing now: queued, preparing, training, scoring, saving (None: ended)
    phase: str | None = None
    lease_token: int | None = None  # the engine lease's token it was claimed under
    network: str | None = None  # the submitter's address group (fair share per person)
    budget_s: float | None = None  # an experiment's allowed training seconds
    auto_resumes: int = 0  # times the engine resumed it after failing under it

    @property
    def name(self) -> str:
        return f"run {self.id} ({self.config.preset})"

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return self.finished_at - (self.started_at or self.created_at)

    @property
    def has_model(self) -> bool:
        return bool(self.model_path) and Path(self.model_path or "").exists()

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def progress(self) -> float:
        """0..1 of the run's batches done."""
        total = self.config.epochs * max(self.batches_per_epoch, 1)
        if self.status == "running" and self.batches_per_epoch:
            done = (self.epoch - 1) * self.batches_per_epoch + self.batch
        else:
            done = self.epochs_done * self.batches_per_epoch
        return min(max(done / total, 0.0), 1.0) if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["fine_tune"] = self.fine_tune.to_dict() if self.fine_tune else None
        return d


def training_now(run: Run, now: float | None = None) -> bool:
    """Is this run really being trained right now? Proven by the heartbeat its worker
    writes every few seconds: a live process id alone proves nothing (after a reboot
    another process may hold it). A dead process id on this host does prove the end at
    once, so a worker killed seconds ago is seen interrupted without waiting out the
    heartbeat."""
    if run.status != "running":
        return False
    if run.pid is not None and run.host == HOST and not pid_alive(run.pid):
        return False
    now = time.time() if now is None else now
    last = run.heartbeat if run.heartbeat is not None else run.created_at
    return now - last < HEARTBEAT_STALE_S


def _encode_config(config: TrainConfig, fine_tune: FineTuneRecord | None) -> str:
    d = config.to_dict()
    if fine_tune is not None:
        d["fine_tune"] = fine_tune.to_dict()
    return json.dumps(d)


def _decode_config(text: str) -> tuple[TrainConfig, FineTuneRecord | None]:
    d = json.loads(text)
    record = d.pop("fine_tune", None)
    return TrainConfig.from_dict(d), (
        FineTuneRecord.from_dict(record) if record is not None else None
    )


def row_to_run(row: Any) -> Run:
    d = dict(row._mapping)
    cfg, fine_tune = _decode_config(d.pop("config"))
    d["history"] = json.loads(d["history"] or "{}")
    d["resume"] = bool(d["resume"])
    return Run(config=cfg, fine_tune=fine_tune, **d)


def _run_values(run: Run) -> dict[str, Any]:
    d = run.to_dict()
    d["config"] = _encode_config(run.config, run.fine_tune)
    del d["fine_tune"]
    d["history"] = json.dumps(run.history)
    d["resume"] = int(run.resume)
    return d


class RunRegistry:
    """Runs in the store. Any thread and any process may use one (pages read while a
    worker writes)."""

    def __init__(self, store: Store | Path | str | None = None, *, rebuilding: bool = False):
        self.store = store if isinstance(store, Store) else Store(store)
        self.path = self.store.path  # None on PostgreSQL
        self.runs_dir = self.store.home / "runs"
        if not rebuilding and self.store.is_sqlite:
            known = self._count()
            if known == 0 and self._run_files():
                # An emptied or replaced database beside existing runs: opening it as it
                # is would forget them, and new runs would take their ids (and folders).
                raise StoreCorruptError(
                    f"the run registry {self.store.where} holds no runs, but "
                    f"{len(self._run_files())} run folders exist in {self.runs_dir}. Start "
                    "the app or run `python -m mnist_demo runs --recover` to rebuild it "
                    "from them, losing no run."
                )

    def _count(self) -> int:
        with self.store.read() as con:
            return int(con.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one())

    def _run_files(self) -> list[Path]:
        return sorted(self.runs_dir.glob("*/run.json"))

    def _highest_folder_id(self) -> int:
        ids = [int(p.name) for p in self.runs_dir.glob("*") if p.name.isdigit()]
        return max(ids, default=0)

    @classmethod
    def recover(cls, path: Path | None = None) -> tuple[RunRegistry, Path | None]:
        """Move an unreadable SQLite file aside (kept, never deleted), start a fresh one
        and re-import the class's students, cookie-signing key and settings (files.py),
        every run from its run.json, the active model from its sidecar file, and every
        class drawing from its files. Works with a missing, empty or
        corrupt file. Returns the registry and the moved file (None if nothing moved)."""
        path = Path(path) if path else config.registry_path()
        aside = None
        if path.exists():
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                path.replace(aside)
            except OSError as e:
                raise StoreWriteError(
                    f"cannot move {path} aside to rebuild it ({e.strerror}): the data home "
                    "must be writable; nothing was changed"
                ) from e
        for suffix in ("-wal", "-shm", "-journal"):  # they belong to the old file: keep
            # them beside it (the write-ahead log may hold its newest rows)
            companion = Path(str(path) + suffix)
            if companion.exists():
                if aside is not None:
                    companion.replace(Path(str(aside) + suffix))
                else:
                    companion.unlink()
        registry = cls(Store(path), rebuilding=True)
        restore_class_state(registry.store)  # students, cookie key, class settings
        registry._import_run_files()
        registry._restore_active()
        from mnist_demo.class_set import ClassSet  # the drawings share the store

        ClassSet(registry.store).restore_from_files()
        return registry, aside

    # --- submitting and the queue ------------------------------------------------------

    def submit(
        self,
        cfg: TrainConfig,
        *,
        role: Role,
        fine_tune: FineTuneRecord | None = None,
        owner: str = INSTRUCTOR,
        priority: int = 0,
        lesson_cap: bool = True,
        files: dict[str, bytes] | None = None,
    ) -> Run:
        """Queue a new run (the instructor's call); a training worker picks it up. With
        `lesson_cap` (the app) a run longer than LESSON_MAX_EPOCHS needs "long runs".
        `files` are written into the run's folder before any worker can see the run."""
        require(role, Action.START_TRAINING)
        self.check_epochs(cfg, lesson_cap)
        return self._create(cfg, fine_tune, owner=owner, priority=priority, files=files)

    def enqueue(
        self,
        cfg: TrainConfig,
        *,
        owner: str,
        priority: int,
        network: str | None = None,
        budget_s: float | None = None,
        guard: Callable[[Connection], None] | None = None,
    ) -> Run:
        """Queue a run whose caller has checked its own rules (experiments.submit: a
        student's experiment within the class's limits). `guard` runs inside the locked
        transaction that inserts the row, before it: a rule about the other runs (one
        experiment per seat) raises there, and no two submits can both pass it."""
        cfg.validate()
        return self._create(
            cfg,
            None,
            owner=owner,
            priority=priority,
            network=network,
            budget_s=budget_s,
            guard=guard,
        )

    def check_epochs(self, cfg: TrainConfig, lesson_cap: bool = True) -> None:
        cfg.validate()
        if lesson_cap and cfg.epochs > LESSON_MAX_EPOCHS and not self.long_runs_allowed():
            raise InvalidConfigError(
                f"at most {LESSON_MAX_EPOCHS} epochs in a lesson; the instructor can allow "
                "long runs on the Train page"
            )

    def _create(
        self,
        cfg: TrainConfig,
        fine_tune: FineTuneRecord | None,
        *,
        owner: str,
        priority: int,
        files: dict[str, bytes] | None = None,
        network: str | None = None,
        budget_s: float | None = None,
        guard: Callable[[Connection], None] | None = None,
    ) -> Run:
        now = time.time()
        made: list[Path] = []
        try:
            with self.store.write(lock=runs) as con:
                if guard is not None:
                    guard(con)
                # An id is never reused: not one the table had, nor one a run folder has
                # (a replaced database must not let a new run overwrite an old run's files).
                highest = con.execute(sa.select(sa.func.max(runs.c.id))).scalar_one()
                run_id = max(highest or 0, self._highest_folder_id()) + 1
                con.execute(
                    sa.insert(runs).values(
                        id=run_id,
                        created_at=now,
                        queued_at=now,
                        status="queued",
                        config=_encode_config(cfg, fine_tune),
                        owner=owner,
                        priority=priority,
                        phase="queued",
                        network=network,
                        budget_s=budget_s,
                    )
                )
                folder = self.run_dir(run_id)
                try:
                    folder.mkdir(parents=True)  # fails rather than reuse a folder
                except OSError as e:
                    if isinstance(e, FileExistsError):
                        raise
                    # a full or read-only data home: said so, and nothing is saved
                    raise explain_os_error(e, str(folder.parent)) from e
                made.append(folder)
                for name, content in (files or {}).items():
                    atomic_write(folder / name, content)
        except BaseException:
            for folder in made:  # the row was not saved: neither is its folder, so the
                shutil.rmtree(folder, ignore_errors=True)  # next run takes this id
            raise
        run = self.get(run_id)
        self._write_run_file(run)
        return run

    def set_fine_tune(self, run_id: int, record: FineTuneRecord) -> None:
        """A fine-tune's record once its worker has measured the base model."""
        run = self.get(run_id)
        with self.store.write() as con:
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(config=_encode_config(run.config, record))
            )

    def running(self) -> list[Run]:
        with self.store.read() as con:
            rows = con.execute(
                sa.select(runs).where(runs.c.status == "running").order_by(runs.c.id)
            ).fetchall()
        return [row_to_run(r) for r in rows]

    def interrupted_since(self, since: float) -> list[Run]:
        """Runs interrupted at or after `since` (a time.time()), oldest first."""
        with self.store.read() as con:
            rows = con.execute(
                sa.select(runs)
                .where(runs.c.status == "interrupted", runs.c.finished_at >= since)
                .order_by(runs.c.id)
            ).fetchall()
        return [row_to_run(r) for r in rows]

    def _cancel_queued(self, run_id: int) -> Run:
        with self.store.write() as con:
            changed = con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id, runs.c.status == "queued")
                .values(status="cancelled", finished_at=time.time(), phase=None)
            ).rowcount
        run = self.get(run_id)
        if not changed:
            raise StoreError(f"{run.name} is {run.status}, not queued: nothing to cancel")
        self._write_run_file(run)
        return run

    # --- a running run: progress, points, stop ----------------------------------------

    def record_progress(
        self,
        run_id: int,
        *,
        epoch: int,
        batch: int,
        batches_per_epoch: int,
        new_points: list[tuple[int, float, float, float]],
        phase: str | None = None,
        token: int | None = None,
    ) -> bool:
        """A worker's batch of news, in one transaction: its position, the per-batch points
        since the last call (seq, position, loss, accuracy), its phase and heartbeat.
        Returns whether a stop has been requested. Safe to repeat after a write whose
        answer was lost (an outage): points already stored are replaced, not doubled."""
        with self.store.write() as con:
            lease.check(con, token)
            if new_points:
                con.execute(
                    sa.delete(points).where(
                        points.c.run_id == run_id, points.c.seq >= new_points[0][0]
                    )
                )
                con.execute(
                    sa.insert(points),
                    [
                        {"run_id": run_id, "seq": s, "position": p, "loss": lo, "accuracy": a}
                        for s, p, lo, a in new_points
                    ],
                )
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(
                    epoch=epoch,
                    batch=batch,
                    batches_per_epoch=batches_per_epoch,
                    heartbeat=time.time(),
                    **({"phase": phase} if phase else {}),
                )
            )
            stop = con.execute(
                sa.select(runs.c.stop_requested_at).where(runs.c.id == run_id)
            ).scalar_one_or_none()
        return stop is not None

    def points(self, run_id: int, after_seq: int = -1) -> list[tuple[int, float, float, float]]:
        """A run's per-batch points after `after_seq`: (seq, position, loss, accuracy)."""
        with self.store.read() as con:
            rows = con.execute(
                sa.select(points.c.seq, points.c.position, points.c.loss, points.c.accuracy)
                .where(points.c.run_id == run_id, points.c.seq > after_seq)
                .order_by(points.c.seq)
            ).fetchall()
        return [(int(s), float(p), float(lo), float(a)) for s, p, lo, a in rows]

    def request_stop(self, run_id: int, *, role: Role) -> Run:
        """Ask a run to end after its current batch (its last full epoch is kept); a
        queued run is cancelled at once. The instructor's call (a student cancels their
        own experiment through experiments.cancel)."""
        require(role, Action.STOP_TRAINING)
        return self.stop(run_id)

    def stop(self, run_id: int, reason: str | None = None) -> Run:
        """request_stop once the caller has checked who may. `reason`: why, when it is
        not the person's own click (the engine stopping an experiment past its budget);
        kept as the run's error, which its end keeps."""
        run = self.get(run_id)
        if run.status == "queued":
            return self._cancel_queued(run_id)
        if run.status != "running":
            raise StoreError(f"{run.name} is {run.status}, not running: nothing to stop")
        with self.store.write() as con:
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id, runs.c.stop_requested_at.is_(None))
                .values(stop_requested_at=time.time(), **({"error": reason} if reason else {}))
            )
        return self.get(run_id)

    def beat(self, run_id: int, token: int | None = None, phase: str | None = None) -> None:
        """The worker is alive (see training_now), and what it is doing."""
        with self.store.write() as con:
            lease.check(con, token)
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(heartbeat=time.time(), **({"phase": phase} if phase else {}))
            )

    # --- epochs and the end ------------------------------------------------------------

    def run_dir(self, run_id: int) -> Path:
        return self.runs_dir / str(run_id)

    def record_epoch(
        self,
        run_id: int,
        history: dict[str, list[float]],
        model_path: Path,
        token: int | None = None,
    ) -> None:
        """Called after each finished epoch, once its checkpoint is on disk."""
        epochs = len(next(iter(history.values()), []))
        with self.store.write() as con:
            lease.check(con, token)
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(history=json.dumps(history), epochs_done=epochs, model_path=str(model_path))
            )
        self._write_run_file(self.get(run_id))

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        test_loss: float | None = None,
        test_accuracy: float | None = None,
        misclassified: int | None = None,
        test_n: int | None = None,
        error: str | None = None,
        token: int | None = None,
    ) -> Run:
        if status not in ENDED:
            raise ValueError(f"unknown end status {status!r}")
        with self.store.write() as con:
            lease.check(con, token)
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(
                    phase=None,
                    status=status,
                    finished_at=time.time(),
                    test_loss=test_loss,
                    test_accuracy=test_accuracy,
                    misclassified=misclassified,
                    test_n=test_n,
                    # no error of its own: keep the reason a stop gave (runs.stop)
                    **({"error": error} if error is not None else {}),
                )
            )
        run = self.get(run_id)
        self._write_run_file(run)
        return run

    def set_class_score(self, run_id: int, accuracy: float | None, n: int) -> None:
        """A run's accuracy on the class's own drawings (the leaderboard's private
        column), measured by its worker when it ends."""
        with self.store.write() as con:
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(class_accuracy=accuracy, class_n=n)
            )

    def resume_path(self, run_id: int) -> Path:
        """Where a run keeps its resume checkpoint (the compiled training model with its
        optimizer state) while it can still be resumed."""
        return self.run_dir(run_id) / RESUME_FILE

    def requeue_for_resume(self, run_id: int) -> Run:
        """A stopped or interrupted run goes back in the queue, to continue from its last
        finished epoch as the same run: its end, scores and error cleared; its history
        and epochs stay; its points past the last finished epoch are dropped."""
        run = self.get(run_id)
        with self.store.write() as con:
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status="queued",
                    phase="queued",
                    queued_at=time.time(),
                    resume=1,
                    finished_at=None,
                    test_loss=None,
                    test_accuracy=None,
                    misclassified=None,
                    test_n=None,
                    error=None,
                    stop_requested_at=None,
                )
            )
            con.execute(
                sa.delete(points).where(
                    points.c.run_id == run_id, points.c.position > run.epochs_done + 1e-9
                )
            )
        run = self.get(run_id)
        self._write_run_file(run)
        return run

    def resume(self, run_id: int, *, role: Role, lesson_cap: bool = True) -> Run:
        """Queue a stopped or interrupted run to continue from its last finished epoch:
        the same run (id, history, per-epoch records) with its weights, optimizer state
        and learning-rate schedule position restored by the worker. Refused
        (CannotResumeError) when `check_resume` says why."""
        require(role, Action.START_TRAINING)
        self.mark_interrupted()  # a run left "running" by a dead worker is interrupted
        run = self.get(run_id)
        check_resume(run, self)
        self.check_epochs(run.config, lesson_cap)
        return self.requeue_for_resume(run_id)

    def get(self, run_id: int) -> Run:
        with self.store.read() as con:
            row = con.execute(sa.select(runs).where(runs.c.id == int(run_id))).first()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        return row_to_run(row)

    def latest(self) -> Run | None:
        """The newest run, if any (one row, not the whole history)."""
        with self.store.read() as con:
            row = con.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(1)).first()
        return row_to_run(row) if row is not None else None

    def list_runs(self) -> list[Run]:
        with self.store.read() as con:
            rows = con.execute(sa.select(runs).order_by(runs.c.id.desc())).fetchall()
        return [row_to_run(r) for r in rows]

    def delete(self, run_id: int, *, role: Role) -> None:
        """Remove the row, its points and the run's folder; a deleted active run falls
        back to the default model."""
        require(role, Action.DELETE_RUNS)
        run = self.get(run_id)
        if run.status in ("running", "queued") and (run.status == "queued" or training_now(run)):
            raise StoreError(f"{run.name} is still {run.status}; stop it first")
        with self.store.write() as con:
            con.execute(sa.delete(points).where(points.c.run_id == run_id))
            con.execute(sa.delete(runs).where(runs.c.id == run_id))
            if self.active_run_id() == run_id:
                self.store.set_setting(ACTIVE_RUN, None, con)
        if self.active_run_id() is None:
            self._write_active_file(None)
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def model_path(self, run_id: int) -> Path:
        run = self.get(run_id)
        if not run.model_path:
            raise ModelFileError(f"{run.name} finished no epoch, so it has no model")
        path = Path(run.model_path)
        if not path.exists():
            raise ModelFileError(
                f"the model file of {run.name} is missing ({path}); delete the run or train again"
            )
        return path

    def mark_interrupted(self, held: frozenset[int] | set[int] | None = None) -> list[int]:
        """Runs left 'running' by a worker that no longer exists were interrupted. Their
        last finished epoch's model stays usable. `held` (the engine's call): runs a live
        trainer says it still holds, never interrupted for a silent heartbeat, which an
        outage of the store explains. Any other caller (a page, the CLI) decides only
        while no engine holds the store's lease: otherwise the engine, which can ask its
        trainers, does."""
        if held is None:
            current = lease.read(self.store)
            if current is not None and current.live():
                return []
            held = frozenset()
        dead = [r.id for r in self.running() if r.id not in held and not training_now(r)]
        for run_id in dead:
            self.interrupt(run_id, "the process training this run ended unexpectedly")
        return dead

    def interrupt(self, run_id: int, reason: str) -> Run:
        """A running run whose training ended for the engine's reasons, not its own (its
        worker died, Ray went down, its engine was replaced): resumable from its last
        finished epoch."""
        with self.store.write() as con:
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id, runs.c.status == "running")
                .values(status="interrupted", phase=None, finished_at=time.time(), error=reason)
            )
        run = self.get(run_id)
        self._write_run_file(run)
        return run

    def resume_after_failure(self, run_id: int) -> Run:
        """The engine puts an interrupted run back in the queue by itself (counted, so a
        run that keeps killing its worker is not retried for ever)."""
        with self.store.write() as con:
            con.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(auto_resumes=runs.c.auto_resumes + 1)
            )
        return self.requeue_for_resume(run_id)

    # --- server-wide settings: the active model, long runs ------------------------------

    def set_active(self, run_id: int | None, *, role: Role) -> None:
        """The model new sessions start on (None: the shipped one); the instructor's call."""
        require(role, Action.SET_ACTIVE_MODEL)
        if run_id is not None:
            self.model_path(run_id)  # refuse a run without a usable model
            run = self.get(run_id)
            if not usable(run):
                raise StoreError(
                    f"{run.name} is still training: make it the active model once it has "
                    "finished (or stop it)"
                )
        self.store.set_setting(ACTIVE_RUN, None if run_id is None else str(run_id))
        self._write_active_file(run_id)

    def active_run_id(self) -> int | None:
        value = self.store.setting(ACTIVE_RUN)
        return int(value) if value is not None else None

    def allow_long_runs(self, allowed: bool, *, role: Role) -> None:
        """Lift (or restore) the epoch cap that keeps a run inside a lesson."""
        require(role, Action.ALLOW_LONG_RUNS)
        self.store.set_setting(LONG_RUNS, "1" if allowed else None)

    def long_runs_allowed(self) -> bool:
        return self.store.setting(LONG_RUNS) == "1"

    # --- run.json mirror ---------------------------------------------------------------

    def _write_run_file(self, run: Run) -> None:
        atomic_write(self.run_dir(run.id) / "run.json", json.dumps(run.to_dict(), indent=1))

    def _write_active_file(self, run_id: int | None) -> None:
        """The active model, mirrored beside the runs (like run.json) for recovery."""
        atomic_write(self.runs_dir / ACTIVE_FILE, json.dumps({"active_run": run_id}))

    def _restore_active(self) -> None:
        try:
            run_id = json.loads((self.runs_dir / ACTIVE_FILE).read_text())["active_run"]
            if run_id is not None:
                self.model_path(int(run_id))  # only a run that still has its model
                self.store.set_setting(ACTIVE_RUN, str(int(run_id)))
        except (OSError, ValueError, KeyError, TypeError, StoreError, ModelFileError):
            pass  # no sidecar, or its run is gone: the shipped model stays the default

    def _import_run_files(self) -> None:
        names = set(runs.c.keys())
        for run_file in self._run_files():
            try:
                data = json.loads(run_file.read_text())
                cfg = dict(data["config"])
                record = data.get("fine_tune") or cfg.pop("fine_tune", None)
                cfg.pop("fine_tune", None)
                run = Run(
                    **{
                        **{k: v for k, v in data.items() if k in names and k != "config"},
                        "config": TrainConfig.from_dict(cfg),
                        "fine_tune": FineTuneRecord.from_dict(record) if record else None,
                    }
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue  # an unreadable run file is skipped, the others still count
            if run.status in ("running", "queued"):
                run.status, run.error = "interrupted", "the database was rebuilt meanwhile"
            with self.store.write() as con:
                con.execute(sa.delete(runs).where(runs.c.id == run.id))
                con.execute(sa.insert(runs).values(**_run_values(run)))


LESSON_MAX_EPOCHS = 30  # without "long runs": a run that ends within a lesson


def check_resume(run: Run, registry: RunRegistry) -> None:
    """Every reason a run cannot be resumed (CannotResumeError)."""
    if run.status in ("running", "queued"):
        raise CannotResumeError(f"{run.name} is still {run.status}")
    if run.status == "finished":
        raise CannotResumeError(f"{run.name} has finished: there is nothing to resume")
    if run.status not in ("stopped", "interrupted"):
        raise CannotResumeError(
            f"{run.name} {run.status}: only a stopped or interrupted run can be resumed"
        )
    if run.fine_tune is not None:
        raise CannotResumeError(
            f"{run.name} is a fine-tune run, which cannot be resumed; start a new fine-tune"
        )
    if run.epochs_done < 1:
        raise CannotResumeError(
            f"{run.name} finished no epoch, so there is nothing to resume from; start a new run"
        )
    if run.epochs_done >= run.config.epochs:
        raise CannotResumeError(f"{run.name} has all its {run.epochs_done} epochs already")
    if not registry.resume_path(run.id).exists():
        raise CannotResumeError(
            f"{run.name} has no resume checkpoint (it was trained before runs could be "
            "resumed, or its checkpoint was removed); start a new run"
        )
    if not zipfile.is_zipfile(registry.resume_path(run.id)):  # refused here, not by a worker
        raise CannotResumeError(
            f"the resume checkpoint of {run.name} is unreadable (damaged); start a new run"
        )


def resumable(run: Run, registry: RunRegistry) -> bool:
    """Could `RunRegistry.resume` continue this run (role and lesson cap aside)?"""
    try:
        check_resume(run, registry)
    except DigitLabError:
        return False
    return True
