"""Who may do what in a class, and how students get in.

One server, one instructor, many students. Every browser session starts as a student;
the instructor's code unlocks a session. The code comes from MNIST_DEMO_INSTRUCTOR_CODE,
or the server makes one (`instructor_code`) and prints it as a link at start-up, the way
Jupyter prints its token. Someone alone on their laptop runs in solo mode
(MNIST_DEMO_SOLO=1, what `make run` sets): every session is the instructor.

Permissions are checked here, in the core, where an action is carried out (`require`,
called by training, the run registry and the class set), never only by hiding a
button: a student session that forges a widget message still reaches the check. The
CLI runs as the machine's owner (`OWNER`) and is not restricted.

Limits keep one student (or a script posing as one) from taking the server's cores or
memory: code guesses, uploads, drawings read, sends and other costly requests each have
a budget per student. `Limits` counts them in the store (`limit_events`), keyed on the
student's signed identity (mnist_demo/students.py), never on a page load: a reload or a
new tab keeps the count, and every app server sharing the store sees the same one.
Wrong instructor codes are also counted per client address, so a browser that drops
its cookie (a private window) is still slowed down. `RateLimiter` is the same sliding
window in process memory: what `Limits` falls back on when the store refuses writes
(a full or read-only data home), so reading drawings still works then.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from enum import Enum, StrEnum
from io import BytesIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mnist_demo.config import CODE_ENV, SOLO_ENV, TRUSTED_PROXY_ENV
from mnist_demo.errors import DigitLabError
from mnist_demo.store import Store, StoreWriteError, limit_events

CODE_BYTES = 9  # 12 URL-safe characters: 72 bits, unguessable at 5 tries a minute
MAX_CODE_LENGTH = 128  # longer input is refused before it is compared
CODE_QUERY_KEY = "code"  # the instructor link: http://host:port/?code=...
TOKEN_COOKIE = "digit_lab_instructor"  # keeps an unlocked browser unlocked across reloads
TOKEN_MAX_AGE_S = 12 * 3600  # a school day


class Role(StrEnum):
    STUDENT = "student"
    INSTRUCTOR = "instructor"


OWNER = Role.INSTRUCTOR  # the CLI, run by the owner of the server's machine


class Action(Enum):
    """What only the instructor may do; the value completes "Only the instructor can …"."""

    START_TRAINING = "start training"
    STOP_TRAINING = "stop the run"
    DELETE_RUNS = "delete runs"
    SET_ACTIVE_MODEL = "set the server's active model"
    ALLOW_LONG_RUNS = "allow long runs"
    MANAGE_CLASS_SET = "hide, delete or archive the class's drawings"
    MODERATE_STUDENTS = "rename or hide a student's nickname"
    SET_CLASS_LIMITS = "change the class's limits"
    MANAGE_EXPERIMENTS = "set the class's experiment limits, pause the queue or reveal scores"


class PermissionDeniedError(DigitLabError):
    """A student session asked for something only the instructor may do."""


class CodeError(DigitLabError):
    """A wrong, empty or malformed instructor code."""


class RateLimitedError(DigitLabError):
    """A session asked for more than its share; the message says when to retry."""


def locked_reason(action: Action) -> str:
    return f"Only the instructor can {action.value}."


def require(role: Role, action: Action) -> None:
    """The one permission check: raise PermissionDeniedError unless `role` may `action`."""
    if role is not Role.INSTRUCTOR:
        raise PermissionDeniedError(locked_reason(action))


# --- the instructor code ----------------------------------------------------------------

_code_lock = threading.Lock()
_process_code: str | None = None


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def solo() -> bool:
    """Solo mode: one person on their own machine, every session is the instructor."""
    return os.environ.get(SOLO_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def instructor_code() -> str:
    """The server's code: MNIST_DEMO_INSTRUCTOR_CODE, else one made once per process."""
    global _process_code
    configured = os.environ.get(CODE_ENV, "").strip()
    if configured:
        return configured
    with _code_lock:
        if _process_code is None:
            _process_code = new_code()
        return _process_code


def check_code(attempt: str) -> None:
    """Raise CodeError unless `attempt` is the instructor code. Constant-time compare,
    so the time taken says nothing about how much of a guess was right."""
    attempt = (attempt or "").strip()
    if not attempt:
        raise CodeError("Enter the instructor code.")
    if len(attempt) > MAX_CODE_LENGTH:
        raise CodeError(f"That is not an instructor code (longer than {MAX_CODE_LENGTH}).")
    if not hmac.compare_digest(attempt.encode(), instructor_code().encode()):
        raise CodeError("Wrong instructor code. Check it and try again.")


def session_token() -> str:
    """What an unlocked browser keeps (a cookie) so a reload stays unlocked: derived from
    the code, so it is not the code, and it stops working when the code changes."""
    key = instructor_code().encode()
    return hmac.new(key, b"digit-lab instructor browser", hashlib.sha256).hexdigest()


def valid_session_token(token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(str(token).encode(), session_token().encode())


def instructor_link(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/?{CODE_QUERY_KEY}={instructor_code()}"


# --- rate limits ------------------------------------------------------------------------


class RateLimiter:
    """At most `limit` events in any `window_s` seconds (a sliding window). One per
    session and kind of request; thread-safe, since a session's fragments may overlap."""

    def __init__(
        self,
        what: str,
        limit: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError(f"need limit >= 1 and window_s > 0, got {limit}, {window_s}")
        self.what, self.limit, self.window_s, self._clock = what, limit, window_s, clock
        self._events: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> None:
        """Count one event, or raise RateLimitedError saying when the next one is allowed."""
        with self._lock:
            now = self._clock()
            while self._events and now - self._events[0] >= self.window_s:
                self._events.popleft()
            if len(self._events) >= self.limit:
                wait = max(1, round(self.window_s - (now - self._events[0])))
                raise RateLimitedError(
                    f"Too many {self.what}: at most {self.limit} per "
                    f"{_window_text(self.window_s)}. Try again in {wait} s."
                )
            self._events.append(now)

    def remaining(self) -> int:
        with self._lock:
            now = self._clock()
            return self.limit - sum(now - t < self.window_s for t in self._events)


def _window_text(seconds: float) -> str:
    return "minute" if seconds == 60 else f"{seconds:g} s"


# Per student (their signed identity): (what the message calls it, how many per minute).
# Instructor sessions are not limited (their code attempts are moot once unlocked);
# sends and take-backs are counted by the class set itself (class_set.py), in the same
# transaction as the drawing.
STUDENT_LIMITS: dict[str, tuple[str, int]] = {
    "code": ("code attempts", 5),
    "upload": ("uploads", 10),
    "drawing": ("drawings read", 120),  # two a second: faster than anyone draws
    "inside": ("looks inside the network", 30),  # feature maps + saliency: 10x a drawing
}
# Per client address: wrong instructor codes, whichever student identity sent them.
# Higher than a student's budget: several students may share one address (a NAT).
CLIENT_LIMITS: dict[str, tuple[str, int]] = {
    "code_wrong": ("wrong instructor codes from this address", 10),
    "seat_code": ("seat codes tried from this address", 10),
}
WINDOW_S = 60.0
PRUNE_AFTER_S = 3600.0  # events older than this are deleted (no limit looks back further)
PRUNE_EVERY_S = 60.0


def student_limiters(clock: Callable[[], float] = time.monotonic) -> dict[str, RateLimiter]:
    return {key: RateLimiter(what, n, clock=clock) for key, (what, n) in STUDENT_LIMITS.items()}


def student_subject(student_id: str) -> str:
    return f"student:{student_id}"


def client_subject(address: str | None) -> str:
    return f"client:{address or 'local'}"


def _budget(kind: str) -> tuple[str, int]:
    found = STUDENT_LIMITS.get(kind) or CLIENT_LIMITS.get(kind)
    if found is None:
        raise ValueError(f"no limit called {kind!r}")
    return found


def too_many(what: str, limit: int, wait_s: float, window_s: float = WINDOW_S) -> str:
    wait = max(1, round(wait_s))
    return f"Too many {what}: at most {limit} per {_window_text(window_s)}. Try again in {wait} s."


def count_recent(
    con: Connection, kind: str, subject: str | None, now: float, window_s: float = WINDOW_S
) -> tuple[int, float | None]:
    """(events of `kind` for `subject` (None: anyone) in the window, the oldest's time)."""
    query = sa.select(sa.func.count(), sa.func.min(limit_events.c.at)).where(
        limit_events.c.kind == kind, limit_events.c.at > now - window_s
    )
    if subject is not None:
        query = query.where(limit_events.c.subject == subject)
    n, oldest = con.execute(query).one()
    return int(n), oldest


def record_event(con: Connection, kind: str, subject: str, now: float) -> None:
    con.execute(sa.insert(limit_events).values(kind=kind, subject=subject, at=now))


class Limits:
    """Sliding-window budgets kept in the store (`limit_events`): one count per kind of
    request and subject (`student_subject`, `client_subject`), shared by every app
    server on the store and kept across reloads. Events older than PRUNE_AFTER_S are
    deleted now and then. Should the store refuse writes (a full or read-only data
    home), the count goes on in this process's memory (RateLimiter) instead."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store, self._clock = store, clock
        self._fallback: dict[tuple[str, str], RateLimiter] = {}
        self._lock = threading.Lock()
        self._pruned_at = 0.0

    def take(self, kind: str, subject: str) -> None:
        """Count one event of `kind` for `subject`, or raise RateLimitedError (saying
        when the next is allowed) without counting it."""
        what, limit = _budget(kind)
        now = self._clock()
        try:
            with self.store.write(lock=limit_events) as con:
                n, oldest = count_recent(con, kind, subject, now)
                if n >= limit:
                    raise RateLimitedError(
                        too_many(what, limit, WINDOW_S - (now - (oldest or now)))
                    )
                record_event(con, kind, subject, now)
                self._maybe_prune(con, now)
        except StoreWriteError:
            self._memory(kind, subject).take()

    def check(self, kind: str, subject: str) -> None:
        """Raise RateLimitedError if `subject` has no `kind` left; counts nothing."""
        what, limit = _budget(kind)
        now = self._clock()
        with self.store.read() as con:
            n, oldest = count_recent(con, kind, subject, now)
        if n >= limit:
            raise RateLimitedError(too_many(what, limit, WINDOW_S - (now - (oldest or now))))
        if (kind, subject) in self._fallback and self._fallback[kind, subject].remaining() <= 0:
            self._fallback[kind, subject].take()  # raises, with the wait

    def record(self, kind: str, subject: str) -> None:
        """Count one event whatever the budget says (a wrong code, once it was tried)."""
        now = self._clock()
        try:
            with self.store.write(lock=limit_events) as con:
                record_event(con, kind, subject, now)
        except StoreWriteError:
            with suppress(RateLimitedError):
                self._memory(kind, subject).take()

    def remaining(self, kind: str, subject: str) -> int:
        _, limit = _budget(kind)
        with self.store.read() as con:
            n, _ = count_recent(con, kind, subject, self._clock())
        return max(0, limit - n)

    def _memory(self, kind: str, subject: str) -> RateLimiter:
        what, limit = _budget(kind)
        with self._lock:
            if (kind, subject) not in self._fallback:
                self._fallback[kind, subject] = RateLimiter(what, limit, WINDOW_S)
            return self._fallback[kind, subject]

    def _maybe_prune(self, con: Connection, now: float) -> None:
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        prune(con, now)


def prune(con: Connection, now: float) -> int:
    """Delete limit events no window looks back to any more; returns how many."""
    return int(
        con.execute(sa.delete(limit_events).where(limit_events.c.at < now - PRUNE_AFTER_S)).rowcount
    )


def try_code(limits: Limits, attempt: str, *, student: str, client: str | None) -> None:
    """One instructor-code attempt from `student` (their identity) at `client` (their
    address): refused at once when that address has sent too many wrong codes lately
    (whichever identity sent them), counted against the student's budget (every try,
    right or wrong), then checked. A wrong code also counts against the address.
    Raises RateLimitedError or CodeError; returns when the code is right."""
    address = client_subject(client)
    limits.check("code_wrong", address)
    limits.take("code", student_subject(student))
    try:
        check_code(attempt)
    except CodeError:
        limits.record("code_wrong", address)
        raise


# --- people, not cookies: the client address and its group --------------------------------

SHARED_ADDRESS = "class_shares_one_address"  # setting: count seats, not address groups


def client_address(socket_address: str | None, forwarded_for: str | None) -> str | None:
    """Where a request really comes from: the socket's address (None: this machine, as
    Streamlit reports a loopback peer), unless that socket is a
    proxy this server was told to trust (MNIST_DEMO_TRUSTED_PROXY, which `make hall`
    sets to its nginx on loopback); then the address that proxy appended last to
    X-Forwarded-For. Anyone can send an X-Forwarded-For header: read from any other
    socket it would let a student pose as any address (lock the instructor's address out
    of sign-in, or be a new person per request), so it is ignored. The proxy's own last
    entry is the client it saw; earlier entries were written by the client and are not
    trusted either."""
    trusted = {a.strip() for a in os.environ.get(TRUSTED_PROXY_ENV, "").split(",") if a.strip()}
    if socket_address and socket_address in trusted and forwarded_for:
        last = forwarded_for.split(",")[-1].strip()
        if _valid_ip(last):
            return last
    return socket_address


def forwarded_allow_ips(trusted_proxy: str | None) -> str:
    """What a web server's FORWARDED_ALLOW_IPS must be. Streamlit serves through uvicorn,
    which takes the client's address from X-Forwarded-For whenever the socket is one of
    these — by default 127.0.0.1 and ::1, so any program on the server's machine could
    pose as any address. Only the trusted proxy (MNIST_DEMO_TRUSTED_PROXY), else no one:
    "none" matches no address. The supervisor (serve/hall.py) starts every web server
    with it; a plain `streamlit run` keeps uvicorn's default."""
    return (trusted_proxy or "").strip() or "none"


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def address_group(address: str | None) -> str:
    """The group fair shares count as one person: an IPv4 address itself, an IPv6
    address's /64. Not a wider IPv4 group: a classroom's laptops share one /24 (the
    room's Wi-Fi), so /24 would make the whole class one person. An IPv6 /64 because
    one device picks new addresses inside its /64 at will (privacy extensions), so a
    single address there is no person at all. Unknown (no request behind the session,
    the CLI): "local"."""
    if not address:
        return "local"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "local"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:10.0.0.7 is the IPv4 client 10.0.0.7
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def shared_address(store: Store) -> bool:
    """The instructor said this class comes from one address (a school NAT, a proxy
    that hides addresses): fair shares count seats instead of address groups."""
    return store.setting(SHARED_ADDRESS) == "1"


def set_shared_address(store: Store, on: bool, *, role: Role) -> None:
    require(role, Action.SET_CLASS_LIMITS)
    store.set_setting(SHARED_ADDRESS, "1" if on else None)


def person_subject(store: Store, network: str | None, student_id: str) -> str:
    """What a per-person budget is counted on: the address group (every cookie from one
    laptop shares it), or the seat when the class shares one address."""
    if network is None or shared_address(store):
        return student_subject(student_id)
    return f"network:{network}"


# --- joining ----------------------------------------------------------------------------

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
EVERY_INTERFACE = ("", "0.0.0.0", "::")  # "": Streamlit's server.address unset listens on all


def lan_address() -> str:
    """This machine's address on the local network (what students' devices can reach).

    A UDP socket "connected" to a private address sends nothing but makes the kernel pick
    the outgoing interface; its address is the one to share. 127.0.0.1 when there is no
    network at all."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
            address = s.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    return address


def join_url(listen_address: str | None, port: int, base_path: str = "") -> str:
    """The address students open: the LAN address when the server listens on every
    interface (or on that address), localhost when it only listens on this machine."""
    host = listen_address or ""
    if host in EVERY_INTERFACE:
        host = lan_address()
    elif host in LOCAL_HOSTS:
        host = "localhost"
    path = "/" + base_path.strip("/") if base_path.strip("/") else ""
    return f"http://{host}:{port}{path}/"


def serves_only_this_machine(url: str) -> bool:
    return "//localhost:" in url or "//127.0.0.1:" in url


def qr_png(text: str, scale: int = 10) -> bytes:
    """`text` as a QR code PNG (error correction M, a 4-module quiet zone), large and
    high-contrast enough to scan from the back of a room off a projector."""
    import segno  # only the Join view needs it

    buffer = BytesIO()
    segno.make(text, error="m", micro=False).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()
