"""Fixtures for the store's tests on SQLite and on a real PostgreSQL: a test module
loads them with `pytest_plugins = ["tests.conftest_pg"]` (tests/conftest.py stays as it
is). What they do and why: tests/postgres_fixture.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mnist_demo.store import sqlite_url
from tests.postgres_fixture import (
    BACKENDS,
    Backend,
    SessionPostgres,
    remove_postgres,
    start_postgres,
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[SessionPostgres]:
    server = start_postgres()
    try:
        yield SessionPostgres(server)
    finally:
        remove_postgres(server)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, monkeypatch) -> Iterator[Backend]:
    """A fresh, empty database on each backend, with its own data home (tmp_path)."""
    home = tmp_path
    monkeypatch.setenv("MNIST_DEMO_HOME", str(home))  # PostgreSQL's files beside it
    if request.param == "sqlite":
        yield Backend("sqlite", home, sqlite_url(home / "runs.sqlite"))
        return
    pg: SessionPostgres = request.getfixturevalue("postgres")
    name = pg.new_database()
    url = pg.server.create_database(name)
    try:
        yield Backend("postgresql", home, url, pg.server, name)
    finally:
        if pg.server.running:
            pg.server.drop_database(name)


@pytest.fixture
def store_url(backend: Backend) -> str:
    return backend.url
