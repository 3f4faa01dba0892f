"""The store: a registry made by the schema of Digit Lab before versioned migrations is
migrated in place keeping every run, the active model and every class drawing; a newer
schema is refused with nothing changed; settings; the atomic file write; a bad URL.

Settings and transactions run on SQLite and PostgreSQL (`store_url`); the migrations of
SQLite files made before the store are SQLite-only by nature. PostgreSQL's own faults
(refused password, server down, a newer schema there) are in test_store_pg.py."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_demo import queue
from mnist_demo import store as store_module
from mnist_demo.class_set import FILES_KEY, ClassSet
from mnist_demo.recipe import Accuracies, TrainConfig
from mnist_demo.runs import RunRegistry
from mnist_demo.store import Store, StoreError, StoreVersionError, StoreWriteError, atomic_write
from tests.postgres_fixture import sqlite_only

pytest_plugins = ["tests.conftest_pg"]  # `store_url`: each test on SQLite and PostgreSQL

# The schema of runs.py and class_set.py before the store (commit cff4de2), verbatim.
OLD_RUNS_SCHEMA = """
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
OLD_CLASS_SCHEMA = """
CREATE TABLE IF NOT EXISTS class_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    archived_at REAL
);
CREATE TABLE IF NOT EXISTS drawings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    set_id INTEGER NOT NULL REFERENCES class_sets(id),
    created_at REAL NOT NULL,
    session TEXT NOT NULL,
    label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
    predicted INTEGER,
    confidence REAL,
    model TEXT,
    digest TEXT NOT NULL,
    image BLOB NOT NULL,
    canvas_png BLOB,
    hidden INTEGER NOT NULL DEFAULT 0,
    UNIQUE (set_id, digest)
);
CREATE INDEX IF NOT EXISTS drawings_by_session ON drawings (set_id, session, created_at);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT);
"""

LAB7 = {
    "preset": "lab7",
    "epochs": 12,
    "batch_size": 128,
    "learning_rate": 0.001,
    "train_size": 60000,
    "test_size": 10000,
    "seed": 7,
}
QUICK = {**LAB7, "preset": "quick", "epochs": 1, "learning_rate": 0.01, "seed": 3}
# finetune.py's record() before the store: the config plus a "fine_tune" entry.
FINE_TUNE = {
    "base": "Lab 7 (shipped)",
    "base_path": "/somewhere/default_model.keras",
    "class_set": 1,
    "version": 14,
    "train_drawings": 40,
    "held_out_drawings": 10,
    "train_students": 8,
    "held_out_students": 2,
    "class_share": 0.25,
    "augmentation": "DrawingAugmentation",
    "schedule": "cosine decay to 0",
    "before": {"class_held_out": 0.62, "mnist": 0.9931},
}
HISTORY = {"loss": [0.3, 0.1], "accuracy": [0.9, 0.97]}


def old_image(seed: int) -> np.ndarray:
    image = np.zeros((28, 28), np.uint8)
    image[5:23, 9:19] = np.random.default_rng(seed).integers(1, 256, (18, 10), dtype=np.uint8)
    return image


def old_registry(home: Path, *, heartbeat: bool = True) -> dict:
    """A data home as today's main leaves it: runs.sqlite made by the old schemas, with
    runs (one a fine-tune), the active run, two class sets and their drawings, and the
    run folders with their model files. Returns what it put in."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "runs.sqlite"
    runs_schema = (
        OLD_RUNS_SCHEMA if heartbeat else OLD_RUNS_SCHEMA.replace(",\n    heartbeat REAL", "")
    )
    runs = [
        (1, 100.0, 200.0, "finished", LAB7, 0.031, 0.991, 90, 10000),
        (2, 300.0, 310.0, "stopped", QUICK, None, None, None, None),
        (3, 400.0, 500.0, "finished", {**LAB7, "epochs": 2, "fine_tune": FINE_TUNE}, 0.04, 0.99,
         100, 10000),
    ]  # fmt: skip
    with sqlite3.connect(path) as con:
        con.executescript(runs_schema)
        con.executescript(OLD_CLASS_SCHEMA)
        for run_id, created, finished, status, config, loss, acc, wrong, n in runs:
            folder = home / "runs" / str(run_id)
            folder.mkdir(parents=True)
            model = folder / "model.keras"
            model.write_bytes(f"weights of run {run_id}".encode())
            con.execute(
                "INSERT INTO runs (id, created_at, finished_at, status, config, history, "
                "epochs_done, test_loss, test_accuracy, misclassified, test_n, model_path, "
                "error, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, created, finished, status, json.dumps(config), json.dumps(HISTORY),
                 2, loss, acc, wrong, n, str(model), None, 4242),
            )  # fmt: skip
        con.execute("INSERT INTO settings VALUES ('active_run', '1')")
        con.execute("INSERT INTO class_sets (created_at, archived_at) VALUES (10.0, 20.0)")
        con.execute("INSERT INTO class_sets (created_at) VALUES (30.0)")
        drawings = []
        for i, (set_id, hidden, png) in enumerate(
            [(1, 0, b"\x89PNG one"), (1, 1, None), (2, 0, b"\x89PNG three"), (2, 0, None)]
        ):
            image = old_image(i)
            digest = hashlib.sha256(image.tobytes()).hexdigest()
            row = (set_id, 40.0 + i, f"session-{i}", i, (i + 1) % 10, 0.5 + i / 10, "Robust",
                   digest, image.tobytes(), png, hidden)  # fmt: skip
            cur = con.execute(
                "INSERT INTO drawings (set_id, created_at, session, label, predicted, "
                "confidence, model, digest, image, canvas_png, hidden) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
            drawings.append((cur.lastrowid, *row))
        con.execute("INSERT INTO settings VALUES ('class_set_version', '9')")
    con.close()
    return {"path": path, "runs": runs, "drawings": drawings}


def check_drawings(classes: ClassSet, drawings: list[tuple]) -> None:
    seen = {}
    for set_id in (1, 2):
        for d in classes.newest(set_id=set_id, include_hidden=True):
            seen[d.id] = d
    assert sorted(seen) == [row[0] for row in drawings]
    for row in drawings:
        drawing_id, set_id, created, session, label, predicted, conf, model = row[:8]
        image, png, hidden = row[9:]
        d = seen[drawing_id]
        assert (d.set_id, d.created_at, d.session, d.label, d.predicted, d.model) == (
            set_id, created, session, label, predicted, model,
        )  # fmt: skip
        assert d.confidence == conf and d.canvas_png == png and d.hidden == bool(hidden)
        assert d.image.tobytes() == image


@sqlite_only("a registry file made by the SQLite schema before migrations")
def test_a_registry_of_todays_main_is_migrated_in_place_losing_nothing(tmp_path):
    made = old_registry(tmp_path / "home")
    store = Store(made["path"])
    assert store.revision() == store.head()
    registry = RunRegistry(store)
    runs = {r.id: r for r in registry.list_runs()}
    assert sorted(runs) == [1, 2, 3]
    for run_id, created, finished, status, config, loss, acc, wrong, n in made["runs"]:
        run = runs[run_id]
        plain = {k: v for k, v in config.items() if k != "fine_tune"}
        assert run.config == TrainConfig(**plain)
        assert run.config.to_dict() == {**plain, "network": None, "optimizer": "adam"}
        assert (run.created_at, run.finished_at, run.status) == (created, finished, status)
        assert (run.test_loss, run.test_accuracy, run.misclassified, run.test_n) == (
            loss, acc, wrong, n,
        )  # fmt: skip
        assert run.history == HISTORY and run.epochs_done == 2 and run.has_model
        assert run.owner == "instructor" and run.resume is False  # the new columns' defaults
    fine_tune = runs[3].fine_tune
    assert runs[1].fine_tune is None and runs[2].fine_tune is None
    assert fine_tune is not None and fine_tune.to_dict() == {**FINE_TUNE, "snapshot_file": ""}
    assert fine_tune.before == Accuracies(class_held_out=0.62, mnist=0.9931)
    assert registry.active_run_id() == 1
    assert registry.model_path(1) == made["path"].parent / "runs" / "1" / "model.keras"
    classes = ClassSet(store)
    check_drawings(classes, made["drawings"])
    assert classes.current_set() == 2 and classes.version() == 9
    assert [s["archived_at"] for s in classes.sets()] == [None, 20.0]
    # Its drawings were written as files once, on first open, and marked so.
    assert store.setting(FILES_KEY) == "1"
    for drawing_id, set_id, *_ in made["drawings"]:
        assert (classes.files_dir / str(set_id) / f"{drawing_id}.json").exists()
    assert json.loads((classes.files_dir / "1" / "set.json").read_text())["archived_at"] == 20.0


@sqlite_only("a registry file made by the SQLite schema before migrations")
def test_a_migrated_registry_keeps_working_and_reopens_as_it_is(tmp_path):
    made = old_registry(tmp_path / "home")
    store = Store(made["path"])
    registry = RunRegistry(store)
    new = registry.submit(TrainConfig.for_preset("quick"), role=registry_role())
    assert new.id == 4 and new.status == "queued"
    store.dispose()
    again = Store(made["path"])  # at head: nothing to migrate
    assert [r.id for r in RunRegistry(again).list_runs()] == [4, 3, 2, 1]
    check_drawings(ClassSet(again), made["drawings"])


def registry_role():
    from mnist_demo.classroom import Role

    return Role.INSTRUCTOR


@sqlite_only("a registry file made by the SQLite schema before migrations")
def test_a_registry_from_before_heartbeats_is_migrated(tmp_path):
    made = old_registry(tmp_path / "home", heartbeat=False)
    registry = RunRegistry(Store(made["path"]))
    assert [r.heartbeat for r in registry.list_runs()] == [None, None, None]
    assert len(registry.list_runs()) == 3
    claimed = registry.submit(TrainConfig(epochs=1), role=registry_role())
    assert queue.claim_next(registry, "worker-1").id == claimed.id
    assert registry.get(claimed.id).heartbeat is not None


@sqlite_only("the file's bytes are checked (PostgreSQL: test_store_pg.py)")
def test_a_newer_schema_is_refused_and_the_file_left_unchanged(tmp_path):
    made = old_registry(tmp_path / "home")
    Store(made["path"]).dispose()  # migrated to head
    with sqlite3.connect(made["path"]) as con:
        con.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    con.close()
    before = made["path"].read_bytes()
    mtime = made["path"].stat().st_mtime_ns
    with pytest.raises(StoreVersionError, match=r"newer version of Digit Lab.*Nothing was changed"):
        Store(made["path"])
    assert made["path"].read_bytes() == before and made["path"].stat().st_mtime_ns == mtime


def test_settings_are_kept_replaced_and_removed(store_url):
    store = Store(store_url)
    assert store.setting("colour") is None
    store.set_setting("colour", "blue")
    store.set_setting("colour", "green")
    with store.write() as con:
        store.set_setting("size", "3", con)
    assert Store(store_url).setting("colour") == "green"
    assert store.setting("size") == "3"
    store.set_setting("colour", None)
    assert store.setting("colour") is None and store.setting("size") == "3"


def test_a_failed_write_transaction_saves_nothing(store_url):
    store = Store(store_url)
    with pytest.raises(RuntimeError), store.write() as con:
        store.set_setting("half", "done", con)
        raise RuntimeError("something went wrong halfway")
    assert store.setting("half") is None


def test_a_writer_held_up_by_another_s_lock_gives_up_after_its_lock_wait(store_url):
    """The engine's store waits STORE_LOCK_WAIT_S, not the default, for a lock another
    process holds (a trainer frozen mid-write): it fails with a StoreError and tries
    again next round; the holder's write is untouched and the store works afterwards."""
    holder, engine = Store(store_url), Store(store_url, lock_wait_s=1.0)
    settings = store_module.settings
    with holder.write(lock=settings) as con:
        holder.set_setting("held", "yes", con)
        started = time.monotonic()
        with pytest.raises(StoreError, match="is busy"), engine.write(lock=settings) as other:
            engine.set_setting("engine", "beat", other)
        waited = time.monotonic() - started
    assert 0.8 < waited < 10, waited
    engine.set_setting("engine", "beat")
    assert engine.setting("held") == "yes" and holder.setting("engine") == "beat"


def test_atomic_write_leaves_the_old_content_and_no_temporary_file_on_failure(
    tmp_path, monkeypatch
):
    target = tmp_path / "folder" / "record.json"
    atomic_write(target, '{"v": 1}')
    atomic_write(target, b'{"v": 2}')
    assert target.read_text() == '{"v": 2}'
    real_replace = Path.replace

    def fail_after_writing(self, other):  # the temporary file is written, the rename fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", fail_after_writing)
    with pytest.raises(StoreWriteError, match=r"is full.*nothing was saved"):
        atomic_write(target, '{"v": 3}')
    monkeypatch.setattr(Path, "replace", real_replace)
    assert target.read_text() == '{"v": 2}'
    assert os.listdir(target.parent) == ["record.json"]


def test_a_full_disk_is_never_called_a_corrupt_file():
    """Messages come from the error's number and SQLite's own words, never from a file
    name that happens to say 'full' or 'malformed'."""
    full = store_module._explain(OSError(28, "No space left on device"), "/data/x")
    assert isinstance(full, StoreWriteError) and "is full" in str(full)
    denied = store_module._explain(
        PermissionError(13, "Permission denied", "/home/fullmalformed"), "/home/fullmalformed"
    )
    assert isinstance(denied, StoreWriteError) and "permission denied" in str(denied)
    assert "is full" not in str(denied)


@pytest.mark.parametrize(
    "url", ["mysql://user:secret@host/db", "oracle://x", "not a url at all", "mongodb://h/db"]
)
def test_a_url_with_an_unknown_scheme_is_one_clear_error(url, tmp_path):
    with pytest.raises(StoreError) as caught:
        Store(url)
    assert type(caught.value) is StoreError  # not a driver's ImportError or a traceback
    message = str(caught.value)
    assert "sqlite" in message.lower() and "postgresql" in message.lower()
    assert "secret" not in message  # the password is never printed
