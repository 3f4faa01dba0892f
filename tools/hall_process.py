"""`python -m mnist_demo hall` (or `serve`) as a child process on a data home, for the
tests and benchmarks/hall.py: start it, read what it prints, find its processes, stop it
as Ctrl+C would. Never imported by the app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from mnist_demo import config
from mnist_demo.serve.hall import ROOT, SERVER_ENV, HallError, pick_port


class HallProcess:
    """`python -m mnist_demo hall` as a child process on a data home (the tests and
    benchmarks/hall.py): `start()` waits until it prints the students' address;
    `stop()` is its Ctrl+C (SIGTERM) and waits for it to end."""

    def __init__(
        self,
        home: Path,
        *,
        port: int,
        replicas: int = 2,
        postgres_port: int = 0,
        env: dict[str, str] | None = None,
        listen: str = "127.0.0.1",
    ) -> None:
        self.home = Path(home)
        self.port = port
        self.replicas = replicas
        self.postgres_port = postgres_port or pick_port(0, {port})
        self.env = env or {}
        self.listen = listen  # where nginx listens ("0.0.0.0": every interface, the LAN's too)
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.log = self.home / "hall-output.log"

    def start(self, timeout: float = 300.0) -> HallProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MNIST_DEMO_DATA": str(config.data_dir()),  # the caller's MNIST cache, shared
            "MNIST_DEMO_HOME": str(self.home),
            **self.env,
        }
        command = [
            sys.executable, "-m", "mnist_demo", "hall", "--replicas", str(self.replicas),
            "--port", str(self.port), "--listen", self.listen,
            "--postgres-port", str(self.postgres_port),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, bufsize=1,
        )  # fmt: skip
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            with open(self.log, "a") as log:
                for line in self.proc.stdout:
                    self.output.append(line.rstrip("\n"))
                    log.write(line)
                    log.flush()
                    if "Ctrl+C stops everything" in line:  # after both addresses
                        ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise HallError("the hall did not start: " + " | ".join(self.output[-5:]))
        return self

    def line(self, prefix: str) -> str:
        return next(line for line in self.output if line.startswith(prefix))

    @property
    def instructor_url(self) -> str:
        link = self.line("Instructor link:").split(":", 1)[1].strip()
        return link.replace("http://localhost:", "http://127.0.0.1:")

    def stop(self, timeout: float = 240.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def replica_pid(self, i: int) -> int | None:
        """The pid of replica i's Streamlit server (by its MNIST_DEMO_SERVER)."""
        for pid in processes_of(self.home):
            env = _environ(pid)
            if env.get(SERVER_ENV) == f"server {i} of {self.replicas}" and b"streamlit" in _cmdline(
                pid
            ):
                return pid
        return None


def processes_of(home: Path) -> list[int]:
    """Every process that belongs to the installation on `home`: its data home in the
    environment (replicas, the engine, Ray's head and workers, pg_ctl's PostgreSQL) or
    on the command line (nginx, PostgreSQL). Read from /proc."""
    needle = str(home).encode()
    mine = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == mine:
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except (OSError, IndexError):
            continue
        if needle in _cmdline(pid) or _environ(pid).get("MNIST_DEMO_HOME") == str(home):
            found.append(pid)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
