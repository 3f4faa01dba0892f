"""A training engine inside the test process, for page tests (AppTest) that need runs to
train but are not about Ray: a thread that does what a Ray trainer does (claim the next
queued run from the store, `training.train_run` it) and writes the engine's heartbeat,
so pages see a running engine. tests/test_engine.py tests the real one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mnist_demo import lease, queue, training
from mnist_demo.runs import RunRegistry
from mnist_demo.store import Store


class InlineEngine:
    def __init__(self, home: Path, data):
        self.registry = RunRegistry(Store(home / "runs.sqlite"))
        self.data = data
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.holder = lease.new_holder()
        self.info = {"capacity": 1, "address": "inline"}
        self.token = lease.acquire(self.registry.store, self.holder, self.info)

    def start(self) -> InlineEngine:
        self._beat()
        self._thread.start()
        return self

    def _beat(self) -> None:
        lease.renew(self.registry.store, self.holder, self.token, self.info)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._beat()
            run = queue.claim_next(self.registry, "inline", token=self.token)
            if run is None:
                time.sleep(0.1)
                continue
            training.train_run(self.registry, run, self.data)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        lease.release(self.registry.store, self.holder, self.token)

    def wait_idle(self, timeout: float = 120) -> None:
        """Until nothing is queued or running."""
        deadline = time.monotonic() + timeout
        while queue.waiting(self.registry) or self.registry.running():
            assert time.monotonic() < deadline, "the runs did not end in time"
            time.sleep(0.2)
