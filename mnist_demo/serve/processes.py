"""The one place Digit Lab starts, watches and stops child processes.

Every piece of an installation — PostgreSQL, the training engine, its Ray head, the web
servers, nginx — is a `Piece`: a command, where its output goes, how to tell it is
ready, how to stop it. `Processes` starts pieces in the order given, waiting for each to
be ready; `watch` restarts one that ends (or stops answering its health check) with
back-off, and gives up on one that keeps failing (RESTART_LIMIT ends within
RESTART_WINDOW_S), saying so; `stop` stops them in the reverse order, each with its own
signal and patience, and then whatever is left of its session.

Why not supervisord or circus (both on PyPI, both with restart policies)? Each is a
daemon of its own with its own configuration language and control channel (XML-RPC,
ZeroMQ), and neither can wait on what "ready" means here (the engine's lease in the
store, Streamlit's health URL through nginx) or run in the foreground of `make run`
with Ctrl+C stopping everything in order. What Digit Lab needs of them is about 200
lines, kept here, tested against real processes (tests/test_processes.py).

Children run in their own session (a terminal's Ctrl+C reaches only the supervisor,
which then stops them in order) and are told to stop (SIGTERM) if the supervisor itself
dies (Linux's parent-death signal), so a killed supervisor leaves nothing running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mnist_demo.errors import DigitLabError

RESTART_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0)  # back-off between restarts of one piece
RESTART_LIMIT = 5  # this many ends within RESTART_WINDOW_S: the piece is left down
RESTART_WINDOW_S = 120.0
HEALTH_FAILURES = 3  # consecutive failed health checks count as an end
_PR_SET_PDEATHSIG = 1


class StartError(DigitLabError):
    """A piece did not start or did not become ready; the message says why (one line)."""


@dataclass
class Piece:
    """What to run and how to care for it."""

    name: str
    command: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    ready: Callable[[], bool] | None = None  # None: running is ready
    ready_timeout_s: float = 120.0
    healthy: Callable[[], bool] | None = None  # asked every few seconds once ready
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 20.0
    restart: bool = True
    exit_codes_final: tuple[int, ...] = ()  # ends that are not failures: never restarted
    user: int | None = None  # run as this uid (and its group): PostgreSQL refuses root
    group: int | None = None


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor's thread that started it
    ends (so a killed supervisor leaves no orphans)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Process:
    """A running piece."""

    piece: Piece
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    ends: list[float] = field(default_factory=list)  # monotonic times it ended
    restart_at: float | None = None  # a restart is due (back-off)
    given_up: bool = False
    health_failures: int = 0
    last_health: float = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


def pid_alive(pid: int) -> bool:
    """Is `pid` a running process of this machine (a zombie is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc to ask: kill(0) said it exists


def spawn(piece: Piece) -> subprocess.Popen:
    """Start a piece's command in its own session, its output appended to its log."""
    piece.log.parent.mkdir(parents=True, exist_ok=True)
    with open(piece.log, "ab") as out:
        return subprocess.Popen(
            piece.command,
            cwd=piece.cwd,
            env=piece.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            user=piece.user,
            group=piece.group,
            extra_groups=[] if piece.user is not None else None,
        )


def stop_process(proc: subprocess.Popen, stop_signal: int, timeout_s: float) -> None:
    """Ask it to stop, wait up to `timeout_s`, then kill what is left of its session."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    kill_session(proc.pid)
    if proc.poll() is None:
        proc.wait(10)


def session_members(sid: int) -> list[int]:
    """Every live process of session `sid` (a child started here leads its own session;
    Ray's actor workers leave its process group but stay in its session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def kill_session(sid: int) -> None:
    """Whatever is left of a child's session (a Streamlit or Ray helper, a worker, a
    postgres backend)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signal.SIGKILL)
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def log_tail(path: Path) -> str:
    """The last non-empty line of a log, for a one-line message."""
    try:
        lines = [x.strip() for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else f"(see {path})"


class Processes:
    """Pieces started in order, watched, restarted with back-off, stopped in reverse."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.say = say
        self.running: list[Process] = []
        self.stopping = threading.Event()  # set: stop starting or watching
        self._lock = threading.Lock()

    def get(self, name: str) -> Process | None:
        return next((p for p in self.running if p.piece.name == name), None)

    # -- start --------------------------------------------------------------------

    def start(self, piece: Piece) -> Process:
        """Start a piece and wait until it is ready (StartError if it ends or times out
        first; it is stopped then)."""
        return self.start_all([piece])[0]

    def start_all(self, pieces: list[Piece]) -> list[Process]:
        """Start several pieces at once, then wait for each to be ready: web servers
        import TensorFlow side by side instead of one after another."""
        started = [Process(piece, spawn(piece)) for piece in pieces]
        with self._lock:
            self.running.extend(started)
        for process in started:
            self._wait_ready(process)
        return started

    def _wait_ready(self, process: Process) -> None:
        piece = process.piece
        deadline = time.monotonic() + piece.ready_timeout_s
        while True:
            if self.stopping.is_set():
                raise StartError(f"stopped while starting {piece.name}")
            if not process.alive():
                raise StartError(
                    f"{piece.name} exited at start ({process.proc.returncode}): "
                    f"{log_tail(piece.log)}"
                )
            try:
                if piece.ready is None or piece.ready():
                    return
            except Exception:
                pass  # not ready yet
            if time.monotonic() > deadline:
                stop_process(process.proc, piece.stop_signal, piece.stop_timeout_s)
                raise StartError(
                    f"{piece.name} was not ready within {piece.ready_timeout_s:.0f} s; "
                    f"see {piece.log}"
                )
            time.sleep(0.2)

    # -- watch --------------------------------------------------------------------

    def watch(self, every_s: float = 0.5, health_every_s: float = 3.0) -> None:
        """Until `stopping` is set: restart what ends, with back-off; give up on what
        keeps ending. Returns when stopping is set."""
        while not self.stopping.wait(every_s):
            self.tend(health_every_s)

    def tend(self, health_every_s: float = 3.0) -> None:
        now = time.monotonic()
        for process in list(self.running):
            if process.given_up:
                continue
            if process.restart_at is not None:
                if now >= process.restart_at:
                    self._restart(process)
                continue
            code = process.proc.poll()
            if code is None:
                self._check_health(process, now, health_every_s)
                continue
            self._ended(process, code, now)

    def _check_health(self, process: Process, now: float, every_s: float) -> None:
        piece = process.piece
        if piece.healthy is None or now - process.last_health < every_s:
            return
        process.last_health = now
        try:
            ok = piece.healthy()
        except Exception:
            ok = False
        process.health_failures = 0 if ok else process.health_failures + 1
        if process.health_failures >= HEALTH_FAILURES:
            self.say(f"{piece.name} stopped answering: starting it again")
            stop_process(process.proc, signal.SIGKILL, 1)
            process.health_failures = 0

    def _ended(self, process: Process, code: int, now: float) -> None:
        piece = process.piece
        kill_session(process.pid)  # PostgreSQL's backends would hold its shared memory
        if not piece.restart or code in piece.exit_codes_final:
            process.given_up = True
            self.say(f"{piece.name} ended ({code})")
            return
        process.ends = [t for t in process.ends if now - t < RESTART_WINDOW_S] + [now]
        if len(process.ends) >= RESTART_LIMIT:
            process.given_up = True
            self.say(
                f"{piece.name} ended {len(process.ends)} times within "
                f"{RESTART_WINDOW_S:.0f} s: left down (last words: {log_tail(piece.log)})"
            )
            return
        delay = RESTART_DELAYS_S[min(len(process.ends) - 1, len(RESTART_DELAYS_S) - 1)]
        self.say(f"{piece.name} ended ({_describe(code)}): starting it again in {delay:.0f} s")
        process.restart_at = now + delay

    def _restart(self, process: Process) -> None:
        process.restart_at = None
        process.proc = spawn(process.piece)
        process.started = time.monotonic()
        process.health_failures = 0

    def given_up(self) -> list[str]:
        return [p.piece.name for p in self.running if p.given_up]

    # -- stop ---------------------------------------------------------------------

    def stop(self, name: str | None = None) -> None:
        """Stop one piece, or every piece in the reverse of their start order."""
        self.stopping.set() if name is None else None
        with self._lock:
            chosen = [p for p in self.running if name is None or p.piece.name == name]
        for process in reversed(chosen):
            stop_process(process.proc, process.piece.stop_signal, process.piece.stop_timeout_s)
            with self._lock:
                self.running.remove(process)


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"
