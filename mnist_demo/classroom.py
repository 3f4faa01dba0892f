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

`RateLimiter` keeps one session (a student, or a script posing as one) from taking the
server's cores or memory: code guesses, uploads, drawings and other costly requests
each have a per-session budget.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum, StrEnum
from io import BytesIO

from mnist_demo.errors import DigitLabError

CODE_ENV = "MNIST_DEMO_INSTRUCTOR_CODE"
SOLO_ENV = "MNIST_DEMO_SOLO"
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


# Per student session: (what the message calls it, how many per minute). Instructor
# sessions are not limited (their code attempts are moot once unlocked).
STUDENT_LIMITS: dict[str, tuple[str, int]] = {
    "code": ("code attempts", 5),
    "upload": ("uploads", 10),
    "drawing": ("drawings read", 120),  # two a second: faster than anyone draws
    "inside": ("looks inside the network", 30),  # feature maps + saliency: 10x a drawing
}


def student_limiters(clock: Callable[[], float] = time.monotonic) -> dict[str, RateLimiter]:
    return {key: RateLimiter(what, n, clock=clock) for key, (what, n) in STUDENT_LIMITS.items()}


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
