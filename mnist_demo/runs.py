"""The run registry: every training run is a row in SQLite, its model a file beside it.

Each run also keeps a `run.json` in its folder, rewritten at every epoch. It costs
nothing and means a corrupt database can be rebuilt without losing a single run.
"""

from __future__ import annotations

import calendar
import functools
import json
import os
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mnist_demo import config
from mnist_demo.classroom import Action, Role, require
from mnist_demo.errors import DigitLabError, ModelFileError

STATUSES = ("running", "finished", "stopped", "failed", "interrupted")
ACTIVE_RUN = "active_run"  # settings keys
LONG_RUNS = "long_runs"
ACTIVE_FILE = "active.json"  # in the runs folder: which run is active, for recovery
RESUME_FILE = "resume.keras"  # in a run folder: the training model with its optimizer state

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    history TEXT NOT NULL DEFAULT '{}',
    epochs_done INTEGER NOT NULL DEFAULT 0,
    test_loss REAL,
    test_accuracy REAL,
    misclassified INTEGER,
    test_n INTEGER,
    model_path TEXT,
    error TEXT,
    pid INTEGER,
    heartbeat REAL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT);
"""
_COLUMNS = [
    "id",
    "created_at",
    "finished_at",
    "status",
    "config",
    "history",
    "epochs_done",
    "test_loss",
    "test_accuracy",
    "misclassified",
    "test_n",
    "model_path",
    "error",
    "pid",
    "heartbeat",
]


class RegistryError(DigitLabError):
    """Base class for run registry problems."""


class RegistryCorruptError(RegistryError):
    """The database file is not a readable SQLite registry."""


class RunNotFoundError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class Run:
    id: int
    created_at: float
    status: str
    config: dict
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
    heartbeat: float | None = None  # time.time() of the training thread's last sign of life

    @property
    def name(self) -> str:
        return f"run {self.id} ({self.config.get('preset', '?')})"

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.created_at

    @property
    def has_model(self) -> bool:
        if not self.model_path:
            return False
        return Path(self.model_path).exists()


HEARTBEAT_EVERY_S = 5.0  # how often a training job says it is alive
HEARTBEAT_STALE_S = 30.0  # a "running" run silent this long was interrupted


def training_now(run: Run, now: float | None = None) -> bool:
    """Is this run really being trained right now? Proven by the heartbeat its training
    thread writes every few seconds: a live process id alone proves nothing (after a
    reboot or a container restart another process may hold it, and the run stayed
    "running" forever). A dead process id does prove the end at once, so a server
    restarted seconds after a crash sees the run interrupted without waiting out the
    heartbeat. (Process ids are this machine's: servers on several machines sharing the
    registry would have to record the host too.)"""
    if run.status != "running":
        return False
    if run.pid is not None and not _pid_alive(run.pid):
        return False
    now = time.time() if now is None else now
    last = run.heartbeat if run.heartbeat is not None else run.created_at
    return now - last < HEARTBEAT_STALE_S


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class RunRegistry:
    """Runs in an SQLite file. Connections are opened per call, so any thread may use
    one registry object (the training thread writes while pages read)."""

    def __init__(self, path: Path | None = None, *, rebuilding: bool = False):
        self.path = Path(path) if path else config.registry_path()
        self.runs_dir = self.path.parent / "runs"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RegistryError(
                f"cannot use {self.path.parent} as the data home ({e}); "
                "set MNIST_DEMO_HOME to a folder you can write to"
            ) from e
        try:
            with closing(self._connect()) as con, con:
                con.executescript(_SCHEMA)
                columns = {row[1] for row in con.execute("PRAGMA table_info(runs)")}
                if "heartbeat" not in columns:  # a registry from before heartbeats
                    con.execute("ALTER TABLE runs ADD COLUMN heartbeat REAL")
                known = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise RegistryCorruptError(
                f"the run registry {self.path} is not a readable database ({e}). "
                "Start the app or run `python -m mnist_demo runs --recover`: either moves it "
                "aside and rebuilds the registry from the run folders, losing no run."
            ) from e
        if known == 0 and not rebuilding and self._run_files():
            # An emptied or replaced database beside existing runs: opening it as it is
            # would forget them, and new runs would take their ids (and folders).
            raise RegistryCorruptError(
                f"the run registry {self.path} holds no runs, but {len(self._run_files())} "
                f"run folders exist in {self.runs_dir}. Start the app or run "
                "`python -m mnist_demo runs --recover` to rebuild it from them, losing no run."
            )

    def _run_files(self) -> list[Path]:
        return sorted(self.runs_dir.glob("*/run.json"))

    def _highest_folder_id(self) -> int:
        ids = [int(p.name) for p in self.runs_dir.glob("*") if p.name.isdigit()]
        return max(ids, default=0)

    @classmethod
    def recover(cls, path: Path | None = None) -> tuple[RunRegistry, Path | None]:
        """Move an unreadable database aside (kept, never deleted), start a fresh one and
        re-import every run from its run.json, the active model from its sidecar file,
        and whatever class drawings the old file still gives up. Works with a missing,
        empty or corrupt file. Returns the registry and the moved file (None if there
        was nothing to move)."""
        path = Path(path) if path else config.registry_path()
        aside = None
        if path.exists():
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            path.replace(aside)
        for suffix in ("-wal", "-shm", "-journal"):  # they belong to the old file: keep
            # them beside it (the write-ahead log may hold its newest rows)
            companion = Path(str(path) + suffix)
            if companion.exists():
                if aside is not None:
                    companion.replace(Path(str(aside) + suffix))
                else:
                    companion.unlink()
        registry = cls(path, rebuilding=True)
        registry._import_run_files()
        registry._restore_active()
        if aside is not None:
            from mnist_demo.class_set import ClassSet  # the drawings share this file

            ClassSet(path).salvage_from(aside)
        return registry, aside

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=10)
        con.row_factory = sqlite3.Row
        return con

    def _execute(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        try:
            with closing(self._connect()) as con, con:
                return con.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:
            raise RegistryCorruptError(f"the run registry {self.path} failed: {e}") from e

    # --- runs ------------------------------------------------------------------------

    def create_run(self, run_config: dict) -> Run:
        now = time.time()
        with closing(self._connect()) as con, con:
            con.execute("BEGIN IMMEDIATE")  # two processes never take the same id
            # An id is never reused: not one the table had, nor one a run folder has (a
            # replaced database must not let a new run overwrite an old run's files).
            row = con.execute("SELECT max(id) FROM runs").fetchone()
            run_id = max(row[0] or 0, self._highest_folder_id()) + 1
            con.execute(
                "INSERT INTO runs (id, created_at, status, config, pid, heartbeat) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, now, "running", json.dumps(run_config), os.getpid(), now),
            )
            self.run_dir(run_id).mkdir(parents=True)  # fails rather than reuse a folder
        run = self.get(run_id)
        self._write_run_file(run)
        return run

    def run_dir(self, run_id: int) -> Path:
        return self.runs_dir / str(run_id)

    def record_epoch(self, run_id: int, history: dict[str, list[float]], model_path: Path) -> None:
        """Called after each finished epoch, once its checkpoint is on disk."""
        epochs = len(next(iter(history.values()), []))
        self._execute(
            "UPDATE runs SET history = ?, epochs_done = ?, model_path = ? WHERE id = ?",
            (json.dumps(history), epochs, str(model_path), run_id),
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
    ) -> Run:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self._execute(
            "UPDATE runs SET status = ?, finished_at = ?, test_loss = ?, test_accuracy = ?,"
            " misclassified = ?, test_n = ?, error = ? WHERE id = ?",
            (status, time.time(), test_loss, test_accuracy, misclassified, test_n, error, run_id),
        )
        run = self.get(run_id)
        self._write_run_file(run)
        return run

    def resume_path(self, run_id: int) -> Path:
        """Where a run keeps its resume checkpoint (the compiled training model with its
        optimizer state) while it can still be resumed."""
        return self.run_dir(run_id) / RESUME_FILE

    def reopen_run(self, run_id: int) -> Run:
        """A stopped or interrupted run is being resumed: running again in this process,
        its end, scores and error cleared; its history and epochs stay."""
        now = time.time()
        self._execute(
            "UPDATE runs SET status = 'running', finished_at = NULL, test_loss = NULL,"
            " test_accuracy = NULL, misclassified = NULL, test_n = NULL, error = NULL,"
            " pid = ?, heartbeat = ? WHERE id = ?",
            (os.getpid(), now, run_id),
        )
        run = self.get(run_id)
        self._write_run_file(run)
        return run

    def get(self, run_id: int) -> Run:
        rows = self._execute("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if not rows:
            raise RunNotFoundError(f"no run with id {run_id}")
        return _row_to_run(rows[0])

    def list_runs(self) -> list[Run]:
        return [_row_to_run(r) for r in self._execute("SELECT * FROM runs ORDER BY id DESC")]

    def delete(self, run_id: int, *, role: Role) -> None:
        """Remove the row and the run's folder; a deleted active run falls back to default."""
        require(role, Action.DELETE_RUNS)
        run = self.get(run_id)
        if training_now(run):
            raise RegistryError(f"{run.name} is still training; stop it first")
        self._execute("DELETE FROM runs WHERE id = ?", (run_id,))
        if self.active_run_id() == run_id:
            self._set_setting(ACTIVE_RUN, None)
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

    def beat(self, run_id: int) -> None:
        """The training thread is alive (see training_now)."""
        self._execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (time.time(), run_id))

    def mark_interrupted(self) -> list[int]:
        """Runs left 'running' by a process that no longer exists were interrupted (the
        server died mid-run). Their last finished epoch's model stays usable."""
        rows = self._execute("SELECT * FROM runs WHERE status = 'running'")
        dead = [r["id"] for r in rows if not training_now(_row_to_run(r))]
        for run_id in dead:
            self.finish_run(
                run_id, "interrupted", error="the process training this run ended unexpectedly"
            )
        return dead

    # --- server-wide settings: the active model, long runs ------------------------------

    def _setting(self, key: str) -> str | None:
        rows = self._execute("SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def _set_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self._execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            self._execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value)
            )

    def set_active(self, run_id: int | None, *, role: Role) -> None:
        """The model new sessions start on (None: the shipped one); the instructor's call."""
        require(role, Action.SET_ACTIVE_MODEL)
        if run_id is not None:
            self.model_path(run_id)  # refuse a run without a usable model
            run = self.get(run_id)
            if not usable(run):
                raise RegistryError(
                    f"{run.name} is still training: make it the active model once it has "
                    "finished (or stop it)"
                )
        self._set_setting(ACTIVE_RUN, None if run_id is None else str(run_id))
        self._write_active_file(run_id)

    def active_run_id(self) -> int | None:
        value = self._setting(ACTIVE_RUN)
        return int(value) if value is not None else None

    def allow_long_runs(self, allowed: bool, *, role: Role) -> None:
        """Lift (or restore) the epoch cap that keeps a run inside a lesson."""
        require(role, Action.ALLOW_LONG_RUNS)
        self._set_setting(LONG_RUNS, "1" if allowed else None)

    def long_runs_allowed(self) -> bool:
        return self._setting(LONG_RUNS) == "1"

    # --- run.json mirror ---------------------------------------------------------------

    def _write_run_file(self, run: Run) -> None:
        folder = self.run_dir(run.id)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "run.json.tmp"
        tmp.write_text(json.dumps(asdict(run), indent=1))
        tmp.replace(folder / "run.json")

    def _write_active_file(self, run_id: int | None) -> None:
        """The active model, mirrored beside the runs (like run.json) for recovery."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.runs_dir / f"{ACTIVE_FILE}.tmp"
        tmp.write_text(json.dumps({"active_run": run_id}))
        tmp.replace(self.runs_dir / ACTIVE_FILE)

    def _restore_active(self) -> None:
        try:
            run_id = json.loads((self.runs_dir / ACTIVE_FILE).read_text())["active_run"]
            if run_id is not None:
                self.model_path(int(run_id))  # only a run that still has its model
                self._set_setting(ACTIVE_RUN, str(int(run_id)))
        except (OSError, ValueError, KeyError, TypeError, RegistryError, ModelFileError):
            pass  # no sidecar, or its run is gone: the shipped model stays the default

    def _import_run_files(self) -> None:
        for run_file in self._run_files():
            try:
                data = json.loads(run_file.read_text())
                values = tuple(
                    json.dumps(data[c]) if c in ("config", "history") else data.get(c)
                    for c in _COLUMNS
                )
            except (OSError, ValueError, KeyError):
                continue  # an unreadable run file is skipped, the others still count
            self._execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                values,
            )


def _row_to_run(row: sqlite3.Row) -> Run:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    d["history"] = json.loads(d["history"] or "{}")
    return Run(**d)


# --- models a page can use ------------------------------------------------------------

SHIPPED_KEY = "shipped"  # Lab 7, the lab pages' default
ROBUST_KEY = "robust"  # the augmented model, the Draw page's default

# key -> (display name, model file); each file has its .json beside it
SHIPPED = {
    SHIPPED_KEY: ("Lab 7 (shipped)", config.DEFAULT_MODEL_PATH),
    ROBUST_KEY: ("Robust (shipped)", config.ROBUST_MODEL_PATH),
}


@dataclass(frozen=True)
class ModelRef:
    """A model a page can show: a shipped one or a run's model file."""

    key: str  # a SHIPPED key or the run id as text
    name: str
    path: Path
    test_accuracy: float | None
    misclassified: int | None
    trained_at: float | None

    @property
    def label(self) -> str:
        acc = f"{self.test_accuracy:.2%}" if self.test_accuracy is not None else "not scored"
        return f"{self.name} · {acc}"


def shipped_info(info_path: Path) -> dict:
    """A shipped model's .json, read once per file version (the sidebar asks on every
    rerun of every page)."""
    if not info_path.exists():
        return {}
    return _read_json(info_path, info_path.stat().st_mtime)


@functools.lru_cache(maxsize=8)
def _read_json(path: Path, mtime: float) -> dict:
    return json.loads(path.read_text())


def shipped_models() -> list[ModelRef]:
    """The models trained by the project's CLI and shipped with the package (those whose
    files are present), with the metrics recorded in their .json."""
    refs = []
    for key, (name, path) in SHIPPED.items():
        if not path.exists():
            continue
        info = shipped_info(path.with_suffix(".json"))
        trained = info.get("trained_at")
        refs.append(
            ModelRef(
                key=key,
                name=name,
                path=path,
                test_accuracy=info.get("test_accuracy"),
                misclassified=info.get("misclassified"),
                trained_at=calendar.timegm(time.strptime(trained, "%Y-%m-%dT%H:%M:%SZ"))
                if trained
                else None,
            )
        )
    return refs


def run_model(run: Run) -> ModelRef:
    return ModelRef(
        key=str(run.id),
        name=f"Run {run.id} · {run.config.get('preset', '?')}"
        + ("" if run.status == "finished" else f" ({run.status})"),
        path=Path(run.model_path or ""),
        test_accuracy=run.test_accuracy,
        misclassified=run.misclassified,
        trained_at=run.finished_at,
    )


def usable(run: Run) -> bool:
    """The one rule for offering a run's model (the sidebar, Draw, "make active", the
    default): its run is not training any more and its model file is there."""
    return run.status != "running" and run.has_model


def available_models(registry: RunRegistry) -> list[ModelRef]:
    """The shipped models first, then every usable run's model, newest first: the only
    list pages choose from."""
    return shipped_models() + [run_model(run) for run in registry.list_runs() if usable(run)]


def default_model(registry: RunRegistry, for_drawings: bool = False) -> ModelRef:
    """The model a new browser session (or the CLI, with no --model or --run) starts on,
    always one of `available_models`.

    For drawings, the shipped robust model (it reads drawings best). For the lab pages
    and the CLI, the registry's active run when it is usable, else shipped Lab 7.
    """
    models = {ref.key: ref for ref in available_models(registry)}
    if for_drawings and ROBUST_KEY in models:
        return models[ROBUST_KEY]
    active = registry.active_run_id()
    if active is not None and str(active) in models:
        return models[str(active)]
    return models[SHIPPED_KEY]
