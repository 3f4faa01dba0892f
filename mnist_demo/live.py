"""Following a run live: one reader per server process.

Every browser watching the Train page asks for the same run's news every fraction of a
second. A `LiveFeed` (one per process, shared by all its sessions) reads each run's new
points from the store at most once per REFRESH_S, whichever session asks, and keeps them
in memory; sessions read that copy. The store stays the truth: a second server, or this
one restarted, builds the same view from it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from mnist_demo import progress, queue
from mnist_demo.runs import Run, RunRegistry
from mnist_demo.store import StoreError

REFRESH_S = 0.15  # at most this often per run and process, whatever the number of watchers
TEND_EVERY_S = 3.0  # how often a process looks for runs whose worker died
MAX_CHART_POINTS = 500  # about one per 1.5 pixel columns of a full-width chart; every
# point goes to every watching browser on every poll


@dataclass
class LiveView:
    """A run as a page shows it: its record and its per-batch points, thinned."""

    run: Run
    batch_metrics: list[dict[str, float]] = field(default_factory=list)
    elapsed_s: float = 0.0
    eta_s: float | None = None

    @property
    def stop_requested(self) -> bool:
        return self.run.stop_requested_at is not None


def thin(points: list[tuple[int, float, float, float]]) -> list[dict[str, float]]:
    """At most MAX_CHART_POINTS evenly spaced points, the newest always among them."""
    stride = max(1, -(-len(points) // MAX_CHART_POINTS))
    sampled = points[::stride]
    if points and sampled[-1] is not points[-1]:
        sampled = [*sampled, points[-1]]
    return [{"epoch": p, "loss": lo, "accuracy": a} for _, p, lo, a in sampled]


# A time estimate is shown only once this run's own batches have measured the pace:
# at least this many batches over at least this many seconds, watched by this process.
# (Measured from the run's start, preparing the data and tracing the model made a
# 78-second Quick demo say "about 8 min 31 s left" at its first batch.)
PACE_MIN_BATCHES = 20
PACE_MIN_S = 2.0


def batches_done(run: Run) -> int:
    """Batches trained in this stretch of the run (a resumed run's earlier epochs were
    trained before: they say nothing about today's pace)."""
    first = run.epochs_done if run.resume else 0
    return max(0, (run.epoch - 1 - first) * run.batches_per_epoch + run.batch)


def eta(run: Run, first_seen: tuple[float, int] | None, now: float) -> float | None:
    """Seconds left, from the pace measured since `first_seen` (monotonic time, batches
    done then), or None while that is not measured yet or the run is not training."""
    if progress.phase(run) != progress.TRAINING or first_seen is None:
        return None
    seen_at, done_then = first_seen
    done = batches_done(run)
    if done - done_then < PACE_MIN_BATCHES or now - seen_at < PACE_MIN_S:
        return None
    first = run.epochs_done if run.resume else 0
    total = (run.config.epochs - first) * run.batches_per_epoch
    per_batch = (now - seen_at) / (done - done_then)
    return per_batch * max(0, total - done)


class Focus(NamedTuple):
    followed: Run | None  # the run a page follows
    queue: list[Run]  # the runs waiting, in the order they will start


class LiveFeed:
    def __init__(self, registry: RunRegistry):
        self.registry = registry
        self._lock = threading.Lock()
        self._points: dict[int, list[tuple[int, float, float, float]]] = {}
        self._runs: dict[int, tuple[float, Run]] = {}
        self._first_seen: dict[int, tuple[float, int]] = {}  # pace: when training was seen
        self._focus = Focus(None, [])
        self._focused = -1e9
        self._tended = -1e9

    def focus(self) -> Focus:
        """The run a page follows (the oldest training, else the first queued, else the
        latest) and the queue, read at most once per REFRESH_S for the whole process:
        thirty sessions polling five times a second cost one query, not 150. A run whose
        worker died is marked interrupted here too, at most every few seconds."""
        with self._lock:
            now = time.monotonic()
            if now - self._focused >= REFRESH_S:
                if now - self._tended >= TEND_EVERY_S:
                    self._tended = now
                    with contextlib.suppress(StoreError):  # read-only: shown as it is
                        self.registry.mark_interrupted()
                running = self.registry.running()
                waiting = queue.waiting(self.registry)
                followed = (
                    running[0] if running else waiting[0] if waiting else self.registry.latest()
                )
                self._focus, self._focused = Focus(followed, waiting), now
            return self._focus

    def view(self, run_id: int) -> LiveView:
        with self._lock:
            now = time.monotonic()
            cached = self._runs.get(run_id)
            if cached is None or now - cached[0] >= REFRESH_S:
                run = self.registry.get(run_id)
                known = self._points.setdefault(run_id, [])
                if cached is not None and cached[1].ended and not run.ended:
                    known.clear()  # resumed: its points past the last epoch were dropped
                    self._first_seen.pop(run_id, None)
                if progress.phase(run) == progress.TRAINING and batches_done(run) > 0:
                    self._first_seen.setdefault(run_id, (now, batches_done(run)))
                last = known[-1][0] if known else -1
                known.extend(self.registry.points(run_id, after_seq=last))
                self._runs[run_id] = cached = (now, run)
            run = cached[1]
            points = self._points.get(run_id, [])
            first_seen = self._first_seen.get(run_id)
        start = run.started_at or run.created_at
        end = run.finished_at if run.ended and run.finished_at else time.time()
        elapsed = max(0.0, end - start) if run.started_at else 0.0
        return LiveView(run, thin(points), elapsed, eta(run, first_seen, now))
