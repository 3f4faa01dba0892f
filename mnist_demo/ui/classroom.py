"""The session's role in the class: unlocking with the instructor code (from the link or
the sidebar), locking again, the student's identity (a signed cookie), seat and nickname,
the seat code that brings a seat back, the per-student limits, and who is connected.

The role lives in `st.session_state`, which only the server can write: a browser can
send widget values, not a role. Every action that changes what others see is checked
again in the core with the role passed from here (`classroom.require`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import suppress

import streamlit as st

from mnist_demo import classroom, students
from mnist_demo.classroom import Action, Limits, Role, locked_reason
from mnist_demo.errors import DigitLabError
from mnist_demo.store import Store, StoreError

ROLE_KEY = "classroom_role"
CODE_INPUT_KEY = "classroom_code_input"
CODE_ERROR_KEY = "classroom_code_error"
STUDENT_KEY = "classroom_student"  # the student's tag, from their signed cookie
STUDENT_COOKIE_KEY = "classroom_student_cookie"  # a new identity's cookie, pending
NICKNAME_INPUT_KEY = "classroom_nickname_input"
NICKNAME_MESSAGE_KEY = "classroom_nickname_message"
SEAT_CODE_INPUT_KEY = "classroom_seat_code_input"
SEAT_MESSAGE_KEY = "classroom_seat_message"
SEEN_KEY = "classroom_seen_at"  # when this session last wrote its seat's "last seen"
COOKIE_KEY = "classroom_cookie"  # "set" or "clear": pending for the browser


def role() -> Role:
    """This browser session's role: the instructor in solo mode or once unlocked."""
    if classroom.solo():
        return Role.INSTRUCTOR
    return Role(st.session_state.get(ROLE_KEY, Role.STUDENT))


def is_instructor() -> bool:
    return role() is Role.INSTRUCTOR


def _store() -> Store:
    from mnist_demo.ui.resources import class_store  # not at import: resources loads Keras

    return class_store().store


@st.cache_resource(show_spinner=False)
def _limits(url: str) -> Limits:
    """One per process and database: the counts are in the store, not in this object."""
    del url
    return Limits(_store())


def limits() -> Limits:
    return _limits(_store().url)


def student_id() -> str:
    """This browser's student identity: the tag in its signed cookie (students.py), so a
    reload, a new tab or another app server of the class is the same student. A browser
    without a valid cookie gets a new tag, and the cookie is written with the sidebar.
    Reading it writes nothing in the store: the tag becomes a seat on its first action
    that needs one (`seat`)."""
    found = st.session_state.get(STUDENT_KEY)
    if found:
        return str(found)
    tag = None
    try:
        store = _store()
        tag = students.verify_cookie(store, st.context.cookies.get(students.COOKIE))
        if tag is None:
            tag = students.new_tag()
            st.session_state[STUDENT_COOKIE_KEY] = students.cookie_value(store, tag)
    except DigitLabError:  # the store cannot say or keep it: an identity for this session
        tag = tag or students.new_tag()
    st.session_state[STUDENT_KEY] = tag
    return tag


def seat() -> students.Student:
    """This browser's seat, made now if it had none (for an action that needs one: a
    send; experiments.submit and the nickname form take theirs in the core)."""
    return students.take_seat(_store(), student_id(), network())


def person_subject() -> str:
    """What this browser's per-person budgets are counted on (its seat made now: a send
    needs one): classroom.person_subject."""
    me = seat()
    return classroom.person_subject(_store(), network(), me.id)


def _mark_seen() -> None:
    """The roster's "last seen": at most once a minute per session, and only for a
    browser that already has a seat."""
    now = time.time()
    if now - st.session_state.get(SEEN_KEY, 0.0) < students.LAST_SEEN_EVERY_S:
        return
    st.session_state[SEEN_KEY] = now
    with suppress(DigitLabError):
        students.seen(_store(), student_id(), now)


def session_tag() -> str:
    """The student's identity (`student_id`), as the class set and the experiments keep
    it: a student takes back their own drawing after a reload, and the held-out split
    is by person. No names."""
    return student_id()


def client_address() -> str | None:
    """Where this browser connects from: the socket's address, or what the trusted proxy
    (the lecture hall's nginx, MNIST_DEMO_TRUSTED_PROXY) says behind it; a header any
    browser can send is never believed from anyone else (classroom.client_address)."""
    try:
        socket_address = st.context.ip_address
        forwarded = st.context.headers.get("X-Forwarded-For")
    except Exception:  # no request behind this session (a test harness)
        return None
    return classroom.client_address(socket_address, forwarded)


def network() -> str:
    """The address group fair shares count this browser in (classroom.address_group)."""
    return classroom.address_group(client_address())


def limit(kind: str) -> None:
    """Count one costly request of `kind` (see classroom.STUDENT_LIMITS) against this
    student's budget, kept in the store on their identity; raises RateLimitedError past
    it. Instructors are free."""
    if is_instructor():
        return
    limits().take(kind, classroom.student_subject(student_id()))


def unlock(code: str) -> None:
    """Make this session the instructor's, or raise CodeError / RateLimitedError. Every
    try counts against the student (5 a minute, whichever tab or reload), and a wrong
    one against the client's address too (classroom.try_code)."""
    classroom.try_code(limits(), code, student=student_id(), client=network())
    _become(Role.INSTRUCTOR)
    st.session_state[COOKIE_KEY] = "set"  # remember this browser (role_panel writes it)


def lock() -> None:
    _become(Role.STUDENT)
    st.session_state[COOKIE_KEY] = "clear"


def _become(new_role: Role) -> None:
    st.session_state[ROLE_KEY] = new_role.value
    if new_role is Role.INSTRUCTOR:
        _instructor_sessions().add(_session_id())
    else:
        _instructor_sessions().discard(_session_id())


def restore_from_cookie() -> None:
    """A reload or a new tab is a new Streamlit session: an instructor's browser that
    kept the session token (not the code) stays unlocked."""
    student_id()  # every browser is a student first: its identity (a cookie, not a seat)
    _mark_seen()
    if ROLE_KEY in st.session_state or classroom.solo():
        return
    if classroom.valid_session_token(st.context.cookies.get(classroom.TOKEN_COOKIE)):
        _become(Role.INSTRUCTOR)


def _write_cookie(action: str) -> None:
    """Set or clear the token cookie in the browser."""
    if action == "set":
        _set_cookie(classroom.TOKEN_COOKIE, classroom.session_token(), classroom.TOKEN_MAX_AGE_S)
    else:
        _set_cookie(classroom.TOKEN_COOKIE, "", 0)


def _set_cookie(name: str, value: str, age: int) -> None:
    """A cookie written in the browser: a script with no visible output, sent once,
    right after the change (Streamlit has no API for setting cookies). `value` is made
    here (hex, URL-safe base64 and dots), never from what a browser sent."""
    st.html(
        f"<script>document.cookie = '{name}={value}; path=/; max-age={age}; "
        "SameSite=Strict';</script>",
        unsafe_allow_javascript=True,
    )


def consume_code_in_url() -> None:
    """The instructor link (`/?code=…`, or the code on any page's address): unlock with
    it, then take it out of the address bar so it never shows on the projector."""
    if classroom.CODE_QUERY_KEY not in st.query_params:
        return
    code = st.query_params.get(classroom.CODE_QUERY_KEY, "")
    del st.query_params[classroom.CODE_QUERY_KEY]
    if is_instructor():
        return
    try:
        unlock(code)
    except DigitLabError as e:
        st.session_state[CODE_ERROR_KEY] = str(e)


def locked_caption(action: Action) -> bool:
    """For a control only the instructor may use: True when this session may use it,
    else a caption that says why it is locked (and False, to disable the control)."""
    if is_instructor():
        return True
    st.caption(f":material/lock: {locked_reason(action)}")
    return False


# --- the sidebar panel ------------------------------------------------------------------


def _unlock_from_input() -> None:
    code = st.session_state.get(CODE_INPUT_KEY, "")
    st.session_state[CODE_INPUT_KEY] = ""  # the code never stays in the page
    try:
        unlock(code)
    except DigitLabError as e:
        st.session_state[CODE_ERROR_KEY] = str(e)
    else:
        st.session_state.pop(CODE_ERROR_KEY, None)


def _save_nickname() -> None:
    text = st.session_state.get(NICKNAME_INPUT_KEY, "")
    try:
        me = students.set_nickname(_store(), student_id(), text, network())
    except DigitLabError as e:
        st.session_state[NICKNAME_MESSAGE_KEY] = ("error", str(e))
    else:
        st.session_state[NICKNAME_MESSAGE_KEY] = (
            "success",
            f"The class sees you as {me.nickname}.",
        )


def _reclaim_seat() -> None:
    """A seat code typed in the sidebar: this browser takes that seat (its cookie is
    rewritten with the sidebar). Guesses are counted per address (10 a minute)."""
    code = st.session_state.get(SEAT_CODE_INPUT_KEY, "")
    st.session_state[SEAT_CODE_INPUT_KEY] = ""
    try:
        limits().take("seat_code", classroom.client_subject(network()))
        store = _store()
        found = students.reclaim(store, code)
    except DigitLabError as e:
        st.session_state[SEAT_MESSAGE_KEY] = ("error", str(e))
        return
    st.session_state[STUDENT_KEY] = found.id
    st.session_state[STUDENT_COOKIE_KEY] = students.cookie_value(store, found.id)
    st.session_state.pop(SEEN_KEY, None)
    st.session_state[SEAT_MESSAGE_KEY] = (
        "success",
        f"Welcome back, {found.display_name}: this browser has your seat again.",
    )


def seat_panel(me: students.Student | None) -> None:
    """The seat code (to come back from another browser), and the form that takes it."""
    if me is not None and me.seat_code:
        st.caption(
            f"Your seat code: **{students.format_seat_code(me.seat_code)}**. On another "
            "browser or device, type it below to get your seat back."
        )
    else:
        st.caption(
            "You have no seat yet: it is made when you pick a nickname, submit an "
            "experiment or send a drawing."
        )
    with st.form("classroom_seat_code", border=False, enter_to_submit=True):
        st.text_input(
            "Seat code",
            key=SEAT_CODE_INPUT_KEY,
            max_chars=20,
            placeholder="K7QM-3XPD",
            help="The code another browser of yours shows here: this browser becomes "
            "that seat (your experiments, drawings and nickname).",
        )
        st.form_submit_button("Get my seat back", on_click=_reclaim_seat)
    message = st.session_state.pop(SEAT_MESSAGE_KEY, None)
    if message:
        kind, text = message
        (st.error if kind == "error" else st.success)(text)


def nickname_panel() -> None:
    """The student's name in the class: their nickname, or "Student <tag>"; a form to
    pick one (optional); their seat code."""
    tag = student_id()
    me = None
    with suppress(StoreError):
        me = students.get(_store(), tag)
    name = me.display_name if me is not None else students.default_name(tag)
    # open with a message to read (its label changed with the name: a new, shut expander)
    answered = NICKNAME_MESSAGE_KEY in st.session_state or SEAT_MESSAGE_KEY in st.session_state
    with st.expander(f":material/badge: You are **{name}**", expanded=answered):
        if me is not None and me.hidden:
            st.caption("The instructor has hidden your nickname.")
        with st.form("classroom_nickname", border=False, enter_to_submit=True):
            st.text_input(
                "Nickname (optional)",
                key=NICKNAME_INPUT_KEY,
                max_chars=students.MAX_NICKNAME,
                placeholder=name,
                help="1–20 letters, digits, spaces, - and _; not like anyone's in the class, and "
                "no role words (Instructor, Teacher, …). What "
                "the class sees next to your experiments.",
            )
            st.form_submit_button("Save nickname", on_click=_save_nickname)
        message = st.session_state.pop(NICKNAME_MESSAGE_KEY, None)
        if message:
            kind, text = message
            (st.error if kind == "error" else st.success)(text)
        seat_panel(me)


def role_panel() -> None:
    """Who this browser is, and the way to change it."""
    pending = st.session_state.pop(COOKIE_KEY, None)
    if pending:
        _write_cookie(pending)
    student_cookie = st.session_state.pop(STUDENT_COOKIE_KEY, None)
    if student_cookie:
        _set_cookie(students.COOKIE, student_cookie, students.COOKIE_MAX_AGE_S)
    if classroom.solo():
        st.caption(":material/person: Solo mode: this browser has the instructor's controls.")
        return
    if is_instructor():
        left, right = st.columns([3, 2], vertical_alignment="center")
        left.markdown(":material/verified_user: **Instructor**")
        right.button("Lock", key="classroom_lock", on_click=lock, help="Back to student view")
        return
    with (
        st.expander(":material/lock: Student · instructor sign-in"),
        st.form("classroom_unlock", border=False, enter_to_submit=True),
    ):
        st.text_input(
            "Instructor code",
            key=CODE_INPUT_KEY,
            type="password",
            max_chars=classroom.MAX_CODE_LENGTH,
            help="Printed by the server at start-up, with the instructor link.",
        )
        st.form_submit_button("Unlock", on_click=_unlock_from_input)
    error = st.session_state.pop(CODE_ERROR_KEY, None)
    if error:
        st.error(error, icon=":material/lock:")
    nickname_panel()


# --- who is connected -------------------------------------------------------------------


@st.cache_resource
def _instructor_sessions() -> set[str]:
    """Session ids of this server's unlocked browsers, to tell students from them."""
    return set()


def _session_id() -> str:
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def connected() -> tuple[int, int] | None:
    """(students, instructors) with a browser connected to this server now, or None if
    Streamlit's runtime (whose session list is not public API) cannot say."""
    try:
        from streamlit.runtime import Runtime

        sessions = Runtime.instance()._session_mgr.list_active_sessions()
        ids = {info.session.id for info in sessions}
    except Exception:  # a Streamlit upgrade moved its internals: say "unknown", not crash
        return None
    if classroom.solo():
        return 0, len(ids)
    instructors = len(ids & _instructor_sessions())
    return len(ids) - instructors, instructors


_printed = threading.Event()


def join_url() -> str:
    """The address students open, from the server's own listening address and port."""
    return classroom.join_url(
        st.get_option("server.address"),
        int(st.get_option("server.port")),
        st.get_option("server.baseUrlPath") or "",
    )


def print_instructor_link_once() -> None:
    """A server started with plain `streamlit run` and no MNIST_DEMO_INSTRUCTOR_CODE made
    its own code: print the link to the terminal when the first page runs (`python -m
    mnist_demo serve` prints it before the server starts)."""
    if classroom.solo() or os.environ.get(classroom.CODE_ENV) or _printed.is_set():
        return
    _printed.set()
    link = classroom.instructor_link(join_url())
    print(f"Digit Lab instructor link: {link}", file=sys.stderr, flush=True)
