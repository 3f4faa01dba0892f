"""The files beside the store: one atomic write, and the class's state mirrored as files.

Everything a damaged database must not take with it is also a file in the data home,
written whole or not at all (`atomic_write`): each run's `runs/<id>/run.json` and
`runs/active.json` (runs.py), each class drawing's `class/<set>/<id>.json` and `.png`
(class_set.py), and here, in `class_state/`:

- `students.json`: every seat (tag, nickname, hidden, created, address group, last seen,
  seat code), one file for the whole roster, so the file is always one consistent class
  (nicknames and seat codes unique across it, as in the table) and each write brings it
  up to date whatever an earlier failed write missed;
- `settings.json`: every server-wide setting — the cookie-signing key, the class's limits
  and caps, reveal, pause, … — so a saved student browser is the same student after a
  rebuild.

The store writes them itself after a write transaction that changed a student or a
setting commits (`Store.write` calls `mirror`), whichever module made the change.
`runs --recover` (RunRegistry.recover) puts them back (`restore`).

Two rules keep the mirror honest:

- A mirror write never fails the user's action: the database has already saved it. A
  full or read-only disk is logged, and the next change writes the whole state again.
- The mirror belongs to one database: `settings.json` carries that database's
  `store_id` (a setting). A database that is not the one mirrored (a fresh file made
  because the old one was lost, before `runs --recover`) never overwrites the files
  that could rebuild the old one.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from mnist_demo.store import Store

log = logging.getLogger(__name__)

STATE_DIR = "class_state"  # in the data home
STUDENTS_FILE = "students.json"
SETTINGS_FILE = "settings.json"
LOCK_FILE = ".lock"
STORE_ID = "store_id"  # setting: which database the mirror belongs to
# Settings other files own: the active model is runs/active.json, restored only when its
# run still has a model (RunRegistry._restore_active).
NOT_RESTORED = frozenset({"active_run"})
STUDENT_FIELDS = ("id", "nickname", "hidden", "created_at", "network", "last_seen", "seat_code")


def atomic_save(path: Path, save: Callable[[Path], object], suffix: str = "") -> None:
    """Write a file whole or not at all: `save` writes it at a temporary name in the same
    folder (ending in `suffix`: Keras wants ".keras"), which is then renamed over the
    target, so a crash mid-write leaves the old file, never half a file, and no
    temporary file stays behind. Errors are `save`'s own (see atomic_write)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(tmp)
        tmp.replace(path)
    finally:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes | str) -> None:
    """atomic_save of some text or bytes. A full or read-only disk is a StoreWriteError
    that says so."""
    from mnist_demo.store import _explain

    def save(tmp: Path) -> None:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)

    try:
        atomic_save(path, save)
    except OSError as e:
        raise _explain(e, str(Path(path).parent)) from e


# --- the class's state, mirrored --------------------------------------------------------


def state_dir(store: Store) -> Path:
    return store.home / STATE_DIR


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One mirror writer at a time across threads and processes (each reads the database
    and writes the files under the lock, so the last writer always wrote the newest)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not on a POSIX system: no cross-process lock
        yield
        return
    with open(folder / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_mirroring = threading.local()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _snapshot(store: Store) -> tuple[dict[str, str], list[dict[str, Any]]]:
    from mnist_demo.store import settings, students

    with store.read() as con:
        found = {k: v for k, v in con.execute(sa.select(settings.c.key, settings.c.value))}
        seats = [
            {f: row._mapping[f] for f in STUDENT_FIELDS}
            for row in con.execute(sa.select(students).order_by(students.c.created_at))
        ]
    return found, seats


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    atomic_write(path, text)


def mirror(store: Store) -> bool:
    """Write students.json and settings.json from the database as it is now. Never raises
    (the change it mirrors is saved already); False when the files were not written: a
    full or read-only disk (logged), or a database that is not the one mirrored here."""
    if getattr(_mirroring, "on", False):  # the store_id write below, from inside mirror
        return True
    folder = state_dir(store)
    _mirroring.on = True
    try:
        with _locked(folder):
            found, seats = _snapshot(store)
            mirrored = _read_json(folder / SETTINGS_FILE)
            mirrored_id = mirrored.get(STORE_ID) if isinstance(mirrored, dict) else None
            if found.get(STORE_ID) is None and mirrored_id is None:
                # The first mirror of this database (new, or from before mirrors).
                found[STORE_ID] = secrets.token_hex(8)
                with store.write() as con:  # (mirrors nothing itself: see Store.write)
                    store.set_setting(STORE_ID, found[STORE_ID], con)
            if mirrored_id is not None and found.get(STORE_ID) != mirrored_id:
                log.warning(
                    "%s is not the database the files in %s mirror (a new file made after the "
                    "old one was lost?): they are kept for `python -m mnist_demo runs "
                    "--recover`, which rebuilds the class from them",
                    store.where,
                    folder,
                )
                return False
            _write_if_changed(folder / STUDENTS_FILE, json.dumps(seats, indent=1) + "\n")
            _write_if_changed(
                folder / SETTINGS_FILE, json.dumps(found, indent=1, sort_keys=True) + "\n"
            )
        return True
    except Exception as e:  # the action is saved in the database: never fail it here
        log.warning("could not mirror the class's students and settings to %s: %s", folder, e)
        return False
    finally:
        _mirroring.on = False


def restore(store: Store) -> tuple[int, int]:
    """Put the mirrored students and settings back into a rebuilt database (rows already
    there are kept). Returns (students, settings) restored."""
    from mnist_demo.store import students

    folder = state_dir(store)
    mirrored = _read_json(folder / SETTINGS_FILE)
    seats = _read_json(folder / STUDENTS_FILE)
    mirrored = mirrored if isinstance(mirrored, dict) else {}
    seats = seats if isinstance(seats, list) else []
    n_settings = n_students = 0
    with store.write(lock=students) as con:
        for key, value in mirrored.items():
            if key in NOT_RESTORED or not isinstance(key, str) or not isinstance(value, str):
                continue
            store.set_setting(key, value, con)
            n_settings += 1
        have = set(con.execute(sa.select(students.c.id)).scalars())
        taken = {
            c: set(con.execute(sa.select(getattr(students.c, c))).scalars())
            for c in ("nickname", "seat_code")
        }
        for seat in seats:
            if not isinstance(seat, dict) or not isinstance(seat.get("id"), str):
                continue
            if seat["id"] in have:
                continue
            values = {f: seat.get(f) for f in STUDENT_FIELDS}
            values["hidden"] = int(bool(values["hidden"]))
            if not isinstance(values["created_at"], int | float):
                values["created_at"] = 0.0
            for column in ("nickname", "seat_code"):  # never refuse the whole restore
                if values[column] is not None and values[column] in taken[column]:
                    values[column] = None
                taken[column].add(values[column])
            con.execute(sa.insert(students).values(**values))
            have.add(seat["id"])
            n_students += 1
    return n_students, n_settings
