"""A student's identity and seat, without accounts.

Every browser gets a random tag, kept in a cookie signed with a secret that lives in the
store (a setting made once), so a refresh or a new tab is the same student, and every
app server sharing the store accepts every other's cookie. The tag is what the class set
keeps per drawing and what every per-student limit is counted on.

A tag becomes a **seat** (a row in `students`) only when its browser first does
something that needs one — picks a nickname, submits an experiment, sends a drawing —
never on a visit: a class's roster is its people, not every page load. A seat records
the address group it was made from (classroom.address_group), when it was last seen, and
a short **seat code** shown in its sidebar: a student who lost their cookie (another
browser, a cleared history) types it to get the same seat back.

A nickname (1-20 characters: letters, digits, spaces, - and _) is NFKC-normalised and
refused, saying why, when people could not tell it from another in the class (Unicode's
confusable skeletons, UTS #39, whatever the case: "Аda" with a Cyrillic А beside "Ada"),
when invisible or filler characters make it blank-looking, or when it claims a role
("Instructor", "Teacher", "Admin", … in any look-alike spelling). Without one, or while
the instructor hides it, a student is "Student" and the first letters of their tag. The
instructor renames and hides nicknames and removes seats (moderation); the check is here
(`classroom.require`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from mnist_demo import names
from mnist_demo.classroom import Action, Role, require
from mnist_demo.errors import DigitLabError
from mnist_demo.store import Store, runs, settings, students

if TYPE_CHECKING:
    from mnist_demo.runs import RunRegistry

COOKIE = "digit_lab_student"
COOKIE_MAX_AGE_S = 120 * 24 * 3600  # a term
SECRET_KEY = "student_cookie_secret"  # setting: the key every server signs cookies with
TAG_BYTES = 8  # 16 hex characters
SHORT_TAG = 4  # "Student 3f9a"
MAX_NICKNAME = 20
_SIGNATURE_HEX = 32
_OTHER_CHARACTERS = " -_"
SEAT_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off a screen
SEAT_CODE_LENGTH = 8  # 31^8 ≈ 8.5e11: out of reach at 10 tries a minute per address
LAST_SEEN_EVERY_S = 60.0  # a seat's "last seen" is written at most this often
_DEFAULT_NAME = re.compile(r"student[ _-]*[0-9a-f]{4}", re.IGNORECASE)


class NicknameError(DigitLabError):
    """A nickname that is empty, too long, has other characters or is taken."""


class UnknownStudentError(DigitLabError):
    pass


class SeatCodeError(DigitLabError):
    """A seat code that is malformed or belongs to no seat."""


@dataclass(frozen=True)
class Student:
    id: str
    nickname: str | None
    hidden: bool
    created_at: float
    network: str | None = None  # the address group the seat was made from
    last_seen: float | None = None
    seat_code: str | None = None

    @property
    def default_name(self) -> str:
        return default_name(self.id)

    @property
    def display_name(self) -> str:
        """What the class sees: the nickname, or "Student <tag>" without one or while the
        instructor hides it."""
        if self.nickname and not self.hidden:
            return self.nickname
        return self.default_name


def default_name(student_id: str) -> str:
    return f"Student {student_id[:SHORT_TAG]}"


def new_tag() -> str:
    return secrets.token_hex(TAG_BYTES)


# --- the signed cookie ------------------------------------------------------------------


def secret(store: Store) -> bytes:
    """The key cookies are signed with: made once, by whichever server needs it first, in
    the store, so every server shares it (and a restart keeps every student)."""
    found = store.setting(SECRET_KEY)
    if found:
        return found.encode()
    with store.write(lock=settings) as con:  # two servers at once: the second finds the first's
        found = con.execute(
            sa.select(settings.c.value).where(settings.c.key == SECRET_KEY)
        ).scalar_one_or_none()
        if not found:
            found = secrets.token_urlsafe(32)
            store.set_setting(SECRET_KEY, found, con)
    return str(found).encode()


def _signature(key: bytes, tag: str) -> str:
    mac = hmac.new(key, f"digit-lab student {tag}".encode(), hashlib.sha256)
    return mac.hexdigest()[:_SIGNATURE_HEX]


def cookie_value(store: Store, tag: str) -> str:
    return f"{tag}.{_signature(secret(store), tag)}"


def verify_cookie(store: Store, value: str | None) -> str | None:
    """The tag in a cookie this class signed, else None (absent, forged, malformed)."""
    if not value or value.count(".") != 1 or len(value) > 100:
        return None
    tag, signature = value.split(".")
    if not re.fullmatch(r"[0-9a-f]{16}", tag):
        return None
    expected = _signature(secret(store), tag)
    return tag if hmac.compare_digest(signature.encode(), expected.encode()) else None


# --- the students table ---------------------------------------------------------------


def _row(row: sa.Row) -> Student:
    m = row._mapping
    return Student(
        m["id"],
        m["nickname"],
        bool(m["hidden"]),
        m["created_at"],
        m["network"],
        m["last_seen"],
        m["seat_code"],
    )


def get(store: Store, student_id: str) -> Student | None:
    with store.read() as con:
        row = con.execute(sa.select(students).where(students.c.id == student_id)).first()
    return _row(row) if row is not None else None


def new_seat_code() -> str:
    return "".join(secrets.choice(SEAT_CODE_ALPHABET) for _ in range(SEAT_CODE_LENGTH))


def format_seat_code(code: str) -> str:
    """As shown: two groups of four, easier to copy by hand ("K7QM-3XPD")."""
    return f"{code[:4]}-{code[4:]}"


def _insert_seat(con: sa.Connection, student_id: str, network: str | None, now: float) -> None:
    con.execute(
        sa.insert(students).values(
            id=student_id,
            nickname=None,
            hidden=0,
            created_at=now,
            network=network,
            last_seen=now,
            seat_code=new_seat_code(),
        )
    )


def take_seat(
    store: Store, student_id: str, network: str | None = None, now: float | None = None
) -> Student:
    """The seat of this tag, made on its first action that needs one (a nickname, an
    experiment, a send), with the address group it came from and its seat code."""
    found = get(store, student_id)
    if found is not None and found.seat_code:
        return found
    now = time.time() if now is None else now
    with store.write(lock=students) as con:
        row = con.execute(sa.select(students).where(students.c.id == student_id)).first()
        if row is None:
            _insert_seat(con, student_id, network, now)
        elif not row._mapping["seat_code"]:  # a seat made before seat codes existed
            con.execute(
                sa.update(students)
                .where(students.c.id == student_id)
                .values(seat_code=new_seat_code(), network=row._mapping["network"] or network)
            )
        row = con.execute(sa.select(students).where(students.c.id == student_id)).one()
    return _row(row)


def seen(store: Store, student_id: str, now: float | None = None) -> None:
    """A seat's browser is here (the roster's "last seen"). Writes only an existing
    seat's row, and only when the last write is older than LAST_SEEN_EVERY_S: a visit
    alone never makes a seat, and thirty polling pages do not write every second."""
    now = time.time() if now is None else now
    with store.write() as con:
        con.execute(
            sa.update(students)
            .where(
                students.c.id == student_id,
                sa.or_(
                    students.c.last_seen.is_(None),
                    students.c.last_seen < now - LAST_SEEN_EVERY_S,
                ),
            )
            .values(last_seen=now)
        )


def reclaim(store: Store, code: str) -> Student:
    """The seat a seat code belongs to (its browser then keeps that seat's cookie), or
    SeatCodeError. Guesses are limited per address by the caller (classroom.Limits,
    "seat_code")."""
    cleaned = re.sub(r"[\s-]", "", str(code or "")).upper()
    if len(cleaned) != SEAT_CODE_LENGTH or set(cleaned) - set(SEAT_CODE_ALPHABET):
        raise SeatCodeError(
            f"A seat code is {SEAT_CODE_LENGTH} letters and digits, like "
            f"{format_seat_code('K7QM3XPD')}: check it in your other browser's sidebar."
        )
    with store.read() as con:
        row = con.execute(sa.select(students).where(students.c.seat_code == cleaned)).first()
    if row is None:
        raise SeatCodeError("No seat in this class has that code: check it and try again.")
    return _row(row)


def remove_seat(registry: RunRegistry, student_id: str, *, role: Role) -> int:
    """Moderation: take a seat out of the class. Its queued experiment is cancelled (a
    running one asked to stop, keeping its last epoch), its nickname freed; its ended
    experiments stay on the leaderboard under its default name. Returns how many
    experiments were cancelled or stopped. Its browser becomes a visitor again: its next
    action makes it a new seat."""
    require(role, Action.MODERATE_STUDENTS)
    with registry.store.read() as con:
        waiting = con.execute(
            sa.select(runs.c.id).where(
                runs.c.owner == student_id, runs.c.status.in_(("queued", "running"))
            )
        ).fetchall()
    for (run_id,) in waiting:
        registry.stop(run_id)
    with registry.store.write(lock=students) as con:
        removed = con.execute(sa.delete(students).where(students.c.id == student_id)).rowcount
    if not removed:
        raise UnknownStudentError(f"no student {default_name(student_id)} in this class")
    return len(waiting)


def display_name(store: Store, student_id: str) -> str:
    found = get(store, student_id)
    return found.display_name if found is not None else default_name(student_id)


def list_students(store: Store) -> list[Student]:
    """Every seat in the class, nicknamed ones first (by name), then by age."""
    with store.read() as con:
        rows = con.execute(sa.select(students).order_by(students.c.created_at)).fetchall()
    found = [_row(r) for r in rows]
    return sorted(found, key=lambda s: (s.nickname is None, (s.nickname or "").casefold()))


def clean_nickname(nickname: str) -> str:
    """The nickname as stored (NFKC, spaces trimmed and single), or NicknameError saying
    what is wrong with it on its own (others in the class aside: see _set_nickname)."""
    text = unicodedata.normalize("NFKC", str(nickname or ""))
    text = re.sub(r"\s+", " ", text).strip()
    invisible = names.invisible_characters(text)
    if invisible:
        raise NicknameError(
            f"A nickname cannot hold invisible or blank characters ({', '.join(invisible)}): "
            "people could not see or tell it apart. Use letters or digits."
        )
    if not text:
        raise NicknameError(
            "A nickname cannot be empty: type 1 to 20 letters or digits (or keep the name "
            "you have)."
        )
    if len(text) > MAX_NICKNAME:
        raise NicknameError(
            f"That nickname is too long: at most {MAX_NICKNAME} characters (it has {len(text)})."
        )
    bad = sorted({c for c in text if not (c.isalpha() or c.isdecimal() or c in _OTHER_CHARACTERS)})
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        raise NicknameError(
            f"A nickname may have letters, digits, spaces, - and _ only, not {shown}."
        )
    if _DEFAULT_NAME.fullmatch(text) or _DEFAULT_NAME.fullmatch(names.skeleton(text)):
        raise NicknameError(f"“{text}” looks like a student without a nickname: choose another.")
    role_word = names.claimed_role(text)
    if role_word:
        raise NicknameError(
            f"“{text}” reads as “{role_word}”: a nickname cannot claim a role in the class. "
            "Choose another."
        )
    return text


def _set_nickname(
    store: Store, student_id: str, nickname: str, *, own: bool, network: str | None = None
) -> Student:
    text = clean_nickname(nickname)
    with store.write(lock=students) as con:
        row = con.execute(sa.select(students).where(students.c.id == student_id)).first()
        if row is None:
            if not own:
                raise UnknownStudentError(f"no student {default_name(student_id)} in this class")
            _insert_seat(con, student_id, network, time.time())
        elif own and row._mapping["hidden"]:
            raise NicknameError(
                "The instructor has hidden your nickname; ask them if you want a new one."
            )
        # Every other nickname, compared as people see them: the same skeleton (UTS #39)
        # whatever the case is the same name. A class holds tens of names: read them all.
        others = con.execute(
            sa.select(students.c.nickname).where(
                students.c.nickname.is_not(None), students.c.id != student_id
            )
        ).scalars()
        clash = names.confusable_with(text, others)
        if clash is not None:
            if clash.casefold() == text.casefold():
                raise NicknameError(f"“{text}” is taken in this class: choose another.")
            raise NicknameError(
                f"“{text}” looks the same as “{clash}”, already in this class: people could "
                "not tell you apart. Choose another."
            )
        con.execute(sa.update(students).where(students.c.id == student_id).values(nickname=text))
        row = con.execute(sa.select(students).where(students.c.id == student_id)).one()
    return _row(row)


def set_nickname(
    store: Store, student_id: str, nickname: str, network: str | None = None
) -> Student:
    """A student picks (or changes) their own nickname, taking a seat if they had none;
    NicknameError says what is wrong."""
    return _set_nickname(store, student_id, nickname, own=True, network=network)


def rename(store: Store, student_id: str, nickname: str, *, role: Role) -> Student:
    """Moderation: the instructor gives a student another nickname."""
    require(role, Action.MODERATE_STUDENTS)
    return _set_nickname(store, student_id, nickname, own=False)


def set_hidden(store: Store, student_id: str, hidden: bool, *, role: Role) -> Student:
    """Moderation: hide a nickname (the class sees "Student <tag>"; the student cannot
    pick another until it is shown again), or show it again."""
    require(role, Action.MODERATE_STUDENTS)
    with store.write(lock=students) as con:
        changed = con.execute(
            sa.update(students).where(students.c.id == student_id).values(hidden=int(hidden))
        ).rowcount
        if not changed:
            raise UnknownStudentError(f"no student {default_name(student_id)} in this class")
        row = con.execute(sa.select(students).where(students.c.id == student_id)).one()
    return _row(row)
