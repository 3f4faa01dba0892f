"""Run the real app for the browser tests and the benchmarks: `streamlit run` on a free
loopback port with its own MNIST_DEMO_HOME (sharing the verified MNIST cache), and
Debian's Chromium through Playwright (Playwright's own browser download can't be relied
on). Shared by the e2e tests and the benchmarks; the app never imports it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mnist_demo import config

ROOT = config.PACKAGE_DIR.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SERVER_START_TIMEOUT_S = 120
# The servers run as a class (roles on); open `server.instructor_url` to be the instructor.
INSTRUCTOR_CODE = "test-instructor-7Qx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """`python -m mnist_demo engine` for a data home: a local Ray head and its warm
    trainers, stopped by pid (SIGTERM: it stops its runs, then Ray)."""

    def __init__(self, home: Path, extra_env: dict[str, str] | None = None):
        self.home = Path(home)
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.home / "engine-process.log"

    def start(self, timeout: float = SERVER_START_TIMEOUT_S) -> Engine:
        from mnist_demo.serve import engine
        from mnist_demo.store import Store

        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MNIST_DEMO_HOME": str(self.home),
            "MNIST_DEMO_DATA": str(config.data_dir()),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **self.extra_env,
        }
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mnist_demo", "engine"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        store = Store(env.get("MNIST_DEMO_DATABASE_URL") or self.home / "runs.sqlite")
        deadline = time.monotonic() + timeout
        while not engine.status(store).running:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the engine did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        store.dispose()
        return self

    def stop(self, timeout: float = 120) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class AppServer:
    """`streamlit run streamlit_app.py` on a free loopback port with a temporary
    MNIST_DEMO_HOME (the MNIST cache is shared, so nothing is fetched). The server never
    starts a training engine itself: pass `engine=True` for one (stopped with it)."""

    def __init__(
        self,
        home: Path,
        port: int | None = None,
        cpus: set[int] | None = None,
        engine: bool = False,
    ):
        self.engine = Engine(home) if engine else None
        self.home = Path(home)
        self.cpus = cpus  # CPU affinity of the server (and its threads), None: any
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.home / f"server-{self.port}.log"
        self.started_at = 0.0  # time.monotonic() just before Popen

    @property
    def instructor_url(self) -> str:
        """The instructor link, as `python -m mnist_demo serve --class` prints it."""
        return f"{self.url}/?code={INSTRUCTOR_CODE}"

    def start(self, wait_healthy: bool = True) -> AppServer:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MNIST_DEMO_HOME": str(self.home),
            "MNIST_DEMO_DATA": str(config.data_dir()),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MNIST_DEMO_INSTRUCTOR_CODE": INSTRUCTOR_CODE,
            "FORWARDED_ALLOW_IPS": "none",  # as the supervisor serves: no proxy trusted
        }
        env.pop("MNIST_DEMO_SOLO", None)
        if self.engine is not None and self.engine.proc is None:
            self.engine.start()
        cmd = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
            "--server.port", str(self.port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        log = self.log_path.open("w")
        self.started_at = time.monotonic()
        pin = (lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin
        )
        log.close()
        if wait_healthy:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = SERVER_START_TIMEOUT_S) -> float:
        """Seconds from process start until /_stcore/health answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started_at
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the app did not start in {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text()[-chars:]
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash, with no chance to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.engine is not None:
            self.engine.stop()


def launch_chromium(playwright):
    """Debian's Chromium through Playwright (sync or async API object's `.chromium`)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"Chromium not found at {CHROMIUM}: run `make test` (it installs Debian's chromium)"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
