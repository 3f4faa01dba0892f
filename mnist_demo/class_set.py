"""The class's own digits: drawings students send from the Draw page, kept as a dataset.

Each drawing is a row in the store (so every app server sharing it sees the same class
set, and a restart loses nothing): the 28x28 the model saw (784 bytes), a small PNG of
the canvas, the digit the student *meant*, the model's answer, confidence and verdict
(digit, not sure, not a digit), the time and the student's anonymous tag (their signed
identity, students.py). A row and its images are written in one transaction:
a drawing is stored whole or not at all.

Each drawing is also kept as files beside the database, written atomically in the same
step (`<home>/class/<set>/<id>.json`, its record with the 28x28, and `<id>.png`, the
canvas), as is each set (`set.json`): a damaged database loses no drawing, recovery
re-imports them (`restore_from_files`), as it does runs from their run.json.

A class set is a run of lessons' drawings. "Start a new class set" archives the current
one (never deletes it). Every change bumps a version counter, which is what cached
evaluations of the class set are keyed on.

The rules are enforced here, where a drawing is stored: labels 0-9, no blank drawings,
no drawing twice in a set, at most SENDS_PER_MINUTE per student and the class's cap
(`sends_cap`, the instructor's to change) for everyone together, counted as limit events
in the store in the same transaction (so a reload, a take-back or another app server
changes nothing), only the sender takes a drawing back (TAKE_BACKS_PER_MINUTE), only the
instructor hides, deletes, or starts a new set.

A drawing sent while the model said "not a digit" keeps that verdict: it is on the wall
as such and left out of the class's accuracy (`Snapshot.counted`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mnist_demo.classroom import (
    Action,
    Role,
    count_recent,
    record_event,
    require,
    student_subject,
    too_many,
)
from mnist_demo.data import IMAGE_SIZE, NUM_CLASSES, to_byte_pixels, to_unit_pixels
from mnist_demo.errors import DigitLabError
from mnist_demo.store import (
    Store,
    StoreError,
    atomic_write,
    class_sets,
    drawings,
    settings,
)

SENDS_PER_MINUTE = 12  # per student: a student draws a digit in a few seconds at best
TAKE_BACKS_PER_MINUTE = 12  # per student
CLASS_SENDS_KEY = "class_sends_per_minute"  # setting: the class-wide cap on sends
CLASS_SENDS_DEFAULT = 120  # thirty students, one drawing each every 15 s
CLASS_SENDS_RANGE = (1, 10_000)
# Draw's verdicts, as novelty.py words them (not imported: novelty loads TensorFlow)
DIGIT, NOT_SURE, NOT_A_DIGIT = "digit", "not sure", "not a digit"
VERDICTS = (DIGIT, NOT_SURE, NOT_A_DIGIT)
HELD_OUT_BUCKETS = 5  # one session in five is held out of fine-tuning (see held_out)
_VERSION_KEY = "class_set_version"
FILES_KEY = "class_files"  # setting: "1" once every drawing has its files (see __init__)
CLASS_DIR = "class"  # in the data home: <set id>/set.json, <drawing id>.json and .png
SET_FILE = "set.json"


class ClassSetError(DigitLabError):
    """A drawing that cannot be stored or changed; the message says why."""


class DuplicateDrawingError(ClassSetError):
    pass


class TooManySendsError(ClassSetError):
    pass


class TooManyTakeBacksError(ClassSetError):
    pass


@dataclass(frozen=True)
class Drawing:
    id: int
    set_id: int
    created_at: float
    session: str
    label: int
    predicted: int | None
    confidence: float | None
    model: str | None
    image: np.ndarray  # (28, 28) uint8, what the model saw
    canvas_png: bytes | None
    hidden: bool
    verdict: str | None = None  # as Draw said when it was sent; None: not recorded

    @property
    def correct(self) -> bool:
        return self.predicted == self.label

    @property
    def counted(self) -> bool:
        """Whether it counts in the class's accuracy: not when Draw said "not a digit"."""
        return self.verdict != NOT_A_DIGIT


@dataclass(frozen=True)
class Snapshot:
    """The visible drawings of a set at one moment, as arrays (oldest first)."""

    set_id: int
    version: int
    ids: np.ndarray  # (N,) int
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int
    sessions: np.ndarray  # (N,) str
    skipped: int = 0  # rows whose stored image was unreadable (reported, not used)
    verdicts: np.ndarray | None = None  # (N,) str, "" where none was recorded

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def counted(self) -> np.ndarray:
        """(N,) bool: the drawings the class's accuracy counts (not the "not a digit" ones)."""
        if self.verdicts is None:
            return np.ones(self.n, dtype=bool)
        return np.asarray(self.verdicts) != NOT_A_DIGIT

    @property
    def not_digits(self) -> int:
        return int(self.n - self.counted.sum())


def as_stored_image(image28: np.ndarray) -> np.ndarray:
    """A 28x28 image (float in [0, 1] as `to_mnist` returns, or uint8) as stored: uint8."""
    x = np.asarray(image28)
    if x.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ClassSetError(f"a drawing is one 28x28 image, got shape {x.shape}")
    return to_byte_pixels(to_unit_pixels(x))  # the checks, then the rounding


def canvas_thumbnail(canvas: np.ndarray | None, side: int = 96) -> bytes | None:
    """The canvas as a small PNG (a few kB), for the wall; None without a canvas."""
    if canvas is None:
        return None
    from PIL import Image

    picture = Image.fromarray(to_byte_pixels(canvas)).convert("RGBA")
    picture.thumbnail((side, side))
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()


def held_out(session: str) -> bool:
    """The fixed split for fine-tuning: a session is held out (never trained on) when its
    tag hashes to bucket 0 of HELD_OUT_BUCKETS. By session, so one student's drawings
    are never on both sides; by hash, so it never changes as drawings arrive."""
    digest = hashlib.sha256(session.encode()).digest()
    return digest[0] % HELD_OUT_BUCKETS == 0


class ClassSet:
    """The class's drawings in the store. Any thread (thirty students' sessions) may use
    one object; any number of processes may share the store."""

    def __init__(self, store: Store | Path | str | None = None) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.path = self.store.path  # the SQLite file (None on PostgreSQL)
        self.files_dir = self.store.home / CLASS_DIR
        self._ensure_files()

    # --- the files beside the database ---------------------------------------------------

    def _ensure_files(self) -> None:
        """A registry from before drawings had files keeps them only in the database:
        write every set's and drawing's files once (then mark it done). On a read-only
        or full data home this waits for a later open; reading works meanwhile."""
        try:
            if self.store.setting(FILES_KEY) == "1":
                return
            with self.store.read() as con:
                set_rows = con.execute(sa.select(class_sets)).fetchall()
                drawing_ids = con.execute(sa.select(drawings.c.id)).scalars().all()
            for s in set_rows:
                self._write_set_file(s._mapping)
            for drawing_id in drawing_ids:  # one at a time: a large set fits in memory
                with self.store.read() as con:
                    row = con.execute(
                        sa.select(drawings).where(drawings.c.id == drawing_id)
                    ).first()
                if row is not None:
                    self._write_drawing_files(row._mapping)
            self.store.set_setting(FILES_KEY, "1")
        except StoreError:
            pass

    def set_dir(self, set_id: int) -> Path:
        return self.files_dir / str(int(set_id))

    def _write_set_file(self, row: Any) -> None:
        record = {k: row[k] for k in ("id", "created_at", "archived_at")}
        atomic_write(self.set_dir(row["id"]) / SET_FILE, json.dumps(record))

    def _drawing_files(self, set_id: int, drawing_id: int) -> tuple[Path, Path]:
        folder = self.set_dir(set_id)
        return folder / f"{int(drawing_id)}.json", folder / f"{int(drawing_id)}.png"

    def _write_drawing_files(self, row: Any, written: list[Path] | None = None) -> None:
        """The drawing's record (every column; the 28x28 in base64) and its canvas PNG.
        `written` collects the files made, for the caller to remove should its
        transaction fail."""
        record_file, png_file = self._drawing_files(row["set_id"], row["id"])
        record = {
            k: row[k]
            for k in (c.name for c in drawings.columns)
            if k not in ("image", "canvas_png")
        }
        record["hidden"] = int(record["hidden"])
        record["image"] = base64.b64encode(bytes(row["image"])).decode("ascii")
        record["canvas_png"] = png_file.name if row["canvas_png"] is not None else None
        if row["canvas_png"] is not None:
            atomic_write(png_file, bytes(row["canvas_png"]))
            if written is not None:
                written.append(png_file)
        atomic_write(record_file, json.dumps(record))
        if written is not None:
            written.append(record_file)

    def _remove_drawing_files(self, set_id: int, drawing_id: int) -> None:
        for path in self._drawing_files(set_id, drawing_id):
            # The row is gone; a leftover file would come back only through recovery.
            with suppress(OSError):
                path.unlink(missing_ok=True)

    @contextmanager
    def _writing(self) -> Iterator[tuple[Connection, list[Path]]]:
        """A write transaction whose files are written inside it: should the files or
        the commit fail, nothing is saved and the new files are removed again."""
        written: list[Path] = []
        try:
            with self.store.write(lock=drawings) as con:
                yield con, written
        except BaseException:
            for path in written:
                with suppress(OSError):
                    path.unlink(missing_ok=True)
            raise

    def restore_from_files(self) -> int:
        """Re-import every set and drawing from the files beside the database (after
        recovery moved a damaged one aside); rows already present are kept. Returns how
        many drawings came back. An unreadable file is skipped, the others still count."""
        restored = 0
        with self.store.write(lock=drawings) as con:
            known_sets = set(con.execute(sa.select(class_sets.c.id)).scalars())
            known = set(con.execute(sa.select(drawings.c.id)).scalars())
            digests = {
                (s, d) for s, d in con.execute(sa.select(drawings.c.set_id, drawings.c.digest))
            }
            folders = [p for p in self.files_dir.glob("*") if p.name.isdigit() and p.is_dir()]
            for folder in sorted(folders, key=lambda p: int(p.name)):
                set_id = int(folder.name)
                rows = []
                for record_file in folder.glob("*.json"):
                    if record_file.name == SET_FILE or not record_file.stem.isdigit():
                        continue
                    row = _read_drawing_file(record_file)
                    if row is not None and row["set_id"] == set_id:
                        rows.append(row)
                if set_id not in known_sets:
                    record = _read_json(folder / SET_FILE) or {}
                    created = record.get("created_at")
                    if not isinstance(created, int | float):
                        created = min((r["created_at"] for r in rows), default=time.time())
                    archived = record.get("archived_at")
                    con.execute(
                        sa.insert(class_sets).values(
                            id=set_id,
                            created_at=float(created),
                            archived_at=archived if isinstance(archived, int | float) else None,
                        )
                    )
                    known_sets.add(set_id)
                for row in sorted(rows, key=lambda r: r["id"]):
                    if row["id"] in known or (set_id, row["digest"]) in digests:
                        continue
                    con.execute(sa.insert(drawings).values(**row))
                    known.add(row["id"])
                    digests.add((set_id, row["digest"]))
                    restored += 1
            self.store.ids_given(con, drawings)  # PostgreSQL: new ids after these
            self._bump(con)
            self.store.set_setting(FILES_KEY, "1", con)
        return restored

    # --- the current set -------------------------------------------------------------

    def current_set(self) -> int:
        """The set drawings go to now. A plain read (the wall asks every second); only
        the very first call, with no set yet, takes the write lock to create one."""
        found = self._current_set_or_none()
        if found is not None:
            return found
        with self._writing() as (con, written):
            return self._current_set(con, written)

    def _current_set_or_none(self) -> int | None:
        with self.store.read() as con:
            return con.execute(_CURRENT_SET).scalar_one_or_none()

    def _reading_set(self, set_id: int | None) -> int:
        """The set a read is about: the one asked for, or the current one. With no set
        yet and a disk that refuses to make one, the set that would come next (empty):
        a page that only reads keeps working."""
        if set_id is not None:
            return int(set_id)
        try:
            return self.current_set()
        except StoreError:
            found = self._current_set_or_none()
            return found if found is not None else self._next_set_id_read()

    def _next_set_id_read(self) -> int:
        with self.store.read() as con:
            return self._next_set_id(con)

    def _next_set_id(self, con: Connection) -> int:
        """Never the id of a set the table had, nor of one whose folder exists (a replaced
        database must not let new drawings overwrite an old set's files)."""
        highest = con.execute(sa.select(sa.func.max(class_sets.c.id))).scalar_one() or 0
        folders = [int(p.name) for p in self.files_dir.glob("*") if p.name.isdigit()]
        return max(highest, *folders, 0) + 1

    def _current_set(self, con: Connection, written: list[Path]) -> int:
        found = con.execute(_CURRENT_SET).scalar_one_or_none()
        if found is not None:
            return int(found)
        return self._new_set(con, written)

    def _new_set(self, con: Connection, written: list[Path]) -> int:
        set_id = self._next_set_id(con)
        values = {"id": set_id, "created_at": time.time(), "archived_at": None}
        con.execute(sa.insert(class_sets).values(**values))
        self._write_set_file(values)
        written.append(self.set_dir(set_id) / SET_FILE)
        return set_id

    def version(self) -> int:
        """Changes with every add, take-back, hide, delete and new set."""
        value = self.store.setting(_VERSION_KEY)
        return int(value) if value else 0

    def _bump(self, con: Connection) -> None:
        value = con.execute(
            sa.select(settings.c.value).where(settings.c.key == _VERSION_KEY)
        ).scalar_one_or_none()
        self.store.set_setting(_VERSION_KEY, str(int(value or 0) + 1), con)

    def start_new_set(self, *, role: Role) -> int:
        """Archive the current set (kept, browsable, exportable) and start an empty one."""
        require(role, Action.MANAGE_CLASS_SET)
        with self._writing() as (con, written):
            current = self._current_set(con, written)
            con.execute(
                sa.update(class_sets)
                .where(class_sets.c.id == current)
                .values(archived_at=time.time())
            )
            archived = con.execute(sa.select(class_sets).where(class_sets.c.id == current)).one()
            self._write_set_file(archived._mapping)  # rewritten: an old copy is harmless
            new = self._new_set(con, written)
            self._bump(con)
        return new

    def sets(self) -> list[dict[str, float | int | None]]:
        """Every set, newest first, with its number of drawings."""
        self._reading_set(None)
        n = sa.func.count(drawings.c.id).label("n")
        query = (
            sa.select(class_sets.c.id, class_sets.c.created_at, class_sets.c.archived_at, n)
            .select_from(class_sets.outerjoin(drawings, drawings.c.set_id == class_sets.c.id))
            .group_by(class_sets.c.id)
            .order_by(class_sets.c.id.desc())
        )
        with self.store.read() as con:
            return [dict(r._mapping) for r in con.execute(query)]

    # --- sending and taking back -------------------------------------------------------

    def add(
        self,
        image28: np.ndarray,
        label: int,
        *,
        session: str,
        predicted: int | None = None,
        confidence: float | None = None,
        model: str | None = None,
        canvas_png: bytes | None = None,
        verdict: str | None = None,
        now: float | None = None,
        person: str | None = None,
    ) -> Drawing:
        """Store one drawing in the current set, or refuse it with a ClassSetError (a
        full or read-only disk: a StoreWriteError, nothing saved). `session` is the
        student's identity; `verdict` what Draw said (digit, not sure, not a digit);
        `person` what a person's budget is counted on besides the seat
        (classroom.person_subject: the address group), so many cookies from one laptop
        spending the class's cap lock nobody else out (see _check_sends)."""
        if isinstance(label, bool) or not isinstance(label, int | np.integer):
            raise ClassSetError(f"the digit meant must be a whole number 0-9, not {label!r}")
        if not 0 <= int(label) < NUM_CLASSES:
            raise ClassSetError(f"the digit meant must be 0-9, not {label}")
        if not session:
            raise ClassSetError("a drawing needs its session tag")
        if verdict is not None and verdict not in VERDICTS:
            raise ClassSetError(f"a verdict is one of {', '.join(VERDICTS)}, not {verdict!r}")
        image = as_stored_image(image28)
        if int(image.max()) == 0:
            raise ClassSetError("This drawing is blank: draw a digit first.")
        digest = hashlib.sha256(image.tobytes()).hexdigest()
        now = time.time() if now is None else now
        try:
            with self._writing() as (con, written):
                set_id = self._current_set(con, written)
                self._check_sends(con, session, now, person)
                if con.execute(
                    sa.select(drawings.c.id).where(
                        drawings.c.set_id == set_id, drawings.c.digest == digest
                    )
                ).first():
                    raise _duplicate()
                drawing_id = con.execute(
                    sa.insert(drawings).values(
                        set_id=set_id,
                        created_at=now,
                        session=session,
                        label=int(label),
                        predicted=None if predicted is None else int(predicted),
                        confidence=None if confidence is None else float(confidence),
                        model=model,
                        digest=digest,
                        image=image.tobytes(),
                        canvas_png=canvas_png,
                        hidden=0,
                        verdict=verdict,
                    )
                ).inserted_primary_key
                assert drawing_id is not None
                row = con.execute(sa.select(drawings).where(drawings.c.id == drawing_id[0])).one()
                record_event(con, SEND, student_subject(session), now)
                if person is not None and person != student_subject(session):
                    record_event(con, SEND_PERSON, person, now)
                self._write_drawing_files(row._mapping, written)
                self._bump(con)
        except sa.exc.IntegrityError:  # the same drawing sent twice at the same moment
            raise _duplicate() from None
        drawing = _row_to_drawing(row._mapping)
        assert drawing is not None
        return drawing

    def _check_sends(
        self, con: Connection, session: str, now: float, person: str | None = None
    ) -> None:
        """Refuse a send past the student's budget (SENDS_PER_MINUTE per seat), or past
        the class's cap. The cap binds people who already sent their own share: a person
        (`person`, their address group) with fewer than SENDS_PER_MINUTE sends in the
        minute may send even when the class is at the cap, so ten cookies from one
        laptop spending the cap lock nobody else out. Counted from the limit events of
        sends that were stored, whoever took them back since."""
        mine, oldest = count_recent(con, SEND, student_subject(session), now)
        if mine >= SENDS_PER_MINUTE:
            wait = 60 - (now - (oldest or now))
            raise TooManySendsError(too_many("drawings sent", SENDS_PER_MINUTE, wait))
        if person is not None and person != student_subject(session):
            theirs, _ = count_recent(con, SEND_PERSON, person, now)
            if theirs < SENDS_PER_MINUTE:
                return  # within one person's share: the cap does not bind them
        cap = self._sends_cap(con)
        everyone, oldest = count_recent(con, SEND, None, now)
        if everyone >= cap:
            wait = max(1, round(60 - (now - (oldest or now))))
            raise TooManySendsError(
                f"The class has sent {everyone} drawings in the last minute, the most the "
                f"instructor allows ({cap} a minute). Try again in {wait} s."
            )

    # --- the class-wide cap -----------------------------------------------------------

    def _sends_cap(self, con: Connection) -> int:
        value = con.execute(
            sa.select(settings.c.value).where(settings.c.key == CLASS_SENDS_KEY)
        ).scalar_one_or_none()
        try:
            return int(value) if value else CLASS_SENDS_DEFAULT
        except ValueError:
            return CLASS_SENDS_DEFAULT

    def sends_cap(self) -> int:
        """How many drawings the whole class may send in a minute."""
        with self.store.read() as con:
            return self._sends_cap(con)

    def set_sends_cap(self, per_minute: int, *, role: Role) -> int:
        """The instructor changes the class-wide cap on sends per minute."""
        require(role, Action.SET_CLASS_LIMITS)
        low, high = CLASS_SENDS_RANGE
        if isinstance(per_minute, bool) or not isinstance(per_minute, int | np.integer):
            raise ClassSetError(f"the class's cap is a whole number, not {per_minute!r}")
        if not low <= int(per_minute) <= high:
            raise ClassSetError(
                f"the class's cap is {low:,} to {high:,} drawings a minute, not {per_minute:,}"
            )
        self.store.set_setting(CLASS_SENDS_KEY, str(int(per_minute)))
        return int(per_minute)

    def sent_last_minute(self, now: float | None = None) -> int:
        """Drawings the whole class sent in the last minute (what the cap counts)."""
        with self.store.read() as con:
            n, _ = count_recent(con, SEND, None, time.time() if now is None else now)
        return n

    def take_back(self, session: str, now: float | None = None) -> int:
        """Delete this student's newest drawing in the current set (only their own);
        returns its id. At most TAKE_BACKS_PER_MINUTE."""
        now = time.time() if now is None else now
        with self._writing() as (con, written):
            n, oldest = count_recent(con, TAKE_BACK, student_subject(session), now)
            if n >= TAKE_BACKS_PER_MINUTE:
                wait = 60 - (now - (oldest or now))
                raise TooManyTakeBacksError(too_many("take-backs", TAKE_BACKS_PER_MINUTE, wait))
            set_id = self._current_set(con, written)
            drawing_id = con.execute(
                sa.select(drawings.c.id)
                .where(drawings.c.set_id == set_id, drawings.c.session == session)
                .order_by(drawings.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if drawing_id is None:
                raise ClassSetError("You have no drawing in the class set to take back.")
            con.execute(sa.delete(drawings).where(drawings.c.id == drawing_id))
            record_event(con, TAKE_BACK, student_subject(session), now)
            self._bump(con)
        self._remove_drawing_files(set_id, drawing_id)
        return int(drawing_id)

    # --- the instructor's tools --------------------------------------------------------

    def set_hidden(self, drawing_id: int, hidden: bool, *, role: Role) -> None:
        require(role, Action.MANAGE_CLASS_SET)
        with self._writing() as (con, _):
            changed = con.execute(
                sa.update(drawings)
                .where(drawings.c.id == int(drawing_id))
                .values(hidden=int(hidden))
            ).rowcount
            if changed == 0:
                raise ClassSetError(f"no drawing with id {drawing_id}")
            row = con.execute(sa.select(drawings).where(drawings.c.id == int(drawing_id))).one()
            self._bump(con)
            # Last, so that a failure before leaves the file as it was.
            self._write_drawing_files(row._mapping)

    def delete(self, drawing_id: int, *, role: Role) -> None:
        require(role, Action.MANAGE_CLASS_SET)
        with self._writing() as (con, _):
            set_id = con.execute(
                sa.select(drawings.c.set_id).where(drawings.c.id == int(drawing_id))
            ).scalar_one_or_none()
            if set_id is None:
                raise ClassSetError(f"no drawing with id {drawing_id}")
            con.execute(sa.delete(drawings).where(drawings.c.id == int(drawing_id)))
            self._bump(con)
        self._remove_drawing_files(set_id, drawing_id)

    # --- reading -------------------------------------------------------------------------

    def get(self, drawing_id: int) -> Drawing:
        with self.store.read() as con:
            row = con.execute(sa.select(drawings).where(drawings.c.id == int(drawing_id))).first()
        drawing = _row_to_drawing(row._mapping) if row is not None else None
        if drawing is None:
            raise ClassSetError(f"no readable drawing with id {drawing_id}")
        return drawing

    def newest(
        self,
        limit: int = 60,
        *,
        set_id: int | None = None,
        label: int | None = None,
        outcome: str = "all",
        include_hidden: bool = False,
    ) -> list[Drawing]:
        """The wall: the newest drawings of a set (default: the current one), filtered."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        query = sa.select(drawings).where(drawings.c.set_id == self._reading_set(set_id))
        if not include_hidden:
            query = query.where(drawings.c.hidden == 0)
        if label is not None:
            query = query.where(drawings.c.label == int(label))
        counted = sa.or_(drawings.c.verdict.is_(None), drawings.c.verdict != NOT_A_DIGIT)
        if outcome == "right":
            query = query.where(drawings.c.predicted == drawings.c.label, counted)
        elif outcome == "wrong":
            query = query.where(
                sa.or_(drawings.c.predicted.is_(None), drawings.c.predicted != drawings.c.label),
                counted,
            )
        elif outcome == NOT_A_DIGIT:
            query = query.where(drawings.c.verdict == NOT_A_DIGIT)
        with self.store.read() as con:
            rows = con.execute(query.order_by(drawings.c.id.desc()).limit(int(limit))).fetchall()
        found = (_row_to_drawing(r._mapping) for r in rows)
        return [d for d in found if d is not None]  # an unreadable row is left out

    def count(self, set_id: int | None = None) -> int:
        """Visible drawings in a set (default: the current one), without reading images."""
        chosen = self._reading_set(set_id)
        with self.store.read() as con:
            return int(
                con.execute(
                    sa.select(sa.func.count())
                    .select_from(drawings)
                    .where(drawings.c.set_id == chosen, drawings.c.hidden == 0)
                ).scalar_one()
            )

    def snapshot(self, set_id: int | None = None) -> Snapshot:
        """Every visible drawing of a set as arrays: what evaluation, export and
        fine-tuning use, so a set that changes meanwhile cannot change their input. A row
        whose image is unreadable is skipped and counted, never fatal."""
        chosen = self._reading_set(set_id)
        with self.store.read() as con:  # one consistent read of rows and version
            version = con.execute(
                sa.select(settings.c.value).where(settings.c.key == _VERSION_KEY)
            ).scalar_one_or_none()
            rows = con.execute(
                sa.select(
                    drawings.c.id,
                    drawings.c.label,
                    drawings.c.session,
                    drawings.c.image,
                    drawings.c.verdict,
                )
                .where(drawings.c.set_id == chosen, drawings.c.hidden == 0)
                .order_by(drawings.c.id)
            ).fetchall()
        ids, images, labels, sessions, verdicts, skipped = [], [], [], [], [], 0
        for row in rows:
            image = np.frombuffer(row.image, dtype=np.uint8)
            if image.size != IMAGE_SIZE * IMAGE_SIZE or not 0 <= row.label < NUM_CLASSES:
                skipped += 1
                continue
            ids.append(row.id)
            images.append(image.reshape(IMAGE_SIZE, IMAGE_SIZE))
            labels.append(row.label)
            sessions.append(row.session)
            verdicts.append(row.verdict or "")
        return Snapshot(
            set_id=chosen,
            version=int(version) if version else 0,
            ids=np.array(ids, dtype=np.int64),
            images=np.stack(images) if images else np.zeros((0, 28, 28), np.uint8),
            labels=np.array(labels, dtype=np.int64),
            sessions=np.array(sessions, dtype=str),
            skipped=skipped,
            verdicts=np.array(verdicts, dtype=object),
        )

    def export_npz(self, set_id: int | None = None) -> bytes:
        """The set as an MNIST-shaped .npz: `x` uint8 (N, 28, 28), `y` uint8 (N,)."""
        snap = self.snapshot(set_id)
        out = io.BytesIO()
        np.savez_compressed(out, x=snap.images, y=snap.labels.astype(np.uint8))
        return out.getvalue()


SEND, TAKE_BACK = "send", "take_back"  # limit events' kinds
SEND_PERSON = "send_person"  # a send, counted on the sender's address group too
OUTCOMES = ("all", "right", "wrong", NOT_A_DIGIT)  # the wall's filter

_CURRENT_SET = (
    sa.select(class_sets.c.id)
    .where(class_sets.c.archived_at.is_(None))
    .order_by(class_sets.c.id.desc())
    .limit(1)
)


def _duplicate() -> DuplicateDrawingError:
    return DuplicateDrawingError("This exact drawing is already in the class set: draw a new one.")


def _row_to_drawing(row: Any) -> Drawing | None:
    """None for a row whose image bytes are not a 28x28 picture (a damaged row)."""
    if len(row["image"]) != IMAGE_SIZE * IMAGE_SIZE:
        return None
    return Drawing(
        id=row["id"],
        set_id=row["set_id"],
        created_at=row["created_at"],
        session=row["session"],
        label=row["label"],
        predicted=row["predicted"],
        confidence=row["confidence"],
        model=row["model"],
        image=np.frombuffer(row["image"], dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE),
        canvas_png=row["canvas_png"],
        hidden=bool(row["hidden"]),
        verdict=row.get("verdict"),
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_drawing_file(path: Path) -> dict[str, Any] | None:
    """A drawing's row from its record file (and its PNG beside it); None when the file
    is unreadable, incomplete or its image is not a 28x28."""
    record = _read_json(path)
    try:
        assert record is not None
        image = base64.b64decode(record["image"], validate=True)
        if len(image) != IMAGE_SIZE * IMAGE_SIZE or not 0 <= int(record["label"]) < NUM_CLASSES:
            return None
        png = None
        if record.get("canvas_png"):
            try:
                png = (path.parent / f"{path.stem}.png").read_bytes()
            except OSError:
                png = None  # the wall shows the 28x28 instead
        return {
            "id": int(record["id"]),
            "set_id": int(record["set_id"]),
            "created_at": float(record["created_at"]),
            "session": str(record["session"]),
            "label": int(record["label"]),
            "predicted": None if record["predicted"] is None else int(record["predicted"]),
            "confidence": None if record["confidence"] is None else float(record["confidence"]),
            "model": record["model"],
            "digest": str(record["digest"]),
            "image": image,
            "canvas_png": png,
            "hidden": int(record["hidden"]),
            "verdict": record.get("verdict") if record.get("verdict") in VERDICTS else None,
        }
    except (AssertionError, KeyError, TypeError, ValueError):
        return None
