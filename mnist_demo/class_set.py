"""The class's own digits: drawings students send from the Draw page, kept as a dataset.

Each drawing is a row in the run registry's SQLite file (so every app server sharing
that file sees the same class set, and a restart loses nothing): the 28x28 the model
saw (784 bytes), a small PNG of the canvas, the digit the student *meant*, the model's
answer and confidence, the time and an anonymous per-session tag. A row and its images
are written in one transaction: a drawing is stored whole or not at all.

A class set is a run of lessons' drawings. "Start a new class set" archives the current
one (never deletes it). Every change bumps a version counter, which is what cached
evaluations of the class set are keyed on.

The rules are enforced here, where a drawing is stored: labels 0-9, no blank drawings,
no drawing twice in a set, at most SENDS_PER_MINUTE per session, only the sender takes a
drawing back, only the instructor hides, deletes, or starts a new set.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_demo import config
from mnist_demo.classroom import Action, Role, require
from mnist_demo.data import IMAGE_SIZE, NUM_CLASSES, to_unit_pixels
from mnist_demo.errors import DigitLabError

SENDS_PER_MINUTE = 12  # per session: a student draws a digit in a few seconds at best
HELD_OUT_BUCKETS = 5  # one session in five is held out of fine-tuning (see held_out)
_VERSION_KEY = "class_set_version"
_CURRENT_SET_SQL = "SELECT id FROM class_sets WHERE archived_at IS NULL ORDER BY id DESC LIMIT 1"

_SCHEMA = """
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


class ClassSetError(DigitLabError):
    """A drawing that cannot be stored or changed; the message says why."""


class DuplicateDrawingError(ClassSetError):
    pass


class TooManySendsError(ClassSetError):
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

    @property
    def correct(self) -> bool:
        return self.predicted == self.label


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

    @property
    def n(self) -> int:
        return len(self.labels)


def as_stored_image(image28: np.ndarray) -> np.ndarray:
    """A 28x28 image (float in [0, 1] as `to_mnist` returns, or uint8) as stored: uint8."""
    x = np.asarray(image28)
    if x.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ClassSetError(f"a drawing is one 28x28 image, got shape {x.shape}")
    return np.round(to_unit_pixels(x) * 255).astype(np.uint8)


def canvas_thumbnail(canvas: np.ndarray | None, side: int = 96) -> bytes | None:
    """The canvas as a small PNG (a few kB), for the wall; None without a canvas."""
    if canvas is None:
        return None
    from PIL import Image

    array = np.asarray(canvas)
    if array.dtype != np.uint8:
        array = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
    picture = Image.fromarray(array).convert("RGBA")
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
    """The class's drawings in the registry's SQLite file. Connections per call, so any
    thread (thirty students' sessions) may use one object."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else config.registry_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as con:
            # Write-ahead logging: thirty sends at once queue on one write lock, and
            # readers (the wall) no longer wait for writers. Measured: 30 simultaneous
            # adds 1.87 s -> 0.35 s; the wall's p95 1.63 -> 0.78 s (class_send.py). The
            # setting is kept in the file, for the run registry that shares it too.
            con.execute("PRAGMA journal_mode=WAL")
        with self._transaction() as con:
            con.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction (BEGIN IMMEDIATE: writers queue instead of
        failing), errors turned into messages a user can act on."""
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as con:
                con.row_factory = sqlite3.Row
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                except BaseException:
                    con.rollback()
                    raise
                con.commit()
        except sqlite3.IntegrityError:  # a refusal the caller words (a duplicate), not a
            raise  # failure of the file: keep it out of the DatabaseError clause below
        except sqlite3.OperationalError as e:
            if "full" in str(e).lower():
                raise ClassSetError(
                    f"the disk holding {self.path} is full: free some space; nothing was saved"
                ) from e
            raise ClassSetError(f"the class set in {self.path} failed: {e}") from e
        except sqlite3.DatabaseError as e:
            raise ClassSetError(f"the class set in {self.path} is unreadable: {e}") from e

    def salvage_from(self, old: Path) -> int:
        """Copy the class sets and drawings that an unreadable registry file (moved aside
        by recovery) still gives up; returns how many drawings came back (0 when the old
        file is too damaged: it is kept aside either way)."""
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as con:
                con.execute("ATTACH DATABASE ? AS old", (str(old),))
                with con:
                    con.execute("INSERT OR IGNORE INTO class_sets SELECT * FROM old.class_sets")
                    cur = con.execute("INSERT OR IGNORE INTO drawings SELECT * FROM old.drawings")
                    self._bump(con)
                return max(cur.rowcount, 0)
        except sqlite3.DatabaseError:
            return 0

    # --- the current set -------------------------------------------------------------

    def current_set(self) -> int:
        """The set drawings go to now. A plain read (the wall asks every second); only
        the very first call, with no set yet, takes the write lock to create one."""
        with closing(sqlite3.connect(self.path, timeout=30)) as con:
            row = con.execute(_CURRENT_SET_SQL).fetchone()
        if row:
            return int(row[0])
        with self._transaction() as con:
            return self._current_set(con)

    def _current_set(self, con: sqlite3.Connection) -> int:
        row = con.execute(_CURRENT_SET_SQL).fetchone()
        if row:
            return int(row["id"])
        cur = con.execute("INSERT INTO class_sets (created_at) VALUES (?)", (time.time(),))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def version(self) -> int:
        """Changes with every add, take-back, hide, delete and new set."""
        with closing(sqlite3.connect(self.path, timeout=30)) as con:
            row = con.execute("SELECT value FROM settings WHERE key = ?", (_VERSION_KEY,))
            found = row.fetchone()
        return int(found[0]) if found else 0

    @staticmethod
    def _bump(con: sqlite3.Connection) -> None:
        con.execute(
            "INSERT INTO settings (key, value) VALUES (?, '1') ON CONFLICT(key) DO UPDATE "
            "SET value = CAST(value AS INTEGER) + 1",
            (_VERSION_KEY,),
        )

    def start_new_set(self, *, role: Role) -> int:
        """Archive the current set (kept, browsable, exportable) and start an empty one."""
        require(role, Action.MANAGE_CLASS_SET)
        with self._transaction() as con:
            current = self._current_set(con)
            con.execute(
                "UPDATE class_sets SET archived_at = ? WHERE id = ?", (time.time(), current)
            )
            cur = con.execute("INSERT INTO class_sets (created_at) VALUES (?)", (time.time(),))
            self._bump(con)
            assert cur.lastrowid is not None
            return cur.lastrowid

    def sets(self) -> list[dict[str, float | int | None]]:
        """Every set, newest first, with its number of drawings."""
        with self._transaction() as con:
            self._current_set(con)
            rows = con.execute(
                "SELECT s.id, s.created_at, s.archived_at, count(d.id) AS n FROM class_sets s "
                "LEFT JOIN drawings d ON d.set_id = s.id GROUP BY s.id ORDER BY s.id DESC"
            ).fetchall()
        return [dict(r) for r in rows]

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
        now: float | None = None,
    ) -> Drawing:
        """Store one drawing in the current set, or refuse it with a ClassSetError."""
        if isinstance(label, bool) or not isinstance(label, int | np.integer):
            raise ClassSetError(f"the digit meant must be a whole number 0-9, not {label!r}")
        if not 0 <= int(label) < NUM_CLASSES:
            raise ClassSetError(f"the digit meant must be 0-9, not {label}")
        if not session:
            raise ClassSetError("a drawing needs its session tag")
        image = as_stored_image(image28)
        if int(image.max()) == 0:
            raise ClassSetError("This drawing is blank: draw a digit first.")
        digest = hashlib.sha256(image.tobytes()).hexdigest()
        now = time.time() if now is None else now
        with self._transaction() as con:
            set_id = self._current_set(con)
            recent = con.execute(
                "SELECT count(*) FROM drawings WHERE session = ? AND created_at > ?",
                (session, now - 60),
            ).fetchone()[0]
            if recent >= SENDS_PER_MINUTE:
                raise TooManySendsError(
                    f"Too many drawings sent: at most {SENDS_PER_MINUTE} a minute. "
                    "Wait a moment and send again."
                )
            try:
                cur = con.execute(
                    "INSERT INTO drawings (set_id, created_at, session, label, predicted, "
                    "confidence, model, digest, image, canvas_png) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        set_id,
                        now,
                        session,
                        int(label),
                        None if predicted is None else int(predicted),
                        None if confidence is None else float(confidence),
                        model,
                        digest,
                        image.tobytes(),
                        canvas_png,
                    ),
                )
            except sqlite3.IntegrityError:
                raise DuplicateDrawingError(
                    "This exact drawing is already in the class set: draw a new one."
                ) from None
            self._bump(con)
            assert cur.lastrowid is not None
            drawing_id = cur.lastrowid
        return self.get(drawing_id)

    def take_back(self, session: str) -> int:
        """Delete this session's newest drawing in the current set (only its own); returns
        its id."""
        with self._transaction() as con:
            set_id = self._current_set(con)
            row = con.execute(
                "SELECT * FROM drawings WHERE set_id = ? AND session = ? ORDER BY id DESC LIMIT 1",
                (set_id, session),
            ).fetchone()
            if row is None:
                raise ClassSetError("You have no drawing in the class set to take back.")
            con.execute("DELETE FROM drawings WHERE id = ?", (row["id"],))
            self._bump(con)
        return row["id"]

    # --- the instructor's tools --------------------------------------------------------

    def set_hidden(self, drawing_id: int, hidden: bool, *, role: Role) -> None:
        require(role, Action.MANAGE_CLASS_SET)
        with self._transaction() as con:
            cur = con.execute(
                "UPDATE drawings SET hidden = ? WHERE id = ?", (int(hidden), int(drawing_id))
            )
            if cur.rowcount == 0:
                raise ClassSetError(f"no drawing with id {drawing_id}")
            self._bump(con)

    def delete(self, drawing_id: int, *, role: Role) -> None:
        require(role, Action.MANAGE_CLASS_SET)
        with self._transaction() as con:
            cur = con.execute("DELETE FROM drawings WHERE id = ?", (int(drawing_id),))
            if cur.rowcount == 0:
                raise ClassSetError(f"no drawing with id {drawing_id}")
            self._bump(con)

    # --- reading -------------------------------------------------------------------------

    def get(self, drawing_id: int) -> Drawing:
        with closing(sqlite3.connect(self.path, timeout=30)) as con:
            con.row_factory = sqlite3.Row
            row = con.execute("SELECT * FROM drawings WHERE id = ?", (int(drawing_id),)).fetchone()
        drawing = _row_to_drawing(row) if row is not None else None
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
        if outcome not in ("all", "right", "wrong"):
            raise ValueError(f"outcome must be all, right or wrong, not {outcome!r}")
        where, params = ["set_id = ?"], [set_id if set_id is not None else self.current_set()]
        if not include_hidden:
            where.append("hidden = 0")
        if label is not None:
            where.append("label = ?")
            params.append(int(label))
        if outcome == "right":
            where.append("predicted = label")
        elif outcome == "wrong":
            where.append("(predicted IS NULL OR predicted != label)")
        sql = f"SELECT * FROM drawings WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        with closing(sqlite3.connect(self.path, timeout=30)) as con:
            con.row_factory = sqlite3.Row
            rows = con.execute(sql, (*params, int(limit))).fetchall()
        drawings = (_row_to_drawing(r) for r in rows)
        return [d for d in drawings if d is not None]  # an unreadable row is left out

    def count(self, set_id: int | None = None) -> int:
        """Visible drawings in a set (default: the current one), without reading images."""
        chosen = set_id if set_id is not None else self.current_set()
        with closing(sqlite3.connect(self.path, timeout=30)) as con:
            row = con.execute(
                "SELECT count(*) FROM drawings WHERE set_id = ? AND hidden = 0", (chosen,)
            ).fetchone()
        return int(row[0])

    def snapshot(self, set_id: int | None = None) -> Snapshot:
        """Every visible drawing of a set as arrays: what evaluation, export and
        fine-tuning use, so a set that changes meanwhile cannot change their input. A row
        whose image is unreadable is skipped and counted, never fatal."""
        chosen = set_id if set_id is not None else self.current_set()
        with closing(sqlite3.connect(self.path, timeout=30)) as con:
            con.row_factory = sqlite3.Row
            con.execute("BEGIN")  # one consistent read of rows and version
            version_row = con.execute(
                "SELECT value FROM settings WHERE key = ?", (_VERSION_KEY,)
            ).fetchone()
            rows = con.execute(
                "SELECT id, label, session, image FROM drawings "
                "WHERE set_id = ? AND hidden = 0 ORDER BY id",
                (chosen,),
            ).fetchall()
        ids, images, labels, sessions, skipped = [], [], [], [], 0
        for row in rows:
            image = np.frombuffer(row["image"], dtype=np.uint8)
            if image.size != IMAGE_SIZE * IMAGE_SIZE or not 0 <= row["label"] < NUM_CLASSES:
                skipped += 1
                continue
            ids.append(row["id"])
            images.append(image.reshape(IMAGE_SIZE, IMAGE_SIZE))
            labels.append(row["label"])
            sessions.append(row["session"])
        return Snapshot(
            set_id=chosen,
            version=int(version_row[0]) if version_row else 0,
            ids=np.array(ids, dtype=np.int64),
            images=np.stack(images) if images else np.zeros((0, 28, 28), np.uint8),
            labels=np.array(labels, dtype=np.int64),
            sessions=np.array(sessions, dtype=str),
            skipped=skipped,
        )

    def export_npz(self, set_id: int | None = None) -> bytes:
        """The set as an MNIST-shaped .npz: `x` uint8 (N, 28, 28), `y` uint8 (N,)."""
        snap = self.snapshot(set_id)
        out = io.BytesIO()
        np.savez_compressed(out, x=snap.images, y=snap.labels.astype(np.uint8))
        return out.getvalue()


def _row_to_drawing(row: sqlite3.Row) -> Drawing | None:
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
    )
