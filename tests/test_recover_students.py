"""A rebuilt store forgets no one: the class's students (tag, nickname, hidden, seat code,
address group), the cookie-signing key and the class settings (limits, caps, reveal,
pause) are mirrored as files beside the store (mnist_demo/files.py) and `runs --recover`
brings them back, so a saved student browser is the same student after a rebuild."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from mnist_demo import classroom, experiments, files, queue, students
from mnist_demo.__main__ import main
from mnist_demo.class_set import ClassSet
from mnist_demo.classroom import Role
from mnist_demo.runs import RunRegistry
from mnist_demo.store import Store, StoreWriteError

INSTRUCTOR = Role.INSTRUCTOR


def _class(store: Store) -> dict[str, str]:
    """Three seats (one nicknamed and hidden, one nicknamed, one without), a cookie for
    each, and every class setting away from its default. Returns tag -> cookie."""
    registry = RunRegistry(store)
    ada, bo, cy = (students.new_tag() for _ in range(3))
    students.set_nickname(store, ada, "Ada", network="10.0.0.0/24")
    students.set_nickname(store, bo, "Bo", network="10.0.1.0/24")
    students.take_seat(store, cy, network="10.0.2.0/24")
    students.set_hidden(store, ada, True, role=INSTRUCTOR)
    experiments.set_limits(
        registry,
        experiments.ClassLimits(max_epochs=3, max_train_images=20_000, budget_minutes=2.5),
        role=INSTRUCTOR,
    )
    experiments.reveal(registry, True, role=INSTRUCTOR)
    queue.pause(registry, True, role=INSTRUCTOR)
    ClassSet(store).set_sends_cap(42, role=INSTRUCTOR)
    classroom.set_shared_address(store, True, role=INSTRUCTOR)
    return {tag: students.cookie_value(store, tag) for tag in (ada, bo, cy)}


def _lose_the_database(db: Path) -> None:
    """The server is down; the database file is damaged (cut to its first 100 bytes)."""
    with open(db, "r+b") as f:
        f.truncate(100)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def test_runs_recover_brings_back_students_the_cookie_key_and_the_class_settings(home, capsys):
    db = home / "runs.sqlite"
    store = Store(db)
    cookies = _class(store)
    before = {s.id: s for s in students.list_students(store)}
    key = students.secret(store)
    store.dispose()
    _lose_the_database(db)

    main(["runs", "--recover"])
    assert "rebuilt" in capsys.readouterr().out

    rebuilt = Store(db)
    registry = RunRegistry(rebuilt)
    after = {s.id: s for s in students.list_students(rebuilt)}
    assert after == before, "every seat back: tag, nickname, hidden, seat code, network"
    assert {s.display_name for s in after.values()} == {
        "Bo",
        students.default_name(next(t for t, s in before.items() if s.nickname == "Ada")),
        students.default_name(next(t for t, s in before.items() if s.nickname is None)),
    }
    assert students.secret(rebuilt) == key
    for tag, cookie in cookies.items():
        assert students.verify_cookie(rebuilt, cookie) == tag, "the same student after"
    seat = before[next(iter(cookies))]
    assert seat.seat_code and students.reclaim(rebuilt, seat.seat_code).id == seat.id
    limits = experiments.limits(registry)
    assert (limits.max_epochs, limits.max_train_images, limits.budget_minutes) == (3, 20_000, 2.5)
    assert experiments.revealed(registry)
    assert queue.paused(registry)
    assert ClassSet(rebuilt).sends_cap() == 42
    assert classroom.shared_address(rebuilt)
    with pytest.raises(students.NicknameError, match="taken"):
        students.set_nickname(rebuilt, students.new_tag(), "bo")  # uniqueness holds on
    rebuilt.dispose()


def test_the_mirror_follows_every_change_whichever_module_makes_it(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    folder = tmp_path / files.STATE_DIR
    tag = students.new_tag()
    students.set_nickname(store, tag, "Ada")
    seats = json.loads((folder / files.STUDENTS_FILE).read_text())
    assert [(s["id"], s["nickname"], s["hidden"]) for s in seats] == [(tag, "Ada", 0)]
    assert seats[0]["seat_code"] == students.get(store, tag).seat_code

    students.rename(store, tag, "Grace", role=INSTRUCTOR)
    students.set_hidden(store, tag, True, role=INSTRUCTOR)
    seats = json.loads((folder / files.STUDENTS_FILE).read_text())
    assert [(s["nickname"], s["hidden"]) for s in seats] == [("Grace", 1)]

    store.set_setting("some_setting", "on")
    assert json.loads((folder / files.SETTINGS_FILE).read_text())["some_setting"] == "on"
    store.set_setting("some_setting", None)
    assert "some_setting" not in json.loads((folder / files.SETTINGS_FILE).read_text())

    students.remove_seat(RunRegistry(store), tag, role=INSTRUCTOR)
    assert json.loads((folder / files.STUDENTS_FILE).read_text()) == []
    assert not list(folder.glob(".*.tmp")), "no temporary file left behind"


def test_a_full_disk_for_the_mirror_never_fails_the_students_action(tmp_path, monkeypatch):
    """Decided: the database saved the change, so the action succeeds (the failure is
    logged); the next change that can be written mirrors the whole state again."""
    store = Store(tmp_path / "runs.sqlite")
    folder = tmp_path / files.STATE_DIR
    ada, bo = students.new_tag(), students.new_tag()
    students.set_nickname(store, ada, "Ada")

    def full(path, data):
        raise StoreWriteError(f"the disk holding {path} is full ({errno.ENOSPC})")

    monkeypatch.setattr(files, "atomic_write", full)
    assert students.set_nickname(store, bo, "Bo").nickname == "Bo"
    students.rename(store, ada, "Grace", role=INSTRUCTOR)
    store.set_setting("some_setting", "on")
    assert students.get(store, bo).nickname == "Bo", "saved in the database"
    assert [s["nickname"] for s in json.loads((folder / files.STUDENTS_FILE).read_text())] == [
        "Ada"
    ], "the old mirror stays whole"

    monkeypatch.undo()
    students.set_hidden(store, bo, True, role=INSTRUCTOR)  # the disk has room again
    seats = json.loads((folder / files.STUDENTS_FILE).read_text())
    assert sorted((s["nickname"], s["hidden"]) for s in seats) == [("Bo", 1), ("Grace", 0)]
    assert json.loads((folder / files.SETTINGS_FILE).read_text())["some_setting"] == "on"


def test_a_database_write_that_fails_mirrors_nothing(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    tag = students.new_tag()
    students.set_nickname(store, tag, "Ada")
    mirrored = (tmp_path / files.STATE_DIR / files.STUDENTS_FILE).read_text()
    with pytest.raises(RuntimeError), store.write() as con:
        store.set_setting("some_setting", "on", con)
        raise RuntimeError("the transaction is rolled back")
    assert "some_setting" not in (tmp_path / files.STATE_DIR / files.SETTINGS_FILE).read_text()
    assert (tmp_path / files.STATE_DIR / files.STUDENTS_FILE).read_text() == mirrored


def test_a_new_database_never_overwrites_the_mirror_of_the_lost_one(tmp_path):
    """The database file is deleted and the app starts on a fresh one before anyone runs
    `runs --recover`: its new cookie key and new seats must not replace the files that
    can still bring the class back."""
    db = tmp_path / "runs.sqlite"
    store = Store(db)
    cookies = _class(store)
    key = students.secret(store)
    store.dispose()
    for path in tmp_path.glob("runs.sqlite*"):
        path.unlink()

    fresh = Store(db)
    assert students.secret(fresh) != key  # a new key, made by the fresh database
    students.set_nickname(fresh, students.new_tag(), "Newcomer")
    mirrored = json.loads((tmp_path / files.STATE_DIR / files.SETTINGS_FILE).read_text())
    assert mirrored[students.SECRET_KEY] == key.decode()
    nicknames = {
        s["nickname"]
        for s in json.loads((tmp_path / files.STATE_DIR / files.STUDENTS_FILE).read_text())
    }
    assert nicknames == {"Ada", "Bo", None}
    fresh.dispose()

    registry, aside = RunRegistry.recover(db)
    assert aside is not None
    for tag, cookie in cookies.items():
        assert students.verify_cookie(registry.store, cookie) == tag
    registry.store.dispose()


def test_one_atomic_write_for_every_file_beside_the_store(tmp_path):
    """Keras models are written through the same write-then-rename (files.atomic_save):
    whole or not at all, no temporary file left, the old file kept on failure."""
    from mnist_demo.model import build_model, load_model, save_model

    target = tmp_path / "models" / "m.keras"

    def fails(tmp: Path) -> None:
        tmp.write_text("half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    files.atomic_write(target, b"old")
    with pytest.raises(OSError):
        files.atomic_save(target, fails, suffix=".keras")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.keras"]

    model = build_model()
    save_model(model, target)
    assert load_model(target).count_params() == model.count_params()
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.keras"]
