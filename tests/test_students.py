"""A student's identity without accounts, and limits that follow it (core, no pages):
the signed cookie every server accepts, nickname rules and moderation (a student session
refused), every per-student limit surviving a reload (the same identity, new objects),
the class-wide cap on sends, and wrong instructor codes counted per client address."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_demo import classroom, students
from mnist_demo.class_set import (
    SENDS_PER_MINUTE,
    TAKE_BACKS_PER_MINUTE,
    ClassSet,
    ClassSetError,
    TooManySendsError,
    TooManyTakeBacksError,
)
from mnist_demo.classroom import (
    CodeError,
    Limits,
    PermissionDeniedError,
    RateLimitedError,
    Role,
)
from mnist_demo.store import Store, limit_events
from mnist_demo.students import NicknameError


@pytest.fixture
def db(tmp_path):
    return tmp_path / "runs.sqlite"


@pytest.fixture
def store(db) -> Store:
    return Store(db)


def replica(db) -> Store:
    """Another app server on the same database: its own Store, nothing shared in memory."""
    return Store(db)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def digit(seed: int) -> np.ndarray:
    image = np.zeros((28, 28), np.float32)
    image[6:22, 10:18] = np.random.default_rng(seed).random((16, 8), dtype=np.float32)
    return image


# --- the signed identity ---------------------------------------------------------------


def test_a_cookie_signed_by_one_server_is_accepted_by_another(db, store):
    tag = students.new_tag()
    cookie = students.cookie_value(store, tag)
    assert students.verify_cookie(replica(db), cookie) == tag
    assert replica(db).setting(students.SECRET_KEY) == store.setting(students.SECRET_KEY)


@pytest.mark.parametrize(
    "forge",
    [
        lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),  # signature changed
        lambda c: "0" * 16 + c[16:],  # another student's tag, this signature
        lambda c: c.split(".")[0],  # no signature
        lambda c: "",
        lambda c: c + "." + c,
    ],
    ids=["signature", "tag", "unsigned", "empty", "garbage"],
)
def test_a_forged_or_damaged_cookie_is_refused(store, forge):
    cookie = students.cookie_value(store, students.new_tag())
    assert students.verify_cookie(store, forge(cookie)) is None


def test_a_cookie_from_another_class_is_refused(tmp_path, store):
    other = Store(tmp_path / "other.sqlite")
    assert students.verify_cookie(store, students.cookie_value(other, students.new_tag())) is None


def test_a_seat_is_made_once_on_its_first_action_and_named_by_its_tag(store):
    tag = "3f9a0c11d2e4b567"
    students.seen(store, tag, now=4.0)  # a visit alone makes no seat
    assert students.list_students(store) == []
    first = students.take_seat(store, tag, "10.0.0.7", now=5.0)
    again = students.take_seat(store, tag, "10.0.0.8", now=9.0)
    assert first == again and first.created_at == 5.0 and first.network == "10.0.0.7"
    assert len(first.seat_code) == students.SEAT_CODE_LENGTH
    assert first.display_name == "Student 3f9a" == students.display_name(store, tag)
    students.seen(store, tag, now=5.0 + students.LAST_SEEN_EVERY_S + 1)
    assert students.get(store, tag).last_seen == 5.0 + students.LAST_SEEN_EVERY_S + 1


# --- nicknames -------------------------------------------------------------------------


def test_a_student_picks_a_nickname_and_the_class_sees_it(store):
    tag = students.new_tag()
    me = students.set_nickname(store, tag, "  Ada   L_9-x ")
    assert me.nickname == "Ada L_9-x" and me.display_name == "Ada L_9-x"
    assert students.set_nickname(store, tag, "Zoë").nickname == "Zoë"  # a change; letters
    assert [s.display_name for s in students.list_students(store)] == ["Zoë"]


@pytest.mark.parametrize(
    ("nickname", "message"),
    [
        ("", "cannot be empty"),
        ("   ", "cannot be empty"),
        ("x" * 21, "too long: at most 20 characters \\(it has 21\\)"),
        ("Bob!", "letters, digits, spaces, - and _ only, not '!'"),
        ("<script>", "not '<' '>'"),
        ("a.b", "not '.'"),
        ("Student 3f9a", "looks like a student without a nickname"),
    ],
    ids=["empty", "spaces", "too-long", "bang", "markup", "dot", "default-name"],
)
def test_a_bad_nickname_is_refused_with_what_is_wrong(store, nickname, message):
    tag = students.new_tag()
    with pytest.raises(NicknameError, match=message):
        students.set_nickname(store, tag, nickname)
    found = students.get(store, tag)
    assert found is None or found.nickname is None


def test_twenty_characters_is_enough(store):
    assert students.set_nickname(store, students.new_tag(), "x" * 20).nickname == "x" * 20


def test_a_nickname_is_unique_in_the_class_whatever_the_case(db, store):
    students.set_nickname(store, "a" * 16, "Ada")
    for taken in ("Ada", "ADA", "ada", " ada "):
        with pytest.raises(NicknameError, match="is taken in this class"):
            students.set_nickname(replica(db), "b" * 16, taken)
    students.set_nickname(store, "c" * 16, "Émile")
    with pytest.raises(NicknameError, match="is taken"):  # beyond ASCII too
        students.set_nickname(store, "b" * 16, "émile")
    students.set_nickname(store, "a" * 16, "ADA")  # one's own name, re-cased: fine
    refused = students.get(store, "b" * 16)
    assert refused is None or refused.nickname is None


def test_the_instructor_renames_and_hides_a_student_session_is_refused(store):
    tag = "d" * 16
    students.set_nickname(store, tag, "rude word")
    for call in (
        lambda role: students.rename(store, tag, "Dana", role=role),
        lambda role: students.set_hidden(store, tag, True, role=role),
    ):
        with pytest.raises(PermissionDeniedError, match="Only the instructor can rename or hide"):
            call(Role.STUDENT)
    assert students.get(store, tag).display_name == "rude word"

    assert students.set_hidden(store, tag, True, role=Role.INSTRUCTOR).display_name == (
        "Student dddd"
    )
    with pytest.raises(NicknameError, match="hidden your nickname"):
        students.set_nickname(store, tag, "ruder word")  # no way around moderation
    renamed = students.rename(store, tag, "Dana", role=Role.INSTRUCTOR)
    assert renamed.nickname == "Dana" and renamed.display_name == "Student dddd"  # still hidden
    assert students.set_hidden(store, tag, False, role=Role.INSTRUCTOR).display_name == "Dana"
    students.set_nickname(store, "e" * 16, "Eve")
    with pytest.raises(NicknameError, match="taken"):  # the instructor follows the rules too
        students.rename(store, tag, "eve", role=Role.INSTRUCTOR)
    with pytest.raises(students.UnknownStudentError):
        students.rename(store, "f" * 16, "Fay", role=Role.INSTRUCTOR)


# --- limits that follow the student ----------------------------------------------------


@pytest.mark.parametrize("kind", list(classroom.STUDENT_LIMITS))
def test_every_limit_survives_a_reload(db, kind):
    """A reload is a new session (new objects) with the same signed identity; another
    app server is a new process on the same store. Neither resets a budget."""
    clock = Clock()
    what, limit = classroom.STUDENT_LIMITS[kind]
    me = classroom.student_subject("a" * 16)
    for i in range(limit):
        Limits(replica(db) if i % 2 else Store(db), clock=clock).take(kind, me)
        clock.now += 0.1
    after_reload = Limits(replica(db), clock=clock)
    with pytest.raises(RateLimitedError, match=f"Too many {what}: at most {limit} per minute"):
        after_reload.take(kind, me)
    after_reload.take(kind, classroom.student_subject("b" * 16))  # another student is free
    clock.now += 60
    after_reload.take(kind, me)


def test_the_wait_counts_from_the_oldest_event_and_refusals_do_not_count(store):
    clock = Clock()
    limits = Limits(store, clock=clock)
    me = classroom.student_subject("a" * 16)
    for _ in range(5):
        limits.take("code", me)
        clock.now += 2
    for waited in range(1, 6):
        with pytest.raises(RateLimitedError, match=rf"Try again in {50 - waited + 1} s"):
            limits.take("code", me)
        clock.now += 1
    clock.now += 46  # a minute after the first
    assert limits.remaining("code", me) == 1


def test_old_limit_events_are_pruned(store):
    clock = Clock()
    limits = Limits(store, clock=clock)
    for i in range(5):
        limits.take("upload", classroom.student_subject(f"{i:016x}"))
    clock.now += classroom.PRUNE_AFTER_S + classroom.PRUNE_EVERY_S + 1
    limits.take("upload", classroom.student_subject("f" * 16))
    with store.read() as con:
        assert con.execute(limit_events.select()).fetchall().__len__() == 1


def test_sends_follow_the_student_across_a_reload_and_take_backs(db):
    me = "a" * 16
    for i in range(SENDS_PER_MINUTE):
        ClassSet(Store(db)).add(digit(i), i % 10, session=me, now=1000.0 + i)
    taken = ClassSet(replica(db))  # a reload, or the other replica
    taken.take_back(me, now=1013.0)  # taking one back frees no send
    with pytest.raises(TooManySendsError, match="Too many drawings sent: at most 12 per minute"):
        taken.add(digit(99), 1, session=me, now=1014.0)
    ClassSet(replica(db)).add(digit(100), 1, session="b" * 16, now=1014.0)
    ClassSet(replica(db)).add(digit(101), 1, session=me, now=1061.0)  # a minute on


def test_a_student_takes_back_their_own_last_drawing_after_a_reload(db):
    me, other = "a" * 16, "b" * 16
    first = ClassSet(Store(db)).add(digit(1), 1, session=me)
    ClassSet(Store(db)).add(digit(2), 2, session=other)
    mine = ClassSet(Store(db)).add(digit(3), 3, session=me)
    after_reload = ClassSet(replica(db))
    assert after_reload.take_back(me) == mine.id
    assert after_reload.take_back(me) == first.id
    with pytest.raises(ClassSetError, match="no drawing in the class set to take back"):
        after_reload.take_back(me)
    assert after_reload.count() == 1


def test_take_backs_are_limited_per_student_across_reloads(db):
    me = "a" * 16
    for i in range(TAKE_BACKS_PER_MINUTE + 1):
        ClassSet(Store(db)).add(digit(i), 1, session=me, now=1000.0 + 5 * i)  # 13 in 61 s
    for i in range(TAKE_BACKS_PER_MINUTE):
        ClassSet(replica(db)).take_back(me, now=1070.0 + i)
    with pytest.raises(TooManyTakeBacksError, match="Too many take-backs"):
        ClassSet(replica(db)).take_back(me, now=1085.0)
    assert ClassSet(Store(db)).take_back(me, now=1131.0)


def test_the_class_wide_cap_holds_every_student_and_the_instructor_sets_it(db):
    store = ClassSet(Store(db))
    assert store.sends_cap() == 120
    with pytest.raises(PermissionDeniedError, match="Only the instructor can change the class"):
        store.set_sends_cap(3, role=Role.STUDENT)
    assert store.sends_cap() == 120
    for bad, message in ((0, "1 to 10,000"), (10_001, "1 to 10,000"), ("5", "whole number")):
        with pytest.raises(ClassSetError, match=message):
            store.set_sends_cap(bad, role=Role.INSTRUCTOR)
    store.set_sends_cap(3, role=Role.INSTRUCTOR)
    assert ClassSet(replica(db)).sends_cap() == 3  # every server sees it
    for i in range(3):
        ClassSet(replica(db)).add(digit(i), 1, session=f"{i:016x}", now=1000.0 + i)
    assert store.sent_last_minute(now=1003.0) == 3
    with pytest.raises(TooManySendsError, match=r"The class has sent 3 .*\(3 a minute\)"):
        ClassSet(replica(db)).add(digit(9), 1, session="f" * 16, now=1010.0)
    store.add(digit(10), 1, session="f" * 16, now=1061.0)  # the first left the window


# --- instructor codes per client -----------------------------------------------------------


@pytest.fixture
def code(monkeypatch) -> str:
    monkeypatch.setenv(classroom.CODE_ENV, "right-code-1")
    return "right-code-1"


def test_wrong_codes_are_counted_per_client_whatever_identity_sends_them(db, code):
    """A browser that drops its cookie (a new identity per try, a private window per
    guess) is still slowed down: the address counts, across sessions and servers."""
    clock = Clock()
    what, limit = classroom.CLIENT_LIMITS["code_wrong"]
    for i in range(limit):
        with pytest.raises(CodeError, match="Wrong instructor code"):
            classroom.try_code(
                Limits(Store(db), clock=clock), f"guess{i}", student=f"{i:016x}", client="10.0.0.7"
            )
    fresh = Limits(replica(db), clock=clock)
    with pytest.raises(RateLimitedError, match=f"Too many {what}"):
        classroom.try_code(fresh, code, student="e" * 16, client="10.0.0.7")  # even right
    classroom.try_code(fresh, code, student="e" * 16, client="10.0.0.8")  # another address
    clock.now += 61
    classroom.try_code(fresh, code, student="d" * 16, client="10.0.0.7")


def test_code_attempts_are_counted_per_student_across_reloads(db, code):
    clock = Clock()
    me = "a" * 16
    for i in range(5):
        with pytest.raises(CodeError):
            classroom.try_code(
                Limits(Store(db), clock=clock), "nope", student=me, client=f"10.0.0.{i}"
            )
    with pytest.raises(RateLimitedError, match="Too many code attempts"):
        classroom.try_code(Limits(replica(db), clock=clock), code, student=me, client="10.0.1.1")


def test_a_right_code_does_not_count_against_the_address(db, code):
    clock = Clock()
    limits = Limits(Store(db), clock=clock)
    for i in range(classroom.CLIENT_LIMITS["code_wrong"][1] + 2):
        classroom.try_code(limits, code, student=f"{i:016x}", client="10.0.0.7")
