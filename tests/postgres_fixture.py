"""Helpers for the store's tests on both databases (fixtures: tests/conftest_pg.py).

A test module that says

    pytest_plugins = ["tests.conftest_pg"]

gets `backend` (and `store_url`): each test runs twice, on a fresh SQLite file and on a
fresh database of a real PostgreSQL (Debian's, `make postgres`), in a fresh data home.
The PostgreSQL is one cluster per session (mnist_demo.serve.postgres.LocalPostgres in a
temporary folder, without fsync), started the first time a test asks for it and
stopped by its pid at the end of the session; each test gets its own `CREATE DATABASE
test_<n>`, dropped after it.

Tests that are SQLite-only by nature (a truncated file, the write-ahead log, a registry
made by the SQLite schema before migrations) take `tmp_path` instead and say so with
`@sqlite_only("why")`.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mnist_demo.serve.postgres import LocalPostgres

BACKENDS = ["sqlite", "postgresql"]

F = TypeVar("F", bound=Callable[..., Any])


def sqlite_only(reason: str) -> Callable[[F], F]:
    """Marks a test that is about SQLite itself (`reason`): it runs on SQLite only."""

    def mark(test: F) -> F:
        test.sqlite_only = reason  # type: ignore[attr-defined]
        return test

    return mark


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SessionPostgres:
    """The session's cluster and a counter for its test databases."""

    server: LocalPostgres
    names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_database(self) -> str:
        return f"test_{next(self.names)}"


def start_postgres(prefix: str = "digit-lab-pg-") -> LocalPostgres:
    """A LocalPostgres in a new temporary folder (under /tmp: the postgres user, who
    runs it when we are root, can reach it there) on a free port, started."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    return LocalPostgres(folder, free_port(), durable=False).start()


def remove_postgres(server: LocalPostgres) -> None:
    """Stop it by its pid, check nothing of it is left, remove its folder."""
    server.stop()
    left = subprocess.run(
        ["pgrep", "-af", str(server.pgdata)], capture_output=True, text=True
    ).stdout.strip()
    shutil.rmtree(server.data_dir, ignore_errors=True)
    assert not left, f"PostgreSQL processes left behind: {left}"


@dataclass
class Backend:
    """One test's database and data home. `url` is what Store, RunRegistry and ClassSet
    take; `replace()` swaps the database for a fresh, empty one (the files beside it,
    run folders and class drawings, stay), as a lost or replaced database would."""

    name: str
    home: Path
    url: str
    _server: LocalPostgres | None = None
    _database: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.name == "sqlite"

    def replace(self) -> None:
        if self._server is None:
            path = self.home / "runs.sqlite"
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            return
        assert self._database is not None
        self._server.drop_database(self._database)
        self._server.create_database(self._database)


__all__ = [
    "BACKENDS",
    "Backend",
    "SessionPostgres",
    "free_port",
    "remove_postgres",
    "sqlite_only",
    "start_postgres",
]
