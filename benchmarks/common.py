"""Helpers shared by the benchmarks: import path, the command line, statistics, a local
app server, and a process tree's memory and CPU. Run on its own it measures nothing.

Every benchmark prints figures (median of several runs, with min and max) and whether
its target is met; none asserts anything. Every one takes `--quick`: a smoke run of a
few seconds (tiny data, one repetition) whose figures mean nothing but which goes
through the same code, so tests/test_benchmarks.py notices a benchmark an upgrade broke.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `import mnist_demo` from `benchmarks/NAME.py`
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

VIEWPORT = {"width": 1400, "height": 1000}  # every browser the benchmarks open


class ArgumentParser(argparse.ArgumentParser):
    """A benchmark's command line: its title, and `--quick`, which sets the options in
    `quick` (option name -> value) over whatever else the command line says."""

    def __init__(self, doc: str, **quick: object):
        super().__init__(description=doc.splitlines()[0])
        self.quick = quick
        sets = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in quick.items())
        self.add_argument("--quick", action="store_true", help=f"smoke run in seconds: {sets}")

    def parse_args(self, *args, **kwargs) -> argparse.Namespace:  # type: ignore[override]
        parsed = super().parse_args(*args, **kwargs)
        if parsed.quick:
            vars(parsed).update(self.quick)
        return parsed


# --- figures --------------------------------------------------------------------------


def stats(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt(values: Sequence[float], unit: str = "", digits: int = 2) -> str:
    """'median 1.23 s (min 1.10, max 1.40, n=3)'."""
    if not values:
        return "no data"
    med, lo, hi = stats(values)
    unit = f" {unit}" if unit else ""
    return (
        f"median {med:.{digits}f}{unit} (min {lo:.{digits}f}, max {hi:.{digits}f}, n={len(values)})"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """`np.percentile`, q in [0, 100]; NaN for no values (a run whose every try failed
    still prints its report)."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


def spread(values: Sequence[float], unit: str = "s", digits: int = 3) -> str:
    """'p50 0.123 s, p95 0.456 s, max 0.789 s (n=30)'."""
    top = max(values, default=float("nan"))
    p50, p95 = percentile(values, 50), percentile(values, 95)
    return (
        f"p50 {p50:.{digits}f} {unit}, p95 {p95:.{digits}f} {unit}, "
        f"max {top:.{digits}f} {unit} (n={len(values)})"
    )


def timed(fn: Callable[[], object], runs: int = 1) -> tuple[list[float], object]:
    """(seconds of each of `runs` calls, the last call's result)."""
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left_last: bool = False) -> None:
    """Print rows under a header, each column as wide as its widest cell: values right-
    aligned, the first column (names) left, and the last too with `left_last` (verdicts)."""
    widths = [max(len(r[i]) for r in [header, *rows] if i < len(r)) for i in range(len(header))]
    left = {0, len(widths) - 1} if left_last else {0}
    for n, row in enumerate([header, *rows]):
        cells = [
            f"{c:<{widths[i]}}" if i in left else f"{c:>{widths[i]}}" for i, c in enumerate(row)
        ]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def header(doc: str) -> None:
    """What every benchmark prints first: its title (the docstring's first line) and
    the machine it runs on."""
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(doc.splitlines()[0])
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load} (1/5/15 min; figures on a busy "
        "machine are only indicative)"
    )


def mnist(test_size: int | None = None) -> tuple:
    """MNIST from the verified cache, ((x_train, y_train), (x_test, y_test)), the test
    set cut to its first `test_size` images (None: all 10,000)."""
    from mnist_demo.data import load_mnist

    train, (x_test, y_test) = load_mnist()
    return train, (x_test[:test_size], y_test[:test_size])


def loaded_models(paths: Sequence[Path]) -> Iterator[tuple[Path, object]]:
    """(path, model) for each model file that loads; one that does not is skipped with a
    line saying why (a benchmark compares what it can)."""
    from mnist_demo.errors import ModelFileError
    from mnist_demo.model import load_model

    for path in paths:
        try:
            model = load_model(path)
        except ModelFileError as e:
            print(f"skipping {path.name}: {e}")
            continue
        yield path, model


# --- a fresh process per measurement --------------------------------------------------

RESULT_PREFIX = "RESULT "


def child_result(result: dict) -> None:
    """What a `--child` run prints for its parent (`run_child`)."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(script: str, *args: str) -> dict | None:
    """`python script --child *args` in a fresh process: its `child_result` plus
    `wall_s`, the process's wall time; None (and its stderr printed) if it failed."""
    start = time.perf_counter()
    cmd = [sys.executable, script, "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return {**json.loads(line[len(RESULT_PREFIX) :]), "wall_s": wall}
    print(f"  {' '.join(args)}: FAILED (exit {proc.returncode})\n{proc.stderr[-3000:]}")
    return None


# --- memory ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(c) for c in (task / "children").read_text().split()]
    return kids


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or another /proc status field in kB, e.g. VmHWM, the peak) of one
    process; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    """VmRSS summed over a process and its children (shared pages counted per process)."""
    return sum(rss_bytes(p) for p in tree_pids(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int, exclude: int | Sequence[int] | None = None) -> float:
    """CPU seconds of a process and its live descendants, leaving out the subtree of
    `exclude` (say, a server this process started, when measuring the browser; or
    several pids: an engine's processes too)."""
    roots = [exclude] if isinstance(exclude, int) else list(exclude or [])
    skip = {p for root in roots for p in tree_pids(root)}
    return sum(cpu_seconds(p) for p in tree_pids(pid) if p not in skip)


def cpu_now(server_pid: int, exclude: Sequence[int] = ()) -> tuple[float, float]:
    """CPU seconds so far of (the server's process tree, everything else this benchmark
    runs: this process and its other children, such as Chromium and Playwright's driver,
    but not the processes in `exclude`, e.g. an engine's `Engine.pids()`)."""
    return tree_cpu_seconds(server_pid), tree_cpu_seconds(
        os.getpid(), exclude=[server_pid, *exclude]
    )


# --- the app --------------------------------------------------------------------------


from tools.app_server import (  # noqa: E402  (after the sys.path line above)
    AppServer,
    launch_chromium,
)


@contextlib.contextmanager
def app_server(
    prefix: str = "digit-lab-bench-", cpus: set[int] | None = None, wait_healthy: bool = True
) -> Iterator[AppServer]:
    """A started server in a temporary home, stopped and cleaned up afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server = AppServer(Path(tmp) / "home", cpus=cpus)
        try:
            yield server.start(wait_healthy)
        finally:
            server.stop()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator:
    """Debian's Chromium through Playwright's async API, closed afterwards."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await launch_chromium(p)  # the async API: launch is a coroutine
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser) -> tuple:  # type: ignore[no-untyped-def]
    """(context, page): a fresh browser session at the benchmarks' viewport."""
    context = await browser.new_context(viewport=VIEWPORT)
    return context, await context.new_page()


# --- the training engine --------------------------------------------------------------

ENGINE_START_TIMEOUT_S = 180


class Engine:
    """`python -m mnist_demo engine` for a data home, started by a benchmark: its own
    session (a SIGINT reaches the supervisor, which stops runs, trainers and its Ray
    head in order), every process it made found by pid and stopped by `stop`."""

    def __init__(self, home: Path, cpus: int | None = None):
        self.home = Path(home)
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0  # time.monotonic() just before Popen
        self.ready_s: float | None = None  # Popen -> the store says it runs
        self.log_path = self.home / "engine-bench.log"
        self._seen: set[int] = set()  # every pid of its tree seen so far

    def env(self) -> dict[str, str]:
        from mnist_demo import config

        return {
            **os.environ,
            "MNIST_DEMO_HOME": str(self.home),
            "MNIST_DEMO_DATA": str(config.data_dir()),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }

    @property
    def registry(self):  # type: ignore[no-untyped-def]
        from mnist_demo.runs import RunRegistry

        if not hasattr(self, "_registry"):
            self._registry = RunRegistry(self.home / "runs.sqlite")
        return self._registry

    def start(self, wait: bool = True) -> Engine:
        self.home.mkdir(parents=True, exist_ok=True)
        _ = self.registry  # the store exists (migrated) before the supervisor opens it
        cmd = [sys.executable, "-m", "mnist_demo", "engine"]
        if self.cpus:
            cmd += ["--cpus", str(self.cpus)]
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_running()
        return self

    def running(self) -> bool:
        from mnist_demo.serve import engine

        return engine.status(self.registry.store).running

    def wait_running(self, timeout: float = ENGINE_START_TIMEOUT_S) -> float:
        """Seconds from Popen until the supervisor's heartbeat is in the store (its Ray
        head up, its trainers created: they may still be loading TensorFlow)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pids()
            if self.proc.poll() is not None:
                raise RuntimeError(f"the engine exited ({self.proc.returncode}): {self.log_tail()}")
            if self.running():
                self.ready_s = time.monotonic() - self.started_at
                return self.ready_s
            time.sleep(0.1)
        raise RuntimeError(f"the engine did not start in {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        text = ""
        for path in (self.log_path, self.home / "engine" / "ray-head.log"):
            with contextlib.suppress(OSError):
                text += f"--- {path.name}\n" + path.read_text(errors="replace")[-chars:]
        return text or "(no log)"

    @property
    def ray_dir(self) -> str:
        """The Ray head's temp dir: engine.py names it after the supervisor's pid."""
        assert self.proc is not None
        return f"/tmp/digit-lab-ray-{self.proc.pid}"

    def pids(self) -> list[int]:
        """The supervisor's tree and every process of its Ray session (its workers are
        the raylet's children; a detached actor may outlive its parent), live now."""
        if self.proc is None:
            return []
        found = set(tree_pids(self.proc.pid)) if self.proc.poll() is None else set()
        mark = re.compile(re.escape(self.ray_dir.encode()) + rb"(?![0-9])")
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if mark.search((proc / "cmdline").read_bytes()):
                    found |= set(tree_pids(int(proc.name)))
        live = {p for p in found if Path(f"/proc/{p}").exists()}
        self._seen |= live
        return sorted(live)

    def rss_bytes(self) -> int:
        """VmRSS summed over every process of the engine (supervisor, Ray, trainers)."""
        return sum(rss_bytes(p) for p in self.pids())

    def stop(self, timeout: float = 120) -> list[int]:
        """SIGINT the supervisor, as Ctrl+C does (it asks a running run to stop, stops its
        trainers and its Ray head), wait, then SIGKILL by pid whatever of it is still
        alive. Returns the pids that had to be killed (none when the engine stops as it
        should). Not SIGTERM: measured here, the supervisor's `ray.init` replaces its
        SIGTERM handler with Ray's, which ends the process at once and leaves the Ray head
        and the trainers running."""
        if self.proc is None:
            return []
        self.pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        deadline = time.monotonic() + 10
        left = self._alive()
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = self._alive()
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.ray_dir)
        return left

    def _alive(self) -> list[int]:
        self.pids()  # also any process of the session not seen before
        alive = []
        for pid in sorted(self._seen):
            with contextlib.suppress(OSError):
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    alive.append(pid)
        return alive


@contextlib.contextmanager
def engine(home: Path, cpus: int | None = None, wait: bool = True) -> Iterator[Engine]:
    """A started engine for `home`, stopped afterwards (a line if anything had to be
    killed)."""
    eng = Engine(home, cpus)
    try:
        yield eng.start(wait)
    finally:
        killed = eng.stop()
        if killed:
            print(f"engine: {len(killed)} process(es) did not stop with it; killed {killed}")


def no_engine_from_servers() -> None:
    """Servers this benchmark starts never start an engine of their own (a Train page
    finding none would start a detached one, which would outlive the benchmark)."""


def wait_run(registry, run_id: int, until: Callable[[object], bool], timeout: float = 900):  # type: ignore[no-untyped-def]
    """Poll the store every 20 ms until `until(run)`; returns (seconds, run)."""
    start = time.monotonic()
    while True:
        run = registry.get(run_id)
        if until(run):
            return time.monotonic() - start, run
        if run.ended or time.monotonic() - start > timeout:
            raise RuntimeError(f"run {run_id} {run.status} ({run.error}) before the awaited moment")
        time.sleep(0.02)


if __name__ == "__main__":
    print("benchmarks/common.py: helpers for the other benchmarks; nothing to measure.")
