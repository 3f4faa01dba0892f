"""A PostgreSQL of Digit Lab's own: a cluster of Debian's `postgresql` package started
from nothing in a folder (`initdb`, then `pg_ctl`), for the store's tests and for the
lecture hall (`make hall`). No system service and no cluster of the package is used.

    pg = LocalPostgres(home / "postgres", port=5433).start()
    store = Store(pg.url)            # postgresql+psycopg://digitlab:…@127.0.0.1:5433/digitlab
    ...
    pg.stop()                        # pg_ctl stop -m fast; nothing left running

Its folder holds everything: `pgdata/` (the cluster), `socket/` (its unix socket, the
administrator's way in), `password` (the app user's generated password, mode 600) and
`postgres.log`. Started again on the same folder it finds its data and its password.

PostgreSQL refuses to run as root: as root the cluster is made and run by the `postgres`
OS user (the package creates it), who then owns the folder; the folder's parents must let
that user through.
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from mnist_demo.errors import DigitLabError
from mnist_demo.serve.processes import Piece, pid_alive

PREFERRED_VERSION = "15"  # Debian 12's; any installed version works
BIN_ROOT = Path("/usr/lib/postgresql")
DATABASE = "digitlab"
USER = "digitlab"
SUPERUSER = "postgres"  # the cluster's administrator, reached only through its socket
HOST = "127.0.0.1"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60


class PostgresError(DigitLabError):
    """The local PostgreSQL cannot be set up or started; the message says why (one line)."""


class PostgresNotInstalledError(PostgresError):
    """Debian's postgresql package is not installed."""


def bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl: PostgreSQL 15's, else the newest installed."""
    found = [
        p.parent
        for p in BIN_ROOT.glob("*/bin/initdb")
        if (p.parent / "pg_ctl").exists() and p.parent.parent.name.isdigit()
    ]
    found.sort(key=lambda p: (p.parent.name == PREFERRED_VERSION, int(p.parent.name)))
    return found[-1] if found else None


def install_hint() -> str:
    """The one line that says how to get the binaries."""
    if os.geteuid() == 0:
        return "run `apt-get install -y postgresql` (or `make postgres`)"
    return "run `sudo apt-get install -y postgresql` (or `sudo make postgres`)"


class LocalPostgres:
    """A PostgreSQL cluster in `data_dir`, on 127.0.0.1:`port`, with a database `digitlab`
    owned by a user `digitlab` whose password is generated once and kept in the folder.
    `start()` makes the cluster the first time and starts it; `stop()` stops it."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        database: str = DATABASE,
        user: str = USER,
        durable: bool = True,
    ) -> None:
        """`durable=False` (tests) skips fsync: quicker, but a machine crash may lose the
        data. Raises PostgresNotInstalledError when the binaries are missing."""
        found = bin_dir()
        if found is None:
            raise PostgresNotInstalledError(
                f"PostgreSQL is not installed (no initdb under {BIN_ROOT}/*/bin): {install_hint()}"
            )
        self.bin = found
        self.data_dir = Path(data_dir).absolute()
        self.port = int(port)
        self.database = database
        self.user = user
        self.durable = durable
        self.pgdata = self.data_dir / "pgdata"
        self.socket_dir = self.data_dir / "socket"
        self.password_file = self.data_dir / "password"
        self.log_file = self.data_dir / "postgres.log"
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PostgresNotInstalledError(
                    f"PostgreSQL may not run as root and there is no '{SUPERUSER}' user to run "
                    "it: reinstall it with `apt-get install --reinstall postgresql-common`"
                ) from None

    # --- where to reach it ---------------------------------------------------------------

    @property
    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except OSError:
            raise PostgresError(
                f"no password in {self.password_file}: start the PostgreSQL in "
                f"{self.data_dir} first"
            ) from None

    @property
    def url(self) -> str:
        """postgresql+psycopg://user:password@127.0.0.1:port/digitlab"""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """The URL of another database of this cluster, as the same user."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{HOST}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (from postmaster.pid), else None."""
        lines = self._pid_file_lines()
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        return pid if pid_alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _pid_file_lines(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    # --- start and stop ------------------------------------------------------------------

    def start(self) -> LocalPostgres:
        """Make the cluster if the folder has none, start it (waiting until it takes
        connections), and make sure the user, its password and the database exist.
        A cluster of this folder already running on this port is taken over as it is."""
        pid = self.pid
        if pid is not None:
            lines = self._pid_file_lines()
            running_port = lines[3].strip() if len(lines) > 3 else "?"
            if running_port != str(self.port):
                raise PostgresError(
                    f"the PostgreSQL in {self.data_dir} already runs (pid {pid}) on port "
                    f"{running_port}, not {self.port}: stop it first (`{self.bin}/pg_ctl stop "
                    f"-D {self.pgdata}`)"
                )
        else:
            self._prepare()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            self._write_settings()
            self._pg_ctl_start()
        self.ensure_user_and_database()
        return self

    def prepare(self) -> None:
        """The folder, the cluster (made the first time) and its settings, for a
        postmaster run in the foreground by a supervisor (`piece`)."""
        if self.pid is not None:
            raise PostgresError(
                f"the PostgreSQL in {self.data_dir} already runs (pid {self.pid}): stop it "
                f"first (`{self.bin}/pg_ctl stop -D {self.pgdata}`)"
            )
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self._write_settings()

    def piece(self, log: Path) -> Piece:
        """The postmaster in the foreground, as serve/processes.py runs it: ready when it
        takes connections; SIGINT is its fast shutdown (every commit kept)."""
        owner = self._owner
        return Piece(
            "postgres",
            [str(self.bin / "postgres"), "-D", str(self.pgdata)],
            log,
            ready=self._takes_connections,
            ready_timeout_s=START_TIMEOUT_S,
            healthy=self._takes_connections,
            stop_signal=signal.SIGINT,
            stop_timeout_s=STOP_TIMEOUT_S,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
        )

    def _takes_connections(self) -> bool:
        return (
            self._run(
                [str(self.bin / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port)]
            ).returncode
            == 0
        )

    def stop(self) -> None:
        """A fast shutdown (open sessions are ended, everything committed is kept), by
        the postmaster's pid; returns once no process of it is left."""
        pid = self.pid
        if pid is None:
            return
        result = self._run(
            [str(self.bin / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w",
             "-t", str(STOP_TIMEOUT_S)],
        )  # fmt: skip
        if not _wait_gone(pid, 5 if result.returncode == 0 else 0):
            for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 10)):
                # SIGINT: a fast shutdown; SIGQUIT: immediate (recovery at next start)
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if _wait_gone(pid, wait):
                    break
        if pid_alive(pid):
            raise PostgresError(f"the PostgreSQL in {self.data_dir} (pid {pid}) did not stop")

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- databases -----------------------------------------------------------------------

    def admin(self) -> Any:
        """An autocommit connection as the cluster's administrator, through its socket."""
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str) -> str:
        """A new, empty database owned by the user; returns its URL."""
        from psycopg import sql

        with self.admin() as con:
            con.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.user)
                )
            )
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any session still on it (a no-op if it is gone)."""
        from psycopg import sql

        with self.admin() as con:
            con.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # --- the steps -----------------------------------------------------------------------

    def _run(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """A PostgreSQL program, as the postgres user when we are root."""
        if self._owner is not None:
            kwargs.update(user=self._owner.pw_uid, group=self._owner.pw_gid, extra_groups=[])
        return subprocess.run(
            args, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs
        )

    def _prepare(self) -> None:
        """The folder, its socket folder and the password, owned as they must be."""
        try:
            for folder in (self.data_dir, self.socket_dir):
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o700)
            if not self.password_file.exists():
                fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(24) + "\n")
            self.password_file.chmod(0o600)
            if self._owner is not None:
                for path in (self.data_dir, self.socket_dir):
                    os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
                if self.log_file.exists():
                    os.chown(self.log_file, self._owner.pw_uid, self._owner.pw_gid)
        except OSError as e:
            raise PostgresError(f"cannot use {self.data_dir} for PostgreSQL: {e}") from e
        if self._owner is not None and self._run(["test", "-w", str(self.data_dir)]).returncode:
            blocked = next(
                (
                    p
                    for p in reversed(self.data_dir.parents)
                    if self._run(["test", "-x", str(p)]).returncode
                ),
                self.data_dir,
            )
            raise PostgresError(
                f"PostgreSQL runs as the '{SUPERUSER}' user, who cannot reach {self.data_dir} "
                f"({blocked} is closed to other users): choose a folder it can reach, or "
                f"`chmod o+x {blocked}`"
            )

    def _initdb(self) -> None:
        args = [
            str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER,
            "--auth-local=trust",  # the socket folder is the owner's alone (mode 700)
            "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
        ]  # fmt: skip
        if not self.durable:
            args.append("--no-sync")
        result = self._run(args)
        if result.returncode != 0:
            raise PostgresError(
                f"initdb failed in {self.pgdata}: {_last_line(result.stderr or result.stdout)}"
            )
        with open(self.pgdata / "postgresql.conf", "a") as f:
            f.write("\ninclude_if_exists = 'digit_lab.conf'  # written by Digit Lab at start\n")

    def _write_settings(self) -> None:
        """Where it listens, rewritten at every start (the port may change)."""
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "max_connections": "200",  # a lecture hall's replicas each keep a pool
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        text = "".join(f"{k} = '{v.replace(chr(39), chr(39) * 2)}'\n" for k, v in settings.items())
        path = self.pgdata / "digit_lab.conf"
        path.write_text(text)
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _pg_ctl_start(self) -> None:
        result = self._run(
            [str(self.bin / "pg_ctl"), "start", "-w", "-t", str(START_TIMEOUT_S),
             "-D", str(self.pgdata), "-l", str(self.log_file)],
            start_new_session=True,  # the terminal's Ctrl+C is for its caller to handle
        )  # fmt: skip
        if result.returncode != 0 or self.pid is None:
            raise PostgresError(
                f"PostgreSQL did not start on {HOST}:{self.port} "
                f"({_last_line(self._log_tail()) or _last_line(result.stderr)}); "
                f"see {self.log_file}"
            )

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in lines[-20:] if "FATAL" in line or "ERROR" in line]
        return (errors or lines[-1:] or [""])[-1]

    def ensure_user_and_database(self) -> None:
        from psycopg import sql

        password = self.password
        try:
            with self.admin() as con:
                exists = con.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,)
                ).fetchone()
                verb = "ALTER" if exists else "CREATE"
                con.execute(
                    sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(self.user), sql.Literal(password)
                    )
                )
                if not con.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                ).fetchone():
                    con.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(self.database), sql.Identifier(self.user)
                        )
                    )
        except Exception as e:
            raise PostgresError(
                f"PostgreSQL started on {HOST}:{self.port} but its user and database could not "
                f"be made: {_last_line(str(e))}"
            ) from e

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"LocalPostgres({str(self.data_dir)!r}, port={self.port}, {state})"


def _wait_gone(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)
    return True


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


__all__ = [
    "DATABASE",
    "USER",
    "LocalPostgres",
    "PostgresError",
    "PostgresNotInstalledError",
    "bin_dir",
    "install_hint",
]
