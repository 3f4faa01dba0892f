"""A data home that is full, or read-only: pages that only read keep working, a send and
a training start each say plainly what is wrong and that nothing was saved, and once
the disk is writable again both work, with the same Store (no restart).

The disk is real: a 2 MB tmpfs mounted for the test (so root only), filled with a file
or remounted read-only, and always unmounted afterwards."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mnist_demo.class_set import ClassSet
from mnist_demo.classroom import Role
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import RunRegistry
from mnist_demo.store import Store, StoreWriteError

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a small tmpfs as the data home needs root"
)

CONFIG = TrainConfig(epochs=1, train_size=600, test_size=100)


def digit(seed: int) -> np.ndarray:
    image = np.zeros((28, 28), np.float32)
    image[6:22, 10:18] = np.random.default_rng(seed).random((16, 8), dtype=np.float32)
    return image


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@dataclass
class Home:
    dir: Path
    store: Store
    registry: RunRegistry
    classes: ClassSet

    def fill(self) -> Path:
        """Fill the disk to the last byte; returns the filler file."""
        filler = self.dir / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"x" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        return filler

    def read_only(self) -> None:
        # Linux refuses to remount read-only while a file is open for writing: the
        # store's pooled connections are closed first, as a restarted mount would find
        # them. The Store object itself stays, and opens its connections again.
        self.store.engine.dispose()
        mount("-o", "remount,ro", str(self.dir))

    def writable(self) -> None:
        mount("-o", "remount,rw", str(self.dir))


@pytest.fixture
def home(tmp_path) -> Iterator[Home]:
    folder = tmp_path / "home"
    folder.mkdir()
    mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder))
    store = None
    try:
        store = Store(folder / "runs.sqlite")
        registry, classes = RunRegistry(store), ClassSet(store)
        registry.submit(CONFIG, role=Role.INSTRUCTOR)
        classes.add(digit(0), 0, session="a")
        yield Home(folder, store, registry, classes)
    finally:
        if store is not None:
            store.dispose()
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def reads_work(home: Home, runs: int, drawings: int) -> None:
    assert len(home.registry.list_runs()) == runs
    assert len(home.classes.newest()) == drawings
    assert home.classes.snapshot().n == drawings and home.classes.count() == drawings
    assert home.registry.active_run_id() is None and home.classes.version() >= 1


def writes_refused(home: Home, words: str) -> None:
    version = home.classes.version()
    with pytest.raises(StoreWriteError, match=rf"{words}.*nothing was saved"):
        home.classes.add(digit(1), 1, session="b", canvas_png=b"\x89PNG a canvas")
    with pytest.raises(StoreWriteError, match=rf"{words}.*nothing was saved"):
        home.registry.submit(CONFIG, role=Role.INSTRUCTOR)
    assert home.classes.version() == version
    reads_work(home, runs=1, drawings=1)  # nothing half-saved either


def writes_work(home: Home) -> None:
    home.classes.add(digit(2), 2, session="b")
    home.registry.submit(CONFIG, role=Role.INSTRUCTOR)
    reads_work(home, runs=2, drawings=2)


def test_a_full_disk_keeps_reads_refuses_writes_plainly_and_recovers(home):
    filler = home.fill()
    reads_work(home, runs=1, drawings=1)
    writes_refused(home, "is full")
    assert not [p for p in home.dir.rglob("*.tmp")]  # no temporary file left behind
    filler.unlink()  # space is back: the same objects write again
    writes_work(home)


def test_a_read_only_home_keeps_reads_refuses_writes_plainly_and_recovers(home):
    home.read_only()
    reads_work(home, runs=1, drawings=1)
    writes_refused(home, "read-only")
    # A server started on the read-only home opens it, and its pages read.
    again = Store(home.dir / "runs.sqlite")
    try:
        assert len(RunRegistry(again).list_runs()) == 1 and ClassSet(again).count() == 1
    finally:
        again.dispose()
    home.writable()
    writes_work(home)


def test_pages_that_only_read_render_on_a_full_disk(home, monkeypatch):
    """Home, Test set and the Class wall, served from a full data home: every page
    renders (the app once showed a raw RegistryCorruptError on every page), and Train
    says plainly that the disk is full when asked to start a run."""
    from streamlit.testing.v1 import AppTest

    from mnist_demo import classroom

    home.registry.request_stop(1, role=Role.INSTRUCTOR)  # nothing queued behind the test
    home.fill()
    monkeypatch.setenv("MNIST_DEMO_HOME", str(home.dir))
    monkeypatch.setenv(classroom.SOLO_ENV, "1")
    app = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
    for page in ("app_pages/home.py", "app_pages/browse.py", "app_pages/class.py"):
        at = AppTest.from_file(app, default_timeout=120)
        at.run()
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
    at = AppTest.from_file(app, default_timeout=120)
    at.run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    next(b for b in at.button if b.label == "Quick demo").click().run()
    assert any("is full" in e.value and "nothing was saved" in e.value for e in at.error), [
        e.value for e in at.error
    ]
