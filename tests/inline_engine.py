"""A training engine inside the test process, for page tests (AppTest) that need runs to
train but are not about Ray: a thread that does what a Ray trainer does (claim the next
queued run from the store, `training.train_run` it) and writes the engine's heartbeat,
so pages see a running engine. tests/test_engine.py tests the real one."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from mnist_demo import engine, training
from mnist_demo.runs import RunRegistry
from mnist_demo.store import Store


class InlineEngine:
    def __init__(self, home: Path, data):
        self.registry = RunRegistry(Store(home / "runs.sqlite"))
        self.data = data
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> InlineEngine:
        self._beat()
        self._thread.start()
        return self

    def _beat(self) -> None:
        self.registry.store.set_setting(
            engine.ENGINE_KEY, json.dumps({"beat": time.time(), "capacity": 1, "address": "inline"})
        )

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._beat()
            run = self.registry.claim_next("inline")
            if run is None:
                time.sleep(0.1)
                continue
            training.train_run(self.registry, run, self.data)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def wait_idle(self, timeout: float = 120) -> None:
        """Until nothing is queued or running."""
        deadline = time.monotonic() + timeout
        while self.registry.queue() or self.registry.running():
            assert time.monotonic() < deadline, "the runs did not end in time"
            time.sleep(0.2)
