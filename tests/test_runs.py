"""The run registry on the store: runs queued, claimed, followed point by point, stopped,
cancelled, resumed and recovered; only the instructor changes what the class sees.

Every test runs on SQLite and on PostgreSQL (`store_url`, tests/conftest_pg.py) but the
recovery of a damaged, emptied or missing SQLite file, which is about SQLite itself."""

import os
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import sqlalchemy as sa

from mnist_demo import queue
from mnist_demo.class_set import ClassSet
from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.errors import ModelFileError
from mnist_demo.recipe import FineTuneRecord, InvalidConfigError, TrainConfig
from mnist_demo.runs import (
    HEARTBEAT_STALE_S,
    LESSON_MAX_EPOCHS,
    CannotResumeError,
    RegistryCorruptError,
    RegistryError,
    RunNotFoundError,
    RunRegistry,
)
from mnist_demo.store import runs as runs_table
from tests.postgres_fixture import sqlite_only

pytest_plugins = ["tests.conftest_pg"]  # `store_url`: each test on SQLite and PostgreSQL

CONFIG = TrainConfig(epochs=2, train_size=600, test_size=100)
HISTORY = {"loss": [0.5, 0.3], "accuracy": [0.8, 0.9], "val_loss": [0.4, 0.3]}
TEACHER, STUDENT = Role.INSTRUCTOR, Role.STUDENT


def fake_checkpoint(path):
    """A resume checkpoint as the registry checks it (a .keras file is a zip); the worker
    would load it (tests/test_resume.py resumes real ones)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")


def running_run(registry, config=CONFIG):
    run = registry.submit(config, role=TEACHER)
    claimed = queue.claim_next(registry, "worker-1")
    assert claimed is not None and claimed.id == run.id
    return claimed


def finished_run(registry, accuracy=0.97, status="finished", history=HISTORY):
    run = running_run(registry)
    model = registry.run_dir(run.id) / "model.keras"
    model.write_bytes(b"weights")
    registry.record_epoch(run.id, history, model)
    return registry.finish_run(run.id, status, test_accuracy=accuracy, misclassified=3)


@pytest.fixture
def registry(store_url):
    return RunRegistry(store_url)


@pytest.fixture
def sqlite_registry(tmp_path):
    return RunRegistry(tmp_path / "runs.sqlite")


def set_run(registry, run_id, **values):
    """Change a run's row behind the registry's back (as another process could)."""
    with registry.store.write() as con:
        con.execute(sa.update(runs_table).where(runs_table.c.id == run_id).values(**values))


def test_a_run_is_recorded_and_survives_a_restart(store_url, registry):
    run = finished_run(registry)
    assert run.status == "finished" and run.epochs_done == 2
    assert run.duration_s is not None and run.duration_s >= 0
    again = RunRegistry(store_url).get(run.id)  # another process
    assert again.history == HISTORY and again.config == CONFIG
    assert isinstance(again.config, TrainConfig)
    assert again.test_accuracy == 0.97 and again.misclassified == 3 and again.has_model


def test_submit_queues_a_worker_claims_writes_points_and_reads_its_stop(registry):
    run = registry.submit(CONFIG, role=TEACHER)
    assert run.status == "queued" and queue.waiting(registry) == [run]
    claimed = queue.claim_next(registry, "worker-1", pid=os.getpid())
    assert claimed.status == "running" and claimed.worker == "worker-1"
    assert queue.claim_next(registry, "worker-2") is None  # never claimed twice
    assert not registry.record_progress(
        run.id, epoch=1, batch=2, batches_per_epoch=4,
        new_points=[(0, 0.25, 2.0, 0.1), (1, 0.5, 1.5, 0.3)],
    )  # fmt: skip
    assert registry.points(run.id) == [(0, 0.25, 2.0, 0.1), (1, 0.5, 1.5, 0.3)]
    assert registry.points(run.id, after_seq=0) == [(1, 0.5, 1.5, 0.3)]
    now = registry.get(run.id)
    assert (now.epoch, now.batch, now.batches_per_epoch) == (1, 2, 4)
    assert now.progress == pytest.approx(2 / 8)
    registry.request_stop(run.id, role=TEACHER)
    assert registry.get(run.id).stop_requested_at is not None
    assert registry.record_progress(
        run.id, epoch=1, batch=3, batches_per_epoch=4, new_points=[(2, 0.75, 1.0, 0.5)]
    )


def test_the_queue_takes_the_instructors_runs_first_then_by_time(registry):
    student_run = registry.submit(CONFIG, role=TEACHER, owner="student-1", priority=1)
    first = registry.submit(CONFIG, role=TEACHER)
    second = registry.submit(CONFIG, role=TEACHER)
    assert [r.id for r in queue.waiting(registry)] == [first.id, second.id, student_run.id]
    assert [queue.claim_next(registry, "w").id for _ in range(3)] == [
        first.id,
        second.id,
        student_run.id,
    ]


def test_cancel_takes_a_queued_run_out_and_refuses_a_running_one(registry):
    running = running_run(registry)
    queued = registry.submit(CONFIG, role=TEACHER)
    cancelled = queue.cancel_queued(registry, queued.id, role=TEACHER)
    assert cancelled.status == "cancelled" and queue.waiting(registry) == []
    with pytest.raises(RegistryError, match="not queued"):
        queue.cancel_queued(registry, running.id, role=TEACHER)
    stop_queued = registry.submit(CONFIG, role=TEACHER)
    assert registry.request_stop(stop_queued.id, role=TEACHER).status == "cancelled"


def test_a_run_longer_than_a_lesson_needs_long_runs(registry):
    long = TrainConfig(epochs=LESSON_MAX_EPOCHS + 1, train_size=600, test_size=100)
    with pytest.raises(InvalidConfigError, match="at most"):
        registry.submit(long, role=TEACHER)
    assert queue.waiting(registry) == []
    registry.allow_long_runs(True, role=TEACHER)
    assert registry.submit(long, role=TEACHER).status == "queued"


def test_resume_refuses_with_reasons_and_requeues_the_same_run(registry):
    done = finished_run(registry)
    with pytest.raises(CannotResumeError, match="has finished"):
        registry.resume(done.id, role=TEACHER)
    no_epoch = running_run(registry)
    registry.finish_run(no_epoch.id, "stopped")
    with pytest.raises(CannotResumeError, match="finished no epoch"):
        registry.resume(no_epoch.id, role=TEACHER)
    full = finished_run(registry, status="stopped")  # 2 of 2 epochs
    fake_checkpoint(registry.resume_path(full.id))
    with pytest.raises(CannotResumeError, match="all its 2 epochs"):
        registry.resume(full.id, role=TEACHER)
    stopped = finished_run(registry, status="stopped", history={"loss": [0.5]})
    with pytest.raises(CannotResumeError, match="no resume checkpoint"):
        registry.resume(stopped.id, role=TEACHER)
    fake_checkpoint(registry.resume_path(stopped.id))
    registry.record_progress(
        stopped.id, epoch=2, batch=1, batches_per_epoch=4,
        new_points=[(0, 0.5, 1.0, 0.5), (1, 1.0, 0.8, 0.6), (2, 1.25, 0.7, 0.7)],
    )  # fmt: skip
    with pytest.raises(PermissionDeniedError, match="start training"):
        registry.resume(stopped.id, role=STUDENT)
    resumed = registry.resume(stopped.id, role=TEACHER)
    assert (resumed.id, resumed.status, resumed.resume) == (stopped.id, "queued", True)
    assert resumed.epochs_done == 1 and resumed.history == {"loss": [0.5]}
    assert [p[0] for p in registry.points(stopped.id)] == [0, 1]  # past epoch 1: dropped


def test_a_fine_tune_run_is_not_resumed(registry):
    record = FineTuneRecord("base", "/b.keras", 1, 1, 8, 2, 4, 1, 0.25)
    run = registry.submit(CONFIG, role=TEACHER, fine_tune=record)
    queue.claim_next(registry, "w")
    model = registry.run_dir(run.id) / "model.keras"
    model.write_bytes(b"w")
    registry.record_epoch(run.id, {"loss": [0.4]}, model)
    registry.finish_run(run.id, "stopped")
    fake_checkpoint(registry.resume_path(run.id))
    assert registry.get(run.id).fine_tune == record
    with pytest.raises(CannotResumeError, match="fine-tune"):
        registry.resume(run.id, role=TEACHER)


def test_a_student_session_changes_nothing_the_class_sees(registry):
    """The check is in the registry itself: a page that forgot to lock a button (or a
    forged widget message) still cannot change what the class sees."""
    first, second = finished_run(registry), finished_run(registry)
    registry.set_active(first.id, role=TEACHER)
    queued = registry.submit(CONFIG, role=TEACHER)
    refused = {
        "start training": lambda: registry.submit(CONFIG, role=STUDENT),
        "stop the run": lambda: registry.request_stop(queued.id, role=STUDENT),
        "delete runs": lambda: registry.delete(first.id, role=STUDENT),
        "set the server's active model": lambda: registry.set_active(second.id, role=STUDENT),
        "allow long runs": lambda: registry.allow_long_runs(True, role=STUDENT),
    }
    for words, call in refused.items():
        with pytest.raises(PermissionDeniedError, match=f"Only the instructor can {words}"):
            call()
    with pytest.raises(PermissionDeniedError, match="stop the run"):
        queue.cancel_queued(registry, queued.id, role=STUDENT)
    assert [r.id for r in registry.list_runs()] == [queued.id, second.id, first.id]
    assert registry.get(queued.id).status == "queued"
    assert registry.run_dir(first.id).exists() and registry.active_run_id() == first.id
    assert not registry.long_runs_allowed()


def test_list_newest_first_and_delete_removes_files(registry):
    first, second = finished_run(registry), finished_run(registry)
    assert [r.id for r in registry.list_runs()] == [second.id, first.id]
    registry.set_active(first.id, role=TEACHER)
    registry.delete(first.id, role=TEACHER)
    assert [r.id for r in registry.list_runs()] == [second.id]
    assert not registry.run_dir(first.id).exists()
    assert registry.active_run_id() is None  # the deleted active model falls back
    with pytest.raises(RunNotFoundError, match=f"no run with id {first.id}"):
        registry.get(first.id)


def test_active_model_must_have_a_model_file(registry):
    empty = running_run(registry)
    registry.finish_run(empty.id, "stopped")
    with pytest.raises(ModelFileError, match="finished no epoch"):
        registry.set_active(empty.id, role=TEACHER)
    run = finished_run(registry)
    (registry.run_dir(run.id) / "model.keras").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        registry.set_active(run.id, role=TEACHER)
    assert registry.get(run.id).status == "finished" and registry.active_run_id() is None


def test_a_run_whose_heartbeat_stopped_is_interrupted_even_if_its_pid_lives(registry):
    run = running_run(registry)  # pid: this very (alive) process
    model = registry.run_dir(run.id) / "model.keras"
    model.write_bytes(b"epoch 1")
    registry.record_epoch(run.id, {"loss": [0.4]}, model)
    set_run(registry, run.id, heartbeat=time.time() - HEARTBEAT_STALE_S - 1)
    alive = running_run(registry)
    registry.beat(alive.id)
    assert registry.mark_interrupted() == [run.id]
    assert registry.get(run.id).status == "interrupted"
    assert registry.model_path(run.id) == model  # the last finished epoch stays usable
    assert registry.get(alive.id).status == "running"
    with pytest.raises(RegistryError, match="still running"):
        registry.delete(alive.id, role=TEACHER)


def test_a_run_of_a_dead_process_is_interrupted_at_once(registry):
    run = running_run(registry)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    set_run(registry, run.id, pid=int(dead.stdout))
    assert registry.mark_interrupted() == [run.id]


def test_a_run_still_training_is_neither_offered_nor_activated(registry):
    from mnist_demo.models import SHIPPED_KEY, available_models, default_model

    training = running_run(registry)
    model = registry.run_dir(training.id) / "model.keras"
    model.write_bytes(b"weights of epoch 1")
    registry.record_epoch(training.id, HISTORY, model)
    assert str(training.id) not in {m.key for m in available_models(registry, role=TEACHER)}
    with pytest.raises(RegistryError, match="still training"):
        registry.set_active(training.id, role=TEACHER)
    registry.store.set_setting("active_run", str(training.id))  # as an older version could
    assert default_model(registry).key == SHIPPED_KEY
    registry.finish_run(training.id, "stopped")
    registry.set_active(training.id, role=TEACHER)
    assert default_model(registry).key == str(training.id)


# --- a registry that never reuses an id and never forgets ---------------------------------


def a_class(registry) -> tuple[ClassSet, list]:
    classes = ClassSet(registry.store)
    made = []
    for i in range(3):
        image = np.zeros((28, 28), np.uint8)
        image[4:20, 8 + i : 12 + i] = 255
        made.append(classes.add(image, i, session=f"s{i}", canvas_png=b"\x89PNG %d" % i))
    classes.set_hidden(made[1].id, True, role=TEACHER)
    return classes, made


def three_runs(registry):
    runs = [finished_run(registry) for _ in range(3)]
    registry.set_active(runs[1].id, role=TEACHER)
    return runs


@sqlite_only("a truncated file, its write-ahead log")
def test_a_database_truncated_to_100_bytes_loses_no_run_model_or_drawing(sqlite_registry):
    registry = sqlite_registry
    runs = three_runs(registry)
    classes, drawings = a_class(registry)
    wall = [(d.id, d.label, d.hidden, d.canvas_png) for d in classes.newest(include_hidden=True)]
    path = registry.path
    registry.store.dispose()
    with open(path, "r+b") as f:
        f.truncate(100)
    for suffix in ("-wal", "-shm"):
        (path.parent / (path.name + suffix)).unlink(missing_ok=True)
    with pytest.raises(RegistryError):
        RunRegistry(path).list_runs()
    recovered, aside = RunRegistry.recover(path)
    assert aside is not None and aside.stat().st_size == 100
    assert [r.id for r in recovered.list_runs()] == [r.id for r in reversed(runs)]
    assert recovered.active_run_id() == runs[1].id
    again = ClassSet(recovered.store)
    assert [
        (d.id, d.label, d.hidden, d.canvas_png) for d in again.newest(include_hidden=True)
    ] == wall
    for old in drawings:
        np.testing.assert_array_equal(again.get(old.id).image, old.image)
    assert finished_run(recovered).id == runs[-1].id + 1  # ids keep counting


@sqlite_only("a file that is not a database")
def test_a_corrupt_database_is_rejected_then_recovered_from_run_files(sqlite_registry):
    registry = sqlite_registry
    kept = [finished_run(registry, 0.9).id, finished_run(registry, 0.95).id]
    registry.store.dispose()
    registry.path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RegistryCorruptError, match="not a readable database"):
        RunRegistry(registry.path)
    recovered, aside = RunRegistry.recover(registry.path)
    assert aside.read_bytes().startswith(b"this is not")
    runs = {r.id: r for r in recovered.list_runs()}
    assert sorted(runs) == kept and runs[kept[1]].test_accuracy == 0.95
    assert runs[kept[0]].history == HISTORY and runs[kept[0]].config == CONFIG


@sqlite_only("an emptied or replaced file (recover works on the SQLite file)")
@pytest.mark.parametrize("damage", ["zero-bytes", "replaced-by-empty-db"])
def test_an_emptied_database_beside_run_folders_is_refused_not_reused(sqlite_registry, damage):
    registry = sqlite_registry
    runs = three_runs(registry)
    old_model = registry.model_path(runs[0].id).read_bytes()
    registry.store.dispose()
    registry.path.unlink()
    if damage == "zero-bytes":
        registry.path.write_bytes(b"")
    else:
        sqlite3.connect(registry.path).close()
    with pytest.raises(RegistryCorruptError, match="holds no runs, but 3 run folders exist"):
        RunRegistry(registry.path)
    recovered, _ = RunRegistry.recover(registry.path)
    assert [r.id for r in recovered.list_runs()] == [r.id for r in reversed(runs)]
    assert finished_run(recovered).id == runs[-1].id + 1
    assert recovered.model_path(runs[0].id).read_bytes() == old_model


def test_new_ids_never_take_a_run_folder_even_past_the_table(registry):
    first = finished_run(registry)
    (registry.runs_dir / "7").mkdir()  # a folder the table does not know (copied in, say)
    assert registry.submit(CONFIG, role=TEACHER).id == 8 and first.id == 1


@sqlite_only("recover rebuilds a missing SQLite file")
def test_recover_works_without_any_registry_file(sqlite_registry):
    registry = sqlite_registry
    three_runs(registry)
    registry.store.dispose()
    registry.path.unlink()
    recovered, aside = RunRegistry.recover(registry.path)
    assert aside is None and len(recovered.list_runs()) == 3


def test_the_engine_resumes_only_recent_interrupted_runs_and_each_a_few_times(registry):
    """Supervisor.resume_interrupted runs every second: it reads only the last window's
    interrupted runs, puts each back in the queue, and stops after AUTO_RESUMES tries."""
    from mnist_demo.serve.engine import AUTO_RESUME_WINDOW_S, AUTO_RESUMES, Supervisor

    engine = Supervisor(registry.store)
    recent, old, tired = (running_run(registry) for _ in range(3))
    for run in (recent, old, tired):
        registry.interrupt(run.id, "the worker died")
    set_run(registry, old.id, finished_at=time.time() - AUTO_RESUME_WINDOW_S - 1)
    set_run(registry, tired.id, auto_resumes=AUTO_RESUMES)
    assert [r.id for r in registry.interrupted_since(time.time() - 60)] == [recent.id, tired.id]
    assert engine.resume_interrupted() == [recent.id]
    assert registry.get(recent.id).status == "queued"
    assert registry.get(recent.id).auto_resumes == 1
    assert {registry.get(old.id).status, registry.get(tired.id).status} == {"interrupted"}
