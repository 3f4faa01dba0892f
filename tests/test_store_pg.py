"""The store on a real PostgreSQL, when things go wrong: a wrong password, an unknown
scheme, nothing listening, a missing database, a database made by a newer Digit Lab are
one clear error each, naming the URL without its password; a server stopped
mid-lesson makes reads and writes say the store is unavailable, saving nothing, and the
same objects work again once it is back. And LocalPostgres itself: started again it
finds its data, stopped it leaves nothing, without the package it says what to install.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa

from mnist_demo import queue
from mnist_demo.class_set import ClassSet
from mnist_demo.classroom import Role
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import RunRegistry
from mnist_demo.serve import postgres as postgres_module
from mnist_demo.serve.postgres import LocalPostgres, PostgresError, PostgresNotInstalledError
from mnist_demo.serve.processes import pid_alive
from mnist_demo.store import (
    Store,
    StoreError,
    StoreUnavailableError,
    StoreVersionError,
    redacted,
)
from tests.postgres_fixture import free_port, remove_postgres, start_postgres

pytest_plugins = ["tests.conftest_pg"]  # `postgres`: the session's cluster; `store_url`

CONFIG = TrainConfig(epochs=1, train_size=600, test_size=100)


@pytest.fixture
def database(postgres, tmp_path, monkeypatch):
    """A fresh database of the session's cluster (its URL), with its own data home."""
    monkeypatch.setenv("MNIST_DEMO_HOME", str(tmp_path))
    name = postgres.new_database()
    url = postgres.server.create_database(name)
    yield url
    postgres.server.drop_database(name)


def one_clear_error(call, kind: type[StoreError], *secrets: str) -> str:
    """`call` raises exactly `kind`: one line, naming no password. Returns the message."""
    with pytest.raises(StoreError) as caught:
        call()
    assert type(caught.value) is kind, repr(caught.value)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    for secret in secrets:
        assert secret not in message
    return message


def digit(seed: int) -> np.ndarray:
    image = np.zeros((28, 28), np.float32)
    image[6:22, 10:18] = np.random.default_rng(seed).random((16, 8), dtype=np.float32)
    return image


# --- one clear message each ---------------------------------------------------------------


def test_a_wrong_password_is_one_clear_error_without_the_password(postgres, database):
    real = postgres.server.password
    wrong = database.replace(real, "not-the-password")
    message = one_clear_error(lambda: Store(wrong), StoreUnavailableError, real, "not-the-password")
    assert "refused the password" in message and "MNIST_DEMO_DATABASE_URL" in message
    assert redacted(wrong) in message and ":***@" in message


def test_an_unknown_scheme_is_one_clear_error_without_the_password(postgres, database):
    real = postgres.server.password
    for scheme in ("mysql+pymysql", "mssql", "redis"):
        url = scheme + database[database.index("://") :]
        message = one_clear_error(lambda url=url: Store(url), StoreError, real)
        assert "neither SQLite nor PostgreSQL" in message and ":***@" in message


def test_a_server_not_listening_is_one_clear_error(postgres, database):
    real = postgres.server.password
    nobody = database.replace(f":{postgres.server.port}/", f":{free_port()}/")
    message = one_clear_error(lambda: Store(nobody), StoreUnavailableError, real)
    assert "cannot be reached" in message and "check that it is running" in message
    assert redacted(nobody) in message


def test_a_database_that_does_not_exist_is_one_clear_error(postgres, database):
    missing = postgres.server.url_for("no_such_class")
    message = one_clear_error(
        lambda: Store(missing), StoreUnavailableError, postgres.server.password
    )
    assert "does not exist" in message and redacted(missing) in message


def test_a_database_made_by_a_newer_digit_lab_is_refused_and_left_unchanged(postgres, database):
    store = Store(database)  # migrated to head
    RunRegistry(store).submit(CONFIG, role=Role.INSTRUCTOR)
    with store.write() as con:
        con.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    store.dispose()

    def contents() -> tuple:
        engine = sa.create_engine(database)
        try:
            with engine.connect() as con:
                tables = sorted(sa.inspect(con).get_table_names())
                columns = {t: [c["name"] for c in sa.inspect(con).get_columns(t)] for t in tables}
                version = con.execute(sa.text("SELECT version_num FROM alembic_version")).all()
                runs = con.execute(sa.text("SELECT * FROM runs ORDER BY id")).all()
            return tables, columns, version, runs
        finally:
            engine.dispose()

    before = contents()
    message = one_clear_error(lambda: Store(database), StoreVersionError, postgres.server.password)
    assert "newer version of Digit Lab" in message and "Nothing was changed" in message
    assert redacted(database) in message
    assert contents() == before


# --- several servers at once (on both backends) -------------------------------------------


def run_together(n: int, call) -> list:
    """`call(i)` in n threads released at once; returns their results (raises the first
    error)."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


def test_servers_starting_together_on_an_empty_database_migrate_it_once(store_url):
    stores = run_together(4, lambda i: Store(store_url))
    assert {s.revision() for s in stores} == {stores[0].head()}
    RunRegistry(stores[0]).submit(CONFIG, role=Role.INSTRUCTOR)
    assert [len(RunRegistry(s).list_runs()) for s in stores] == [1, 1, 1, 1]


def test_servers_setting_one_key_together_neither_fails(store_url):
    Store(store_url).dispose()  # migrated
    run_together(8, lambda i: Store(store_url).set_setting("colour", f"colour {i}"))
    assert Store(store_url).setting("colour") in {f"colour {i}" for i in range(8)}


# --- PostgreSQL stopped mid-lesson ------------------------------------------------------


@pytest.fixture
def own_postgres():
    """A cluster of this test's own, to stop and start again."""
    server = start_postgres("digit-lab-pg-own-")
    yield server
    remove_postgres(server)


def test_postgresql_stopped_mid_lesson_then_back_the_same_store_works_again(
    own_postgres, tmp_path, monkeypatch
):
    monkeypatch.setenv("MNIST_DEMO_HOME", str(tmp_path))
    store = Store(own_postgres.url)
    registry, classes = RunRegistry(store), ClassSet(store)
    run = registry.submit(CONFIG, role=Role.INSTRUCTOR)
    kept = classes.add(digit(1), 1, session="a")
    files_before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    version = classes.version()

    own_postgres.stop()
    password = own_postgres.password
    refused = {
        "list runs": registry.list_runs,
        "read a run": lambda: registry.get(run.id),
        "read the wall": lambda: classes.newest(),
        "read a setting": lambda: store.setting("anything"),
        "send a drawing": lambda: classes.add(digit(2), 2, session="b"),
        "start a run": lambda: registry.submit(CONFIG, role=Role.INSTRUCTOR),
        "claim a run": lambda: queue.claim_next(registry, "worker-1"),
        "write a setting": lambda: store.set_setting("colour", "blue"),
    }
    for what, call in refused.items():
        message = one_clear_error(call, StoreUnavailableError, password)
        assert "cannot be reached" in message, what
    # Nothing half-written beside the database either.
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == files_before

    own_postgres.start()  # the same port: the same objects, no restart of theirs
    assert [r.id for r in registry.list_runs()] == [run.id]
    assert [d.id for d in classes.newest()] == [kept.id] and classes.version() == version
    assert store.setting("colour") is None
    sent = classes.add(digit(2), 2, session="b")
    assert sent.id > kept.id and queue.claim_next(registry, "worker-1").id == run.id


# --- LocalPostgres ----------------------------------------------------------------------


def test_local_postgres_started_again_finds_its_data_and_stops_leaving_nothing(own_postgres):
    store = Store(own_postgres.url)
    store.set_setting("colour", "green")
    store.dispose()
    password, folder = own_postgres.password, own_postgres.data_dir
    assert oct(own_postgres.password_file.stat().st_mode)[-3:] == "600"
    pid = own_postgres.pid
    assert pid is not None
    own_postgres.stop()
    assert own_postgres.pid is None and not pid_alive(pid)  # (a zombie is gone)
    own_postgres.stop()  # stopping a stopped one is a no-op

    again = LocalPostgres(folder, free_port(), durable=False)  # another port, same folder
    with again:
        assert again.password == password and again.url != own_postgres.url
        store = Store(again.url)
        assert store.setting("colour") == "green"
        store.dispose()
        with pytest.raises(PostgresError, match=r"already runs \(pid \d+\) on port"):
            LocalPostgres(folder, free_port()).start()
        assert LocalPostgres(folder, again.port).start().pid == again.pid  # taken over
    assert again.pid is None


@pytest.mark.parametrize(("uid", "command"), [(0, "apt-get"), (1000, "sudo apt-get")])
def test_without_the_package_local_postgres_says_what_to_install(
    tmp_path, monkeypatch, uid, command
):
    monkeypatch.setattr(postgres_module, "BIN_ROOT", tmp_path / "nothing-here")
    monkeypatch.setattr(postgres_module.os, "geteuid", lambda: uid)
    with pytest.raises(PostgresNotInstalledError) as caught:
        LocalPostgres(tmp_path / "pg", 5499)
    message = str(caught.value)
    assert "\n" not in message and f"`{command} install -y postgresql`" in message
    assert not (tmp_path / "pg").exists()
