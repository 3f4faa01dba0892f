"""A student's identity, without accounts.

Every browser gets a random tag, kept in a cookie signed with a secret that lives in the
store (a setting made once), so a refresh or a new tab is the same student, and every
app server sharing the store accepts every other's cookie. The tag is what the class set
keeps per drawing and what every per-student limit is counted on.

A student may pick a nickname (1-20 characters: letters, digits, spaces, - and _;
unique in the class whatever the case); without one, or while the instructor hides it,
they are "Student" and the first letters of their tag. The instructor renames and hides
nicknames (moderation); the check is here (`classroom.require`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass

import sqlalchemy as sa

from mnist_demo.classroom import Action, Role, require
from mnist_demo.errors import DigitLabError
from mnist_demo.store import Store, settings, students

COOKIE = "digit_lab_student"
COOKIE_MAX_AGE_S = 120 * 24 * 3600  # a term
SECRET_KEY = "student_cookie_secret"  # setting: the key every server signs cookies with
TAG_BYTES = 8  # 16 hex characters
SHORT_TAG = 4  # "Student 3f9a"
MAX_NICKNAME = 20
_SIGNATURE_HEX = 32
_OTHER_CHARACTERS = " -_"
_DEFAULT_NAME = re.compile(r"student[ _-]*[0-9a-f]{4}", re.IGNORECASE)


class NicknameError(DigitLabError):
    """A nickname that is empty, too long, has other characters or is taken."""


class UnknownStudentError(DigitLabError):
    pass


@dataclass(frozen=True)
class Student:
    id: str
    nickname: str | None
    hidden: bool
    created_at: float

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
    return Student(m["id"], m["nickname"], bool(m["hidden"]), m["created_at"])


def get(store: Store, student_id: str) -> Student | None:
    with store.read() as con:
        row = con.execute(sa.select(students).where(students.c.id == student_id)).first()
    return _row(row) if row is not None else None


def ensure(store: Store, student_id: str, now: float | None = None) -> Student:
    """The student with this tag, made (without a nickname) on first sight."""
    found = get(store, student_id)
    if found is not None:
        return found
    with store.write(lock=students) as con:
        row = con.execute(sa.select(students).where(students.c.id == student_id)).first()
        if row is None:
            con.execute(
                sa.insert(students).values(
                    id=student_id, nickname=None, hidden=0, created_at=now or time.time()
                )
            )
            row = con.execute(sa.select(students).where(students.c.id == student_id)).one()
    return _row(row)


def display_name(store: Store, student_id: str) -> str:
    found = get(store, student_id)
    return found.display_name if found is not None else default_name(student_id)


def list_students(store: Store) -> list[Student]:
    """Every student the class has seen, nicknamed ones first (by name), then by age."""
    with store.read() as con:
        rows = con.execute(sa.select(students).order_by(students.c.created_at)).fetchall()
    found = [_row(r) for r in rows]
    return sorted(found, key=lambda s: (s.nickname is None, (s.nickname or "").casefold()))


def clean_nickname(nickname: str) -> str:
    """The nickname as stored (NFC, spaces trimmed and single), or NicknameError."""
    text = unicodedata.normalize("NFC", str(nickname or ""))
    text = re.sub(r"\s+", " ", text).strip()
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
    if _DEFAULT_NAME.fullmatch(text):
        raise NicknameError(f"“{text}” looks like a student without a nickname: choose another.")
    return text


def _set_nickname(store: Store, student_id: str, nickname: str, *, own: bool) -> Student:
    text = clean_nickname(nickname)
    with store.write(lock=students) as con:
        row = con.execute(sa.select(students).where(students.c.id == student_id)).first()
        if row is None:
            if not own:
                raise UnknownStudentError(f"no student {default_name(student_id)} in this class")
            con.execute(
                sa.insert(students).values(
                    id=student_id, nickname=None, hidden=0, created_at=time.time()
                )
            )
        elif own and row._mapping["hidden"]:
            raise NicknameError(
                "The instructor has hidden your nickname; ask them if you want a new one."
            )
        taken = con.execute(
            sa.select(students.c.id).where(
                sa.func.lower(students.c.nickname) == text.lower(), students.c.id != student_id
            )
        ).first()
        if taken is None:  # lower() in SQLite folds ASCII only: compare the rest here
            folded = text.casefold()
            for other_id, other in con.execute(
                sa.select(students.c.id, students.c.nickname).where(
                    students.c.nickname.is_not(None), students.c.id != student_id
                )
            ):
                if other.casefold() == folded:
                    taken = other_id
                    break
        if taken is not None:
            raise NicknameError(f"“{text}” is taken in this class: choose another.")
        con.execute(sa.update(students).where(students.c.id == student_id).values(nickname=text))
        row = con.execute(sa.select(students).where(students.c.id == student_id)).one()
    return _row(row)


def set_nickname(store: Store, student_id: str, nickname: str) -> Student:
    """A student picks (or changes) their own nickname; NicknameError says what is wrong."""
    return _set_nickname(store, student_id, nickname, own=True)


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
