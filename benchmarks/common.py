"""Helpers shared by the benchmarks: import path, statistics, a local app server,
Chromium, and a process tree's memory. Run on its own it measures nothing.

Every benchmark prints figures (median of several runs, with min and max) and whether
its target is met; none asserts anything.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `import mnist_demo` from `benchmarks/NAME.py`
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    """Linear-interpolated percentile, q in [0, 100] (numpy's default method)."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def header(doc: str) -> None:
    """What every benchmark prints first: its title (the docstring's first line) and
    the machine it runs on."""
    print(doc.splitlines()[0])
    print(f"machine: {machine_note()}")


def machine_note() -> str:
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        "(1/5/15 min; figures on a busy machine are only indicative)"
    )


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


def tree_cpu_seconds(pid: int, exclude: int | None = None) -> float:
    """CPU seconds of a process and its live descendants, leaving out the subtree of
    `exclude` (say, a server this process started, when measuring the browser)."""
    skip = set(tree_pids(exclude)) if exclude else set()
    return sum(cpu_seconds(p) for p in tree_pids(pid) if p not in skip)


# --- the app --------------------------------------------------------------------------


from tools.app_server import (  # noqa: E402  (after the sys.path line above)
    AppServer,
)


@contextlib.contextmanager
def app_server(
    prefix: str = "digit-lab-bench-", cpus: set[int] | None = None
) -> Iterator[AppServer]:
    """A started server in a temporary home, stopped and cleaned up afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server = AppServer(Path(tmp) / "home", cpus=cpus)
        try:
            yield server.start()
        finally:
            server.stop()


if __name__ == "__main__":
    print("benchmarks/common.py: helpers for the other benchmarks; nothing to measure.")
