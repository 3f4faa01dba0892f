"""The class set: drawings stored whole in the store and as files beside it, refused with
reasons, taken back, archived, exported, restored from their files, split for
fine-tuning, and safe under thirty students at once. Every test runs on SQLite and on
PostgreSQL (`store_url`/`backend`, tests/conftest_pg.py)."""

from __future__ import annotations

import base64
import errno
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from mnist_demo import class_set
from mnist_demo.class_set import (
    ClassSet,
    ClassSetError,
    DuplicateDrawingError,
    TooManySendsError,
    held_out,
)
from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.store import StoreWriteError, drawings

pytest_plugins = ["tests.conftest_pg"]  # `store_url`: each test on SQLite and PostgreSQL


@pytest.fixture
def store(store_url) -> ClassSet:
    return ClassSet(store_url)


def digit(seed: int) -> np.ndarray:
    """A distinct non-blank 28x28 float image (as to_mnist returns) per seed."""
    image = np.zeros((28, 28), np.float32)
    rng = np.random.default_rng(seed)
    image[6:22, 10:18] = rng.random((16, 8), dtype=np.float32)
    return image


def test_a_drawing_is_stored_whole_and_read_back(store):
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[100:180, 120:160] = 255
    d = store.add(
        digit(1),
        7,
        session="s1",
        predicted=1,
        confidence=0.93,
        model="Robust (shipped)",
        canvas_png=class_set.canvas_thumbnail(canvas),
    )
    assert (d.label, d.predicted, d.session, d.model) == (7, 1, "s1", "Robust (shipped)")
    assert d.confidence == pytest.approx(0.93) and not d.correct and not d.hidden
    assert d.image.dtype == np.uint8 and d.image.shape == (28, 28)
    np.testing.assert_array_equal(d.image, np.round(digit(1) * 255).astype(np.uint8))
    assert d.canvas_png.startswith(b"\x89PNG") and len(d.canvas_png) < 5000
    again = ClassSet(store.store.url).get(d.id)  # a restart, or a second app server
    np.testing.assert_array_equal(again.image, d.image)


@pytest.mark.parametrize(
    ("label", "image", "message"),
    [
        (10, digit(1), "must be 0-9"),
        (-1, digit(1), "must be 0-9"),
        ("7", digit(1), "whole number"),
        (True, digit(1), "whole number"),
        (3, np.zeros((28, 28), np.float32), "blank"),
        (3, np.zeros((27, 28), np.float32), "28x28"),
    ],
    ids=["10", "-1", "text", "bool", "blank", "shape"],
)
def test_bad_drawings_are_refused_with_a_reason(store, label, image, message):
    with pytest.raises(ClassSetError, match=message):
        store.add(image, label, session="s1")
    assert store.snapshot().n == 0


def test_the_same_drawing_twice_is_refused(store):
    store.add(digit(1), 4, session="s1")
    with pytest.raises(DuplicateDrawingError, match="already in the class set"):
        store.add(digit(1), 4, session="s2")  # same pixels from another browser too
    assert store.snapshot().n == 1


def test_sends_per_session_are_rate_limited_in_the_store(store):
    for i in range(class_set.SENDS_PER_MINUTE):
        store.add(digit(i), i % 10, session="fast", now=1000.0 + i)
    with pytest.raises(TooManySendsError, match="at most"):
        store.add(digit(99), 1, session="fast", now=1000.0 + 30)
    store.add(digit(100), 1, session="other", now=1000.0 + 30)  # others are not held up
    store.add(digit(101), 1, session="fast", now=1000.0 + 61)  # a minute later: fine


def test_a_student_takes_back_only_their_own_last_drawing(store):
    a1 = store.add(digit(1), 1, session="a")
    b1 = store.add(digit(2), 2, session="b")
    a2 = store.add(digit(3), 3, session="a")
    assert store.take_back("a") == a2.id
    assert store.take_back("a") == a1.id
    with pytest.raises(ClassSetError, match="no drawing in the class set to take back"):
        store.take_back("a")
    assert list(store.snapshot().ids) == [b1.id]


def test_only_the_instructor_hides_deletes_and_archives(store):
    d = store.add(digit(1), 1, session="a")
    for call in (
        lambda role: store.set_hidden(d.id, True, role=role),
        lambda role: store.delete(d.id, role=role),
        lambda role: store.start_new_set(role=role),
    ):
        with pytest.raises(PermissionDeniedError, match="Only the instructor"):
            call(Role.STUDENT)
    assert store.snapshot().n == 1
    store.set_hidden(d.id, True, role=Role.INSTRUCTOR)
    assert store.snapshot().n == 0 and store.newest() == []
    assert [x.id for x in store.newest(include_hidden=True)] == [d.id]
    store.set_hidden(d.id, False, role=Role.INSTRUCTOR)
    store.delete(d.id, role=Role.INSTRUCTOR)
    assert store.newest(include_hidden=True) == []


def test_a_new_set_archives_the_old_one_and_loses_nothing(store):
    first_set = store.current_set()
    kept = store.add(digit(1), 1, session="a")
    new_set = store.start_new_set(role=Role.INSTRUCTOR)
    assert new_set != first_set and store.current_set() == new_set
    assert store.snapshot().n == 0
    old = store.snapshot(first_set)
    assert list(old.ids) == [kept.id]
    sets = {s["id"]: s for s in store.sets()}
    assert sets[first_set]["archived_at"] is not None and sets[first_set]["n"] == 1
    assert sets[new_set]["archived_at"] is None
    store.add(digit(1), 1, session="a")  # the same drawing may appear in a new set


def test_every_change_bumps_the_version(store):
    versions = [store.version()]
    d = store.add(digit(1), 1, session="a")
    versions.append(store.version())
    store.set_hidden(d.id, True, role=Role.INSTRUCTOR)
    versions.append(store.version())
    store.take_back("a")
    versions.append(store.version())
    store.start_new_set(role=Role.INSTRUCTOR)
    versions.append(store.version())
    assert versions == sorted(set(versions)), versions


def test_the_wall_filters_by_digit_and_outcome_newest_first(store):
    store.add(digit(1), 7, session="a", predicted=7)
    wrong = store.add(digit(2), 7, session="b", predicted=1)
    three = store.add(digit(3), 3, session="c", predicted=3)
    assert store.newest()[0].id == three.id
    assert [d.id for d in store.newest(outcome="wrong")] == [wrong.id]
    assert {d.label for d in store.newest(label=7)} == {7}
    assert len(store.newest(label=7, outcome="right")) == 1
    assert len(store.newest(limit=2)) == 2


def test_export_round_trips_as_an_mnist_shaped_npz(store):
    for i in range(5):
        store.add(digit(i), i, session=f"s{i}")
    data = np.load(io.BytesIO(store.export_npz()))
    assert set(data.files) == {"x", "y"}
    assert data["x"].dtype == np.uint8 and data["x"].shape == (5, 28, 28)
    assert data["y"].dtype == np.uint8 and list(data["y"]) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(data["x"], store.snapshot().images)


def test_a_damaged_row_is_skipped_and_reported_the_rest_is_kept(store):
    good = store.add(digit(1), 1, session="a")
    with store.store.write() as con:  # behind ClassSet's back, as a damaged row would be
        con.execute(
            sa.insert(drawings).values(
                set_id=store.current_set(),
                created_at=0,
                session="x",
                label=5,
                digest="bad",
                image=b"\x00" * 17,
            )
        )
    snap = store.snapshot()
    assert list(snap.ids) == [good.id] and snap.skipped == 1
    assert [d.id for d in store.newest()] == [good.id]


def test_thirty_students_sending_at_once_lose_and_duplicate_nothing(store):
    barrier = threading.Barrier(30)
    errors = []

    def send(i: int) -> None:
        barrier.wait()
        try:
            ClassSet(store.store.url).add(digit(i), i % 10, session=f"student-{i}")
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    snap = store.snapshot()
    assert snap.n == 30 and len(set(snap.ids)) == 30
    assert sorted(snap.sessions) == sorted(f"student-{i}" for i in range(30))


def test_a_full_disk_is_a_clear_error_and_saves_nothing(store, monkeypatch):
    """The drawing's files are written inside its transaction: a disk that refuses them
    leaves neither a row nor a file, and says so."""
    real_write = Path.write_text

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    kept = store.add(digit(1), 1, session="a")
    version = store.version()
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(StoreWriteError, match=r"disk .* is full.*nothing was saved"):
        store.add(digit(2), 2, session="a", canvas_png=b"\x89PNG a canvas")
    monkeypatch.setattr(Path, "write_text", real_write)
    assert list(store.snapshot().ids) == [kept.id] and store.version() == version
    assert sorted(p.name for p in (store.files_dir / str(kept.set_id)).iterdir()) == [
        f"{kept.id}.json",
        "set.json",
    ]  # no PNG, record or temporary file of the refused drawing
    store.add(digit(2), 2, session="a")  # space back: it works again


# --- the files beside the database -----------------------------------------------------


def drawing_files(store, d):
    folder = store.files_dir / str(d.set_id)
    return folder / f"{d.id}.json", folder / f"{d.id}.png"


def test_each_drawing_is_also_kept_as_files_in_step_with_the_database(store):
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[100:180, 120:160] = 255
    png = class_set.canvas_thumbnail(canvas)
    d = store.add(digit(1), 7, session="s1", predicted=1, confidence=0.5, canvas_png=png)
    record_file, png_file = drawing_files(store, d)
    record = json.loads(record_file.read_text())
    assert png_file.read_bytes() == png
    assert (record["label"], record["predicted"], record["session"], record["hidden"]) == (
        7,
        1,
        "s1",
        0,
    )
    assert base64.b64decode(record["image"]) == d.image.tobytes()
    store.set_hidden(d.id, True, role=Role.INSTRUCTOR)
    assert json.loads(record_file.read_text())["hidden"] == 1
    store.set_hidden(d.id, False, role=Role.INSTRUCTOR)
    assert json.loads(record_file.read_text())["hidden"] == 0
    store.delete(d.id, role=Role.INSTRUCTOR)
    assert not record_file.exists() and not png_file.exists()
    taken = store.add(digit(2), 2, session="s2")
    assert drawing_files(store, taken)[0].exists()
    store.take_back("s2")
    assert not drawing_files(store, taken)[0].exists()
    no_canvas = store.add(digit(3), 3, session="s3")
    assert drawing_files(store, no_canvas)[0].exists()
    assert not drawing_files(store, no_canvas)[1].exists()


def test_a_new_set_is_recorded_in_its_set_file(store):
    first = store.current_set()
    store.add(digit(1), 1, session="a")
    second = store.start_new_set(role=Role.INSTRUCTOR)
    old = json.loads((store.files_dir / str(first) / "set.json").read_text())
    new = json.loads((store.files_dir / str(second) / "set.json").read_text())
    assert old["id"] == first and old["archived_at"] is not None
    assert new["id"] == second and new["archived_at"] is None


def test_restore_from_files_rebuilds_every_set_and_drawing(backend):
    store = ClassSet(backend.url)
    png = class_set.canvas_thumbnail(np.full((50, 50, 4), 200, np.uint8))
    a = store.add(digit(1), 1, session="a", predicted=1, confidence=0.9, model="m", canvas_png=png)
    store.set_hidden(a.id, True, role=Role.INSTRUCTOR)
    first = store.current_set()
    second = store.start_new_set(role=Role.INSTRUCTOR)
    b = store.add(digit(2), 2, session="b")
    before = {d.id: d for d in store.newest(include_hidden=True, set_id=first)}
    before |= {d.id: d for d in store.newest(include_hidden=True, set_id=second)}
    sets_before = store.sets()
    store.store.dispose()
    backend.replace()  # a fresh, empty database beside the files
    fresh = ClassSet(backend.url)
    assert fresh.restore_from_files() == 2
    after = {d.id: d for d in fresh.newest(include_hidden=True, set_id=first)}
    after |= {d.id: d for d in fresh.newest(include_hidden=True, set_id=second)}
    assert sorted(after) == sorted(before) == [a.id, b.id]
    for key, old in before.items():
        new = after[key]
        for name in ("set_id", "created_at", "session", "label", "predicted", "confidence"):
            assert getattr(new, name) == getattr(old, name), name
        assert (new.model, new.canvas_png, new.hidden) == (old.model, old.canvas_png, old.hidden)
        np.testing.assert_array_equal(new.image, old.image)
    assert fresh.sets() == sets_before and fresh.current_set() == second
    assert fresh.restore_from_files() == 0  # twice: nothing doubled
    later = fresh.add(digit(3), 3, session="c")  # new ids follow the restored ones
    assert later.id > b.id and fresh.get(a.id).session == "a"


def test_a_new_database_never_reuses_a_set_folder(backend):
    store = ClassSet(backend.url)
    old = store.add(digit(1), 1, session="a")
    old_record = drawing_files(store, old)[0].read_text()
    store.store.dispose()
    backend.replace()  # replaced without recovery
    fresh = ClassSet(backend.url)
    new = fresh.add(digit(2), 2, session="b")
    assert new.set_id != old.set_id
    assert drawing_files(store, old)[0].read_text() == old_record


def test_held_out_split_is_by_session_fixed_and_about_a_fifth():
    sessions = [f"session-{i}" for i in range(1000)]
    out = [s for s in sessions if held_out(s)]
    assert 150 <= len(out) <= 250
    assert [s for s in sessions if held_out(s)] == out  # the same every time
