import os
import sqlite3
import subprocess
import sys
import time

import pytest

from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.errors import ModelFileError
from mnist_demo.runs import (
    HEARTBEAT_STALE_S,
    RegistryCorruptError,
    RegistryError,
    RunNotFoundError,
    RunRegistry,
)

CONFIG = {"preset": "lab7", "epochs": 2}
HISTORY = {"loss": [0.5, 0.3], "accuracy": [0.8, 0.9], "val_loss": [0.4, 0.3]}


def finished_run(registry, tmp_path, accuracy=0.97):
    run = registry.create_run(CONFIG)
    model = registry.run_dir(run.id) / "model.keras"
    model.write_bytes(b"weights")
    registry.record_epoch(run.id, HISTORY, model)
    return registry.finish_run(run.id, "finished", test_accuracy=accuracy, misclassified=3)


def test_a_run_is_recorded_and_survives_a_restart(tmp_path):
    path = tmp_path / "runs.sqlite"
    registry = RunRegistry(path)
    run = finished_run(registry, tmp_path)
    assert run.status == "finished" and run.epochs_done == 2
    assert run.duration_s is not None and run.duration_s >= 0
    again = RunRegistry(path).get(run.id)  # a new process opening the same file
    assert again.history == HISTORY and again.config == CONFIG
    assert again.test_accuracy == 0.97 and again.misclassified == 3
    assert again.has_model


def test_list_newest_first_and_delete_removes_files(tmp_path):
    registry = RunRegistry(tmp_path / "runs.sqlite")
    first, second = finished_run(registry, tmp_path), finished_run(registry, tmp_path)
    assert [r.id for r in registry.list_runs()] == [second.id, first.id]
    registry.set_active(first.id, role=Role.INSTRUCTOR)
    registry.delete(first.id, role=Role.INSTRUCTOR)
    assert [r.id for r in registry.list_runs()] == [second.id]
    assert not registry.run_dir(first.id).exists()
    assert registry.active_run_id() is None  # the deleted active model falls back
    with pytest.raises(RunNotFoundError, match=f"no run with id {first.id}"):
        registry.get(first.id)


def test_active_model_must_have_a_model_file(tmp_path):
    registry = RunRegistry(tmp_path / "runs.sqlite")
    empty = registry.create_run(CONFIG)
    with pytest.raises(ModelFileError, match="finished no epoch"):
        registry.set_active(empty.id, role=Role.INSTRUCTOR)
    run = finished_run(registry, tmp_path)
    registry.set_active(run.id, role=Role.INSTRUCTOR)
    assert registry.active_run_id() == run.id


def test_missing_model_file_is_a_clear_error(tmp_path):
    registry = RunRegistry(tmp_path / "runs.sqlite")
    run = finished_run(registry, tmp_path)
    (registry.run_dir(run.id) / "model.keras").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        registry.model_path(run.id)
    assert registry.get(run.id).status == "finished"  # the record itself is intact


def test_a_corrupt_database_is_rejected_then_recovered_from_run_files(tmp_path):
    path = tmp_path / "runs.sqlite"
    registry = RunRegistry(path)
    kept = [finished_run(registry, tmp_path, 0.9).id, finished_run(registry, tmp_path, 0.95).id]
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryCorruptError, match="not a readable database"):
        RunRegistry(path)
    recovered, aside = RunRegistry.recover(path)
    assert aside.exists() and aside.read_bytes().startswith(b"this is not")
    runs = {r.id: r for r in recovered.list_runs()}
    assert sorted(runs) == kept
    assert runs[kept[1]].test_accuracy == 0.95 and runs[kept[0]].history == HISTORY
    assert finished_run(recovered, tmp_path).id == max(kept) + 1  # ids keep counting


def test_a_run_whose_heartbeat_stopped_is_interrupted_even_if_its_pid_lives(tmp_path):
    """After a reboot another process can hold the recorded pid: the run used to stay
    "running" forever (not stoppable, not deletable, its model hidden)."""
    registry = RunRegistry(tmp_path / "runs.sqlite")
    run = registry.create_run(CONFIG)  # pid: this very (alive) process
    model = registry.run_dir(run.id) / "model.keras"
    model.write_bytes(b"epoch 1")
    registry.record_epoch(run.id, {"loss": [0.4]}, model)
    stale = time.time() - HEARTBEAT_STALE_S - 1
    with sqlite3.connect(registry.path) as con:
        con.execute(
            "UPDATE runs SET heartbeat = ?, pid = ? WHERE id = ?", (stale, os.getpid(), run.id)
        )
    alive = registry.create_run(CONFIG)
    registry.beat(alive.id)  # a job training now
    assert registry.mark_interrupted() == [run.id]
    interrupted = registry.get(run.id)
    assert interrupted.status == "interrupted" and interrupted.epochs_done == 1
    assert registry.model_path(run.id) == model  # the last finished epoch stays usable
    assert registry.get(alive.id).status == "running"
    with pytest.raises(RegistryError, match="still training"):
        registry.delete(alive.id, role=Role.INSTRUCTOR)
    registry.delete(run.id, role=Role.INSTRUCTOR)  # the stale one can go


def test_a_registry_from_before_heartbeats_gains_the_column(tmp_path):
    path = tmp_path / "runs.sqlite"
    with sqlite3.connect(path) as con:
        con.execute(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL,"
            " finished_at REAL, status TEXT NOT NULL, config TEXT NOT NULL, history TEXT NOT NULL"
            " DEFAULT '{}', epochs_done INTEGER NOT NULL DEFAULT 0, test_loss REAL,"
            " test_accuracy REAL, misclassified INTEGER, test_n INTEGER, model_path TEXT,"
            " error TEXT, pid INTEGER)"
        )
    registry = RunRegistry(path)
    run = registry.create_run(CONFIG)
    assert registry.get(run.id).heartbeat is not None


def test_students_cannot_delete_activate_or_lift_the_epoch_cap(tmp_path):
    """The check is in the registry itself: a page that forgot to lock a button (or a
    forged widget message) still cannot change what the class sees."""
    registry = RunRegistry(tmp_path / "runs.sqlite")
    first, second = finished_run(registry, tmp_path), finished_run(registry, tmp_path)
    registry.set_active(first.id, role=Role.INSTRUCTOR)
    with pytest.raises(PermissionDeniedError, match="Only the instructor can delete runs"):
        registry.delete(first.id, role=Role.STUDENT)
    with pytest.raises(PermissionDeniedError, match="set the server's active model"):
        registry.set_active(second.id, role=Role.STUDENT)
    with pytest.raises(PermissionDeniedError, match="allow long runs"):
        registry.allow_long_runs(True, role=Role.STUDENT)
    assert [r.id for r in registry.list_runs()] == [second.id, first.id]
    assert registry.run_dir(first.id).exists()
    assert registry.active_run_id() == first.id
    assert not registry.long_runs_allowed()
    registry.allow_long_runs(True, role=Role.INSTRUCTOR)
    assert registry.long_runs_allowed()
    registry.allow_long_runs(False, role=Role.INSTRUCTOR)
    assert not registry.long_runs_allowed()


# --- a registry that never reuses an id and never forgets ---------------------------------


def three_runs(tmp_path):
    registry = RunRegistry(tmp_path / "runs.sqlite")
    runs = [finished_run(registry, tmp_path) for _ in range(3)]
    registry.set_active(runs[1].id, role=Role.INSTRUCTOR)
    return registry, runs


@pytest.mark.parametrize("damage", ["zero-bytes", "replaced-by-empty-db"])
def test_an_emptied_database_beside_run_folders_is_refused_not_reused(tmp_path, damage):
    """Once, a zero-byte runs.sqlite opened as an empty registry: ids restarted at 1 and
    the next run overwrote runs/1/model.keras of an old run."""
    registry, runs = three_runs(tmp_path)
    old_model = registry.model_path(runs[0].id).read_bytes()
    registry.path.unlink()
    if damage == "zero-bytes":
        registry.path.write_bytes(b"")
    else:
        sqlite3.connect(registry.path).close()
    with pytest.raises(RegistryCorruptError, match="holds no runs, but 3 run folders exist"):
        RunRegistry(registry.path)
    recovered, _ = RunRegistry.recover(registry.path)
    assert [r.id for r in recovered.list_runs()] == [r.id for r in reversed(runs)]
    new = finished_run(recovered, tmp_path)
    assert new.id == runs[-1].id + 1
    assert registry.model_path(runs[0].id).read_bytes() == old_model


def test_new_ids_never_take_a_run_folder_even_past_the_table(tmp_path):
    registry = RunRegistry(tmp_path / "runs.sqlite")
    first = finished_run(registry, tmp_path)
    (registry.runs_dir / "7").mkdir()  # a folder the table does not know (copied in, say)
    assert registry.create_run(CONFIG).id == 8
    assert first.id == 1


def test_recover_works_without_any_registry_file(tmp_path):
    registry, _ = three_runs(tmp_path)
    registry.path.unlink()
    recovered, aside = RunRegistry.recover(registry.path)
    assert aside is None
    assert len(recovered.list_runs()) == 3


def test_recovery_remembers_the_active_model(tmp_path):
    registry, runs = three_runs(tmp_path)
    registry.path.write_bytes(b"this is not a database at all" * 100)
    recovered, aside = RunRegistry.recover(registry.path)
    assert aside is not None and aside.exists()
    assert recovered.active_run_id() == runs[1].id


def test_recovery_brings_back_the_class_drawings_the_old_file_still_holds(tmp_path):
    import numpy as np

    from mnist_demo.class_set import ClassSet

    registry, _ = three_runs(tmp_path)
    store = ClassSet(registry.path)
    image = np.zeros((28, 28), np.uint8)
    image[4:20, 10:14] = 255
    store.add(image, 1, session="s")
    with sqlite3.connect(registry.path) as con:
        con.execute("DELETE FROM runs")  # the runs table emptied, the drawings intact
    recovered, _ = RunRegistry.recover(registry.path)
    assert len(recovered.list_runs()) == 3
    assert ClassSet(registry.path).count() == 1


def test_a_run_still_training_is_neither_offered_nor_activated(tmp_path):
    """Once, activating a run after its first epoch broke every new Draw session with a
    KeyError: the default pointed at a model the sidebar did not list."""
    from mnist_demo.runs import SHIPPED_KEY, available_models, default_model

    registry = RunRegistry(tmp_path / "runs.sqlite")
    training = registry.create_run(CONFIG)
    model = registry.run_dir(training.id) / "model.keras"
    model.write_bytes(b"weights of epoch 1")
    registry.record_epoch(training.id, HISTORY, model)  # a checkpoint, still running
    assert str(training.id) not in {m.key for m in available_models(registry)}
    with pytest.raises(RegistryError, match="still training"):
        registry.set_active(training.id, role=Role.INSTRUCTOR)
    registry._set_setting("active_run", str(training.id))  # as an older version could
    assert default_model(registry).key == SHIPPED_KEY  # always one of the listed models
    registry.finish_run(training.id, "stopped")
    registry.set_active(training.id, role=Role.INSTRUCTOR)
    assert default_model(registry).key == str(training.id)


def test_a_run_of_a_dead_process_is_interrupted_at_once(tmp_path):
    """A server restarted seconds after a crash: the heartbeat is still fresh, but the
    recorded process is gone."""
    registry = RunRegistry(tmp_path / "runs.sqlite")
    run = registry.create_run(CONFIG)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    with sqlite3.connect(registry.path) as con:
        con.execute("UPDATE runs SET pid = ? WHERE id = ?", (int(dead.stdout), run.id))
    assert registry.mark_interrupted() == [run.id]
