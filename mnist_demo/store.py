"""The store: the one database every server process and training worker shares.

One module owns it: the connection (SQLAlchemy 2 Core), the schema and its versioned
migrations (Alembic, `mnist_demo/migrations/`), server-wide settings, transactions, the
errors a user can act on, and the atomic file write that the files beside the database
(run folders, class drawings) use.

SQLite is the embedded default (a file in the data home, write-ahead log on, nothing to
install); `MNIST_DEMO_DATABASE_URL` points the same code at PostgreSQL. Writers take the
write lock when they begin (SQLite `BEGIN IMMEDIATE`; on PostgreSQL a table lock where
two writers must not interleave), so thirty students sending at once queue instead of
failing.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from mnist_demo import config
from mnist_demo.errors import DigitLabError
from mnist_demo.files import atomic_write, mirror

__all__ = ["atomic_write"]  # the one atomic file write lives in files.py

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30  # a writer waits this long for the write lock before giving up
MIGRATE_LOCK = 0x4449474954  # PostgreSQL advisory lock: one server migrates at a time

# --- the schema at head (the migrations build it; these describe it for queries) ------

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("history", sa.Text, nullable=False, server_default="{}"),
    sa.Column("epochs_done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("test_loss", sa.Float),
    sa.Column("test_accuracy", sa.Float),
    sa.Column("misclassified", sa.Integer),
    sa.Column("test_n", sa.Integer),
    sa.Column("model_path", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("pid", sa.Integer),
    sa.Column("heartbeat", sa.Float),
    # 0002: runs are engine jobs
    sa.Column("owner", sa.Text, nullable=False, server_default="instructor"),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("queued_at", sa.Float),
    sa.Column("started_at", sa.Float),
    sa.Column("resume", sa.Integer, nullable=False, server_default="0"),
    sa.Column("host", sa.Text),
    sa.Column("worker", sa.Text),
    sa.Column("stop_requested_at", sa.Float),
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("batch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("batches_per_epoch", sa.Integer, nullable=False, server_default="0"),
    # 0003: the leaderboard's private column, the run's score on the class's drawings
    sa.Column("class_accuracy", sa.Float),
    sa.Column("class_n", sa.Integer),
    # 0004: a trustworthy room
    sa.Column("phase", sa.Text),  # queued / preparing / training / scoring / saving
    sa.Column("lease_token", sa.Integer),  # the engine lease's token the run was claimed with
    sa.Column("network", sa.Text),  # the submitter's address group (fair share per person)
    sa.Column("budget_s", sa.Float),  # an experiment's allowed training seconds
    sa.Column("auto_resumes", sa.Integer, nullable=False, server_default="0"),
)

points = sa.Table(
    "points",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("position", sa.Float, nullable=False),  # epochs done, fractional
    sa.Column("loss", sa.Float),
    sa.Column("accuracy", sa.Float),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text),
)

class_sets = sa.Table(
    "class_sets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("archived_at", sa.Float),
)

drawings = sa.Table(
    "drawings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("set_id", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("session", sa.Text, nullable=False),
    sa.Column("label", sa.Integer, nullable=False),
    sa.Column("predicted", sa.Integer),
    sa.Column("confidence", sa.Float),
    sa.Column("model", sa.Text),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("image", sa.LargeBinary, nullable=False),
    sa.Column("canvas_png", sa.LargeBinary),
    sa.Column("hidden", sa.Integer, nullable=False, server_default="0"),
    sa.Column("verdict", sa.Text),  # 0003: digit / not sure / not a digit, as sent
    sa.UniqueConstraint("set_id", "digest"),
)

# 0003: every student runs the lab
students = sa.Table(
    "students",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),  # the tag in the student's signed cookie
    sa.Column("nickname", sa.Text, unique=True),
    sa.Column("hidden", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    # 0004: seats counted per person
    sa.Column("network", sa.Text),  # the address group the seat was made from
    sa.Column("last_seen", sa.Float),
    sa.Column("seat_code", sa.Text, unique=True),  # a short code that gives the seat back
)

# 0004: exactly one engine per store
engine_lease = sa.Table(
    "engine_lease",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text),
    sa.Column("token", sa.Integer, nullable=False, server_default="0"),
    sa.Column("heartbeat", sa.Float),
    sa.Column("acquired_at", sa.Float),
    sa.Column("info", sa.Text),
)

limit_events = sa.Table(
    "limit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)


# --- errors -------------------------------------------------------------------------


class StoreError(DigitLabError):
    """The database failed in a way the user can act on; the message says how."""


class StoreCorruptError(StoreError):
    """The database file is not a readable database (recovery can rebuild it)."""


class StoreWriteError(StoreError):
    """A write was refused by the disk (full, or read-only): nothing was saved."""


class StoreUnavailableError(StoreError):
    """The database server cannot be reached (PostgreSQL down, wrong address or password)."""


class StoreVersionError(StoreError):
    """The database was made by a newer version of Digit Lab; nothing was changed."""


def redacted(url: str) -> str:
    """A database URL fit to print: the password replaced by ***."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def database_url() -> str:
    """MNIST_DEMO_DATABASE_URL, or the embedded SQLite file in the data home."""
    url = os.environ.get(config.DATABASE_URL_ENV, "").strip()
    return url or sqlite_url(config.registry_path())


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def _writable(where: str) -> bool:
    """Can this process write in the folder of `where` (a file or folder path)? True
    when `where` is no local path (a PostgreSQL URL): nothing to say about it then."""
    path = Path(where)
    folder = path if path.is_dir() else path.parent
    if "://" in where or not folder.is_dir():
        return True
    return os.access(folder, os.W_OK)


def _explain(e: BaseException, where: str) -> StoreError:
    """One message a user can act on for a database or file failure. A full or
    read-only disk says so and that nothing was saved; only a file SQLite itself
    finds damaged is called unreadable (a healthy file on a full disk never is)."""
    cause = getattr(e, "orig", None) or e
    text = str(cause).strip()
    lower = text.lower()
    code = cause.errno if isinstance(cause, OSError) else None
    if isinstance(cause, OSError):
        lower = (cause.strerror or "").lower()  # not the file name, which may say "full"
    full = f"the disk holding {where} is full: free some space and try again; nothing was saved"
    read_only = f"{where} is read-only: make the data home writable; nothing was saved"
    if code in (errno.ENOSPC, errno.EDQUOT) or any(
        words in lower
        for words in ("database or disk is full", "no space left", "quota exceeded", "disk full")
    ):
        return StoreWriteError(full)
    if code == errno.EROFS or any(
        words in lower for words in ("readonly", "read-only", "read only")
    ):
        return StoreWriteError(read_only)
    if code in (errno.EACCES, errno.EPERM):
        return StoreWriteError(
            f"{where} may not be written by this server (permission denied): make the data "
            "home writable; nothing was saved"
        )
    if isinstance(cause, OSError):
        return StoreWriteError(f"writing in {where} failed ({text}); nothing was saved")
    if "not a database" in lower or "malformed" in lower or "file is encrypted" in lower:
        return StoreCorruptError(
            f"{where} is not a readable database ({text}). Start the app or run "
            "`python -m mnist_demo runs --recover`: either moves it aside and rebuilds it "
            "from the files beside it, losing no run and no class drawing."
        )
    if "password authentication failed" in lower:
        return StoreUnavailableError(
            f"the database at {where} refused the password: check MNIST_DEMO_DATABASE_URL"
        )
    if re.search(r'database "[^"]*" does not exist', lower):
        return StoreUnavailableError(
            f"the database at {where} does not exist on that server: create it, or check "
            "MNIST_DEMO_DATABASE_URL"
        )
    # SQLite's "database is locked", PostgreSQL's "canceling statement due to lock timeout"
    if "locked" in lower or "busy" in lower or "lock timeout" in lower:
        return StoreError(f"{where} is busy (another writer holds its lock): try again")
    if isinstance(e, sa.exc.OperationalError | sa.exc.InterfaceError) and (
        "connection" in lower or "server" in lower or "timeout" in lower or "refused" in lower
    ):
        return StoreUnavailableError(
            f"the database at {where} cannot be reached ({text.splitlines()[0]}): "
            "check that it is running and that MNIST_DEMO_DATABASE_URL is right"
        )
    if "unable to open" in lower or "disk i/o error" in lower:
        if not _writable(where):
            return StoreWriteError(read_only)
        if "disk i/o error" in lower and _disk_full(where):
            return StoreWriteError(full)
        return StoreWriteError(
            f"{where} cannot be opened ({text}): check that the data home exists and is writable"
        )
    return StoreError(f"{where} failed: {text}")


def explain_os_error(e: OSError, where: str) -> StoreError:
    """A file operation beside the store that failed (a full or read-only data home),
    in the words a user can act on."""
    return _explain(e, where)


def _disk_full(where: str) -> bool:
    try:
        return shutil.disk_usage(Path(where).parent).free < 64 * 1024
    except OSError:
        return False


# --- the store ------------------------------------------------------------------------


class Store:
    """A database by URL, migrated to the schema this version knows on first open.
    One object per process is enough; it is safe to share between threads."""

    def __init__(
        self,
        url: str | Path | None = None,
        *,
        migrate: bool = True,
        lock_wait_s: float | None = None,
    ):
        """`lock_wait_s`: how long a statement waits for another writer's lock before it
        fails with a StoreError (default: SQLite BUSY_TIMEOUT_S, PostgreSQL no limit). The
        engine waits less, so a frozen trainer mid-write cannot stall its rounds."""
        self.lock_wait_s = lock_wait_s
        if isinstance(url, Path):
            url = sqlite_url(url)
        self.url = url or database_url()
        try:
            parsed = sa.make_url(self.url)
        except sa.exc.ArgumentError:
            raise StoreError(
                f"MNIST_DEMO_DATABASE_URL {redacted(self.url)!r} is not a database URL: use "
                "sqlite:///path/to/file.sqlite or postgresql+psycopg://user:pass@host/db"
            ) from None
        self.dialect = parsed.get_backend_name()
        if self.dialect == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif self.dialect != "sqlite":
            raise StoreError(
                f"the database URL {redacted(self.url)} is neither SQLite nor PostgreSQL "
                "(sqlite:///… or postgresql://…)"
            )
        self.where = str(parsed.database) if self.dialect == "sqlite" else redacted(str(self.url))
        self.path: Path | None = Path(parsed.database or "") if self.is_sqlite else None
        # The data home holds what lives beside the database: run folders, drawings'
        # files. On several machines it must be shared storage (README).
        self.home = self.path.parent if self.path is not None else config.home()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreWriteError(
                f"cannot use {self.home} as the data home ({e}); set MNIST_DEMO_HOME to a "
                "folder you can write to"
            ) from e
        self.engine = self._make_engine(parsed)
        event.listen(self.engine, "after_execute", _note_mirrored_change)
        self._lock = threading.Lock()
        if migrate:
            self.migrate()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def _make_engine(self, url: sa.URL) -> Engine:
        if self.is_sqlite:
            wait_s = BUSY_TIMEOUT_S if self.lock_wait_s is None else self.lock_wait_s
            engine = sa.create_engine(
                url, connect_args={"timeout": wait_s, "check_same_thread": False}
            )

            folder = str(self.home)

            @event.listens_for(engine, "do_connect")
            def _open(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
                # A read-only data home (or one mounted read-only meanwhile): SQLite opens
                # the file read-only by itself, but a WAL database cannot then be read
                # without its shared-memory file, which it cannot create. Open it
                # read-only on purpose (immutable as the last resort), so pages that only
                # read keep working; such a connection is dropped at checkout once the
                # folder is writable again (see _fresh), so writes work without a restart.
                record.info["read_only"] = not os.access(folder, os.W_OK)
                con = sqlite3.connect(*cargs, **cparams)
                if not record.info["read_only"]:
                    return con
                tries = [f"file:{quote(cargs[0])}?mode=ro", f"file:{quote(cargs[0])}?immutable=1"]
                while True:
                    try:
                        con.execute("SELECT count(*) FROM sqlite_master").fetchall()
                        return con
                    except sqlite3.Error:
                        con.close()
                        if not tries:
                            raise
                    con = sqlite3.connect(tries.pop(0), **{**cparams, "uri": True})

            @event.listens_for(engine, "checkout")
            def _fresh(dbapi_connection: Any, record: Any, proxy: Any) -> None:
                if record.info.get("read_only") and os.access(folder, os.W_OK):
                    raise sa.exc.DisconnectionError("the data home is writable again")

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_connection: Any, record: Any) -> None:
                # Let SQLAlchemy's begin() emit BEGIN itself (see _on_begin), and use the
                # write-ahead log: readers (the wall, live charts) never wait for writers.
                # Measured: 30 simultaneous class sends 1.87 s -> 0.35 s.
                dbapi_connection.isolation_level = None
                cursor = dbapi_connection.cursor()
                with suppress(sqlite3.Error):  # a read-only folder: reads work without it
                    cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                write = conn.get_execution_options().get("write", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        return sa.create_engine(
            url,
            pool_pre_ping=True,  # a restarted PostgreSQL: reconnect rather than fail once
            pool_size=5,
            max_overflow=10,
            connect_args={"connect_timeout": 5}
            | (
                {}
                if self.lock_wait_s is None
                else {"options": f"-c lock_timeout={int(self.lock_wait_s * 1000)}"}
            ),
        )

    def describe(self) -> str:
        return self.where

    # --- transactions ---------------------------------------------------------------

    @contextmanager
    def write(self, lock: sa.Table | None = None) -> Iterator[Connection]:
        """One write transaction: all of it is saved, or none. SQLite takes its write
        lock at once; PostgreSQL locks `lock` (a table whose rows writers must not
        interleave on, e.g. ids chosen as max + 1) for the transaction."""
        changed = False
        try:
            with self.engine.connect() as con:
                con = con.execution_options(write=True)
                con.info.pop(_MIRRORED, None)
                try:
                    with con.begin():
                        if lock is not None and not self.is_sqlite:
                            con.exec_driver_sql(f"LOCK TABLE {lock.name} IN EXCLUSIVE MODE")
                        yield con
                    changed = bool(con.info.get(_MIRRORED))
                finally:
                    con.info.pop(_MIRRORED, None)
        except sa.exc.IntegrityError:
            raise  # a refusal the caller words (a duplicate), not a failure of the store
        except (sa.exc.OperationalError, sa.exc.DatabaseError, sa.exc.InterfaceError) as e:
            raise _explain(e, self.where) from e
        if changed:  # committed: a student or a setting changed; never fails the write
            mirror(self)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One consistent read (PostgreSQL: one snapshot for all its statements, as
        SQLite's read transaction has)."""
        try:
            with self.engine.connect() as con:
                if not self.is_sqlite:
                    con = con.execution_options(isolation_level="REPEATABLE READ")
                with con.begin():
                    yield con
        except (sa.exc.OperationalError, sa.exc.DatabaseError, sa.exc.InterfaceError) as e:
            raise _explain(e, self.where) from e

    def ids_given(self, con: Connection, table: sa.Table) -> None:
        """After rows were inserted with their ids given (a restore from files): the
        next id the database makes for `table` is past every id in it. SQLite does this
        by itself; PostgreSQL's sequence behind a SERIAL id does not."""
        if self.is_sqlite:
            return
        con.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)"
            ),
            {"table": table.name},
        )

    # --- settings -------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        with self.read() as con:
            return con.execute(
                sa.select(settings.c.value).where(settings.c.key == key)
            ).scalar_one_or_none()

    def set_setting(self, key: str, value: str | None, con: Connection | None = None) -> None:
        if con is None:
            with self.write() as con:
                self.set_setting(key, value, con)
            return
        if value is not None and not self.is_sqlite:
            # Two servers setting one key at once: the second's value wins, neither fails
            # (SQLite's write lock makes delete-then-insert safe; PostgreSQL's rows do not).
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            upsert = pg_insert(settings).values(key=key, value=value)
            con.execute(
                upsert.on_conflict_do_update(
                    index_elements=[settings.c.key], set_={"value": upsert.excluded.value}
                )
            )
            return
        con.execute(sa.delete(settings).where(settings.c.key == key))
        if value is not None:
            con.execute(sa.insert(settings).values(key=key, value=value))

    # --- schema versions --------------------------------------------------------------

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        return cfg

    def revision(self) -> str | None:
        """The schema version the database is at (None: no Digit Lab schema yet)."""
        from alembic.runtime.migration import MigrationContext

        with self.read() as con:
            return MigrationContext.configure(con).get_current_revision()

    def head(self) -> str:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        return head

    def migrate(self) -> None:
        """Bring the database to this version's schema, in place: a new file gets every
        table, a registry from before versioned migrations is upgraded keeping every row,
        and one made by a newer Digit Lab is refused with nothing changed."""
        from alembic import command
        from alembic.script import ScriptDirectory

        cfg = self._alembic_config()
        known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
        with self._lock:
            try:
                current = self.revision()
                if current is not None and current not in known:
                    raise StoreVersionError(
                        f"{self.where} was made by a newer version of Digit Lab (schema "
                        f"{current}; this version knows up to {self.head()}): upgrade Digit "
                        "Lab. Nothing was changed."
                    )
                if current == self.head():
                    return
                with self.write() as con:
                    if not self.is_sqlite:  # (SQLite: the write lock is already one)
                        # Replicas starting together: the others wait here, then find
                        # the schema at head in the same transaction (Alembic reads it).
                        con.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATE_LOCK)))
                    cfg.attributes["connection"] = con
                    command.upgrade(cfg, "head")
            except StoreError:
                raise
            except (sa.exc.OperationalError, sa.exc.DatabaseError) as e:
                raise _explain(e, self.where) from e

    def dispose(self) -> None:
        self.engine.dispose()


# --- the class's state mirrored beside the database (files.py) ---------------------------

_MIRRORED = "digit_lab_mirrored_change"  # connection info: this transaction changed one


def _note_mirrored_change(
    conn: Connection, statement: Any, multiparams: Any, params: Any, options: Any, result: Any
) -> None:
    """After every statement: an insert, update or delete that changed a student or a
    setting marks its transaction, and Store.write mirrors them once it commits."""
    if not isinstance(statement, sa.sql.dml.UpdateBase):
        return
    if getattr(statement.table, "name", None) not in (students.name, settings.name):
        return
    if result is not None and result.rowcount == 0:
        return
    conn.info[_MIRRORED] = True
