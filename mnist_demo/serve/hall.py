"""One supervisor for every size of Digit Lab: `make run`, `make class`, `make hall`.

    store     SQLite (a file: nothing to start)  │  PostgreSQL (LocalPostgres, hall)
    engine    python -m mnist_demo engine: the store's lease, a local Ray head, trainers
    web       N Streamlit servers (1: make run / make class; N: make hall)
    proxy     Debian's nginx in front, sticky sessions (hall only)

`make run` is a hall of one web server on SQLite without nginx (solo, loopback);
`make class` the same on every interface with roles; `make hall` PostgreSQL, N replicas
on loopback and nginx on the hall's port. The same code starts the pieces in that order,
each waited for (PostgreSQL takes connections, the engine holds the store's lease, each
web server's /_stcore/health answers, then the same through nginx), watches them and
restarts any that dies with back-off (serve/processes.py: one that keeps dying is left
down, said so), and on Ctrl+C (or SIGTERM) stops them in the reverse order: nginx, the
web servers, the engine (which asks running runs to stop, each keeping its last
finished epoch), PostgreSQL last. Nothing is left running.

When a piece dies mid-lesson:
- a web server: started again on its port; its browsers reconnect (through nginx, to
  another replica meanwhile) and show the run live with every point (the store has them);
- the engine: started again; it takes the lease over from its dead predecessor, stops
  what that one left (its Ray head) and resumes the interrupted runs from their last
  epoch;
- its Ray head: the engine notices within a second, marks the runs interrupted and ends;
  it is started again as above;
- PostgreSQL: started again; meanwhile pages say the class's database is not answering
  and trainers keep their points and retry;
- nginx: started again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mnist_demo import config
from mnist_demo.config import DATABASE_URL_ENV, SERVER_ENV, TRUSTED_PROXY_ENV
from mnist_demo.errors import DigitLabError
from mnist_demo.serve.processes import Piece, Processes, StartError

ROOT = config.PACKAGE_DIR.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "digitlab.conf.template"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/bin/nginx")
COOKIE = "dl_replica"
STREAMLIT_UPLOAD_MB = 10  # .streamlit/config.toml server.maxUploadSize
START_TIMEOUT_S = 180.0  # a web server's first start imports TensorFlow: 5-10 s each, 2 cores
ENGINE_TIMEOUT_S = 120.0
REPLICA_STOP_S = 20.0
ENGINE_STOP_S = 120.0  # the engine waits up to 60 s for running runs to stop
NGINX_STOP_S = 10.0
POSTGRES_STOP_S = 60.0


class HallError(DigitLabError):
    """The lecture hall cannot start; the message says why and what to do (one line)."""


def install_hint(missing: list[str]) -> str:
    packages = " ".join(missing)
    if os.geteuid() == 0:
        targets = packages.replace("postgresql", "postgres")
        return f"run `apt-get install -y {packages}` (or `make {targets}`)"
    return f"run `sudo apt-get install -y {packages}`"


def nginx_binary() -> str | None:
    for path in NGINX_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("nginx")


def missing_packages(*, postgres: bool = True, nginx: bool = True) -> list[str]:
    from mnist_demo.serve.postgres import bin_dir

    missing = []
    if nginx and nginx_binary() is None:
        missing.append("nginx")
    if postgres and bin_dir() is None:
        missing.append("postgresql")
    return missing


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, taken: set[int]) -> int:
    """`preferred` when it is free (and not already given out), else one the OS picks."""
    if preferred and preferred not in taken and 0 < preferred < 65536 and port_free(preferred):
        return preferred
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port


# --- the nginx configuration ---------------------------------------------------------


def replica_name(i: int) -> str:
    return f"r{i}"


def render_nginx_conf(
    *,
    prefix: Path,
    port: int,
    replica_ports: list[int],
    listen: str = "0.0.0.0",
    worker_user: str | None = None,
    template: Path = TEMPLATE,
) -> str:
    """deploy/nginx/digitlab.conf.template with this hall's ports and folders."""
    n = len(replica_ports)
    names = [replica_name(i) for i in range(1, n + 1)]
    share = int(10000 / n) / 100  # split_clients takes at most two decimals
    split = [f"        {share:.2f}% {name};" for name in names[:-1]] + [f"        * {names[-1]};"]
    known = [f"        {name} {name};" for name in names]
    served = [
        f'        "~127\\.0\\.0\\.1:{p}$" {name};'
        for name, p in zip(names, replica_ports, strict=True)
    ]
    upstreams = []
    for name, p in zip(names, replica_ports, strict=True):
        lines = [f"    upstream dl_{name} {{"]
        lines.append(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;")
        lines += [f"        server 127.0.0.1:{q} backup;" for q in replica_ports if q != p]
        lines.append("    }")
        upstreams.append("\n".join(lines))
    health = []
    for name, p in zip(names, replica_ports, strict=True):
        health.append(
            f"        location = /healthz/{name} {{\n"
            f"            access_log off;\n"
            f"            add_header Cache-Control no-store always;\n"
            f"            proxy_next_upstream off;\n"
            f"            proxy_pass http://127.0.0.1:{p}/_stcore/health;\n"
            f"        }}"
        )
    values = {
        "PREFIX": str(prefix),
        "REPLICAS": str(n),
        "WORKERS": "2",
        "USER_LINE": f"user {worker_user};" if worker_user else "# (not root: no user switch)",
        "UPLOAD_MB": str(STREAMLIT_UPLOAD_MB),
        "BODY_MB": str(STREAMLIT_UPLOAD_MB + 6),
        "SPLIT": "\n".join(split),
        "KNOWN": "\n".join(known),
        "SERVED": "\n".join(served),
        "UPSTREAMS": "\n\n".join(upstreams),
        "LISTEN": listen,
        "PORT": str(port),
        "HEALTH": "\n".join(health),
    }
    text = template.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise HallError(f"{template} has a placeholder the hall does not fill")
    return text


# --- the installation ----------------------------------------------------------------


@dataclass
class Hall:
    """One installation on this machine, of any size. `start()` brings every piece up in
    order (or raises, having stopped what it started); `watch()` keeps them up until
    `processes.stopping` is set; `stop()` takes them down in the reverse order."""

    home: Path
    replicas: int = 1
    port: int = 8501
    listen: str = "127.0.0.1"
    postgres: bool = False  # False: the SQLite file in the data home
    nginx: bool = False  # in front of the web servers, on `port`
    solo: bool = False  # every browser is the instructor (make run)
    postgres_port: int = 5433
    instructor_code: str = ""
    say: Callable[[str], None] = print
    durable: bool = True
    processes: Processes = field(default_factory=Processes)
    replica_ports: list[int] = field(default_factory=list)
    database_url: str = ""
    pg: object | None = None
    _lock: IO[str] | None = None

    @property
    def dir(self) -> Path:
        return self.home / "hall"

    @property
    def nginx_prefix(self) -> Path:
        return self.dir / "nginx"

    @property
    def nginx_conf(self) -> Path:
        return self.nginx_prefix / "nginx.conf"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def url(self) -> str:
        """Where this machine reaches the front: nginx (or the one web server) listens on
        `listen`; every interface includes loopback, one address may not."""
        host = "127.0.0.1" if self.listen in ("0.0.0.0", "") else self.listen
        return f"http://{host}:{self.port}"

    # -- start ------------------------------------------------------------------------

    def start(self) -> Hall:
        """Call from the main thread: a child is told to stop when the thread that
        started it ends (serve/processes.py)."""
        self.processes.say = self.say
        missing = missing_packages(postgres=self.postgres, nginx=self.nginx)
        if missing:
            raise HallError(
                f"the lecture hall needs {' and '.join(missing)}: {install_hint(missing)}"
            )
        if self.replicas < 1:
            raise HallError("--replicas must be at least 1")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / "hall.lock", "w")  # noqa: SIM115 (held while it runs)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise HallError(
                f"Digit Lab already runs on {self.home} (make run, class or hall)"
            ) from None
        if not port_free(self.port, self.listen if self.listen != "0.0.0.0" else ""):
            raise HallError(f"port {self.port} is taken: choose another with --port")
        try:
            self._start_store()
            self._start_engine()
            self._start_web_servers()
            if self.nginx:
                self._start_nginx()
        except StartError as e:
            self.stop()
            raise HallError(str(e)) from None
        except BaseException:
            self.stop()
            raise
        return self

    def _start_store(self) -> None:
        from mnist_demo.store import Store, database_url

        if not self.postgres:
            self.database_url = database_url()
            Store(self.database_url).dispose()  # migrated once, before any server opens it
            return
        from mnist_demo.serve.postgres import LocalPostgres

        port = pick_port(self.postgres_port, {self.port})
        pg = LocalPostgres(self._postgres_dir(), port, durable=self.durable)
        self.pg = pg
        self.say(f"PostgreSQL on 127.0.0.1:{port} ({pg.data_dir})")
        pg.prepare()
        self.processes.start(pg.piece(self.logs / "postgres.log"))
        pg.ensure_user_and_database()
        self.database_url = pg.url
        Store(self.database_url).dispose()

    def _postgres_dir(self) -> Path:
        """<home>/hall/postgres, unless PostgreSQL's own user cannot reach it: run as root
        with the default data home (/root is closed to other users), the cluster lives in
        /var/lib/digit-lab/<the home's hash>/ instead, still one per data home."""
        wanted = self.dir / "postgres"
        if os.geteuid() != 0:
            return wanted
        probe = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(self.dir)],
            capture_output=True,
        )
        if probe.returncode == 0:
            return wanted
        digest = hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:12]
        moved = Path("/var/lib/digit-lab") / digest / "postgres"
        self.say(f"{self.dir} is closed to the postgres user; its cluster is in {moved}")
        return moved

    def _env(self) -> dict[str, str]:
        from mnist_demo import classroom

        env = dict(os.environ)
        env.pop(classroom.SOLO_ENV, None)
        env.pop(TRUSTED_PROXY_ENV, None)
        if self.solo:
            env[classroom.SOLO_ENV] = "1"
        else:
            env[classroom.CODE_ENV] = self.instructor_code
        if self.nginx:  # only the hall's own nginx may say who the client is
            env[TRUSTED_PROXY_ENV] = "127.0.0.1"
        env["FORWARDED_ALLOW_IPS"] = classroom.forwarded_allow_ips(env.get(TRUSTED_PROXY_ENV))
        env["MNIST_DEMO_HOME"] = str(self.home)
        env[DATABASE_URL_ENV] = self.database_url
        # Thirty sessions' threads each get a glibc malloc arena that keeps freed memory:
        # measured (benchmarks/upload_memory.py), 30 photo uploads at once peaked 0.8-1.0
        # GB above the server with the default arenas and 0.46 GB with two.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return env

    def _start_engine(self) -> None:
        from mnist_demo.serve import engine
        from mnist_demo.store import Store

        store = Store(self.database_url)
        try:
            current = engine.status(store)
            if current.running:  # another installation's engine serves this store
                self.say(f"Training engine: already running (Ray at {current.address})")
                return
            self.say("Training engine: starting (Ray, on this machine only)")
            self.processes.start(
                Piece(
                    "engine",
                    [sys.executable, "-m", "mnist_demo", "engine"],
                    self.logs / "engine.log",
                    env=self._env(),
                    cwd=ROOT,
                    ready=lambda: engine.status(store).running,
                    ready_timeout_s=ENGINE_TIMEOUT_S,
                    stop_timeout_s=ENGINE_STOP_S,
                    exit_codes_final=(engine.EXIT_LEASE_HELD,),
                )
            )
        finally:
            store.dispose()

    def _start_web_servers(self) -> None:
        if self.nginx:  # replicas on loopback ports behind nginx
            taken = {self.port, getattr(self.pg, "port", 0)}
            for _ in range(self.replicas):
                port = pick_port(0, taken)
                taken.add(port)
                self.replica_ports.append(port)
        else:
            self.replica_ports = [self.port]
        self.processes.start_all([self._web_piece(i) for i in range(1, self.replicas + 1)])
        if self.nginx:
            ports = ", ".join(map(str, self.replica_ports))
            servers = "1 web server" if self.replicas == 1 else f"{self.replicas} web servers"
            self.say(f"{servers} on 127.0.0.1: {ports}")

    def _web_piece(self, i: int) -> Piece:
        """Web server i (1-based) on its port, named for the sidebar ("server i of n")."""
        env = self._env()
        if self.replicas > 1:
            env[SERVER_ENV] = f"server {i} of {self.replicas}"
        port = self.replica_ports[i - 1]
        address = "127.0.0.1" if self.nginx else self.listen
        command = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
            "--server.address", address, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        health = f"http://127.0.0.1:{port}/_stcore/health"
        return Piece(
            web_server_name(i, self.replicas),
            command,
            self.logs / f"{replica_name(i)}.log",
            env=env,
            cwd=ROOT,
            ready=lambda: _answers(health),
            ready_timeout_s=START_TIMEOUT_S,
            healthy=lambda: _answers(health, timeout=5),
            stop_timeout_s=REPLICA_STOP_S,
        )

    def _start_nginx(self) -> None:
        nginx = nginx_binary()
        assert nginx is not None
        worker_user = None
        temp = self.nginx_prefix / "temp"
        for sub in ("logs", "temp/client_body", "temp/proxy", "temp/fastcgi", "temp/uwsgi",
                    "temp/scgi"):  # fmt: skip
            (self.nginx_prefix / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the master starts as root: workers drop to an unprivileged user
            worker_user = "www-data" if _user_exists("www-data") else "nobody"
            entry = pwd.getpwnam(worker_user)
            for path in [temp, *temp.iterdir()]:
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.nginx_conf.write_text(
            render_nginx_conf(
                prefix=self.nginx_prefix,
                port=self.port,
                replica_ports=self.replica_ports,
                listen=self.listen,
                worker_user=worker_user,
            )
        )
        args = [nginx, "-c", str(self.nginx_conf), "-p", str(self.nginx_prefix)]
        args += ["-e", str(self.nginx_prefix / "logs" / "error.log")]
        check = subprocess.run([*args, "-t", "-q"], capture_output=True, text=True)
        if check.returncode != 0:
            emerg = [line for line in check.stderr.splitlines() if "[emerg]" in line]
            raise HallError(
                f"nginx refused {self.nginx_conf}: {_last(emerg[0] if emerg else check.stderr)}"
            )
        last = f"{self.url}/healthz/{replica_name(self.replicas)}"
        # SIGTERM, a fast stop: a graceful one (SIGQUIT) waits for every open WebSocket.
        self.processes.start(
            Piece(
                "nginx",
                args,
                self.logs / "nginx.log",
                env=dict(os.environ),
                ready=lambda: all(
                    _answers(f"{self.url}/healthz/{replica_name(i)}")
                    for i in range(1, self.replicas + 1)
                ),
                ready_timeout_s=30,
                healthy=lambda: _answers(last, timeout=5) or _answers(f"{self.url}/healthz"),
                stop_timeout_s=NGINX_STOP_S,
            )
        )
        self.say(f"nginx on {self.listen}:{self.port}")

    # -- run and stop -----------------------------------------------------------------

    def watch(self) -> None:
        """Until stopped: every piece that ends is started again (serve/processes.py).
        Returns early when every web server has been given up on."""
        web = {web_server_name(i, self.replicas) for i in range(1, self.replicas + 1)}
        while not self.processes.stopping.wait(0.5):
            self.processes.tend()
            if web <= set(self.processes.given_up()):
                self.say("every web server is down: stopping")
                return

    def stop(self) -> None:
        """In the reverse of the start order: nginx, the web servers, the engine,
        PostgreSQL. Safe to call twice and after a partial start."""
        self.processes.stop()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def web_server_name(i: int, of: int) -> str:
    """How the terminal names web server i: "web server" alone, "web server 2 of 3"."""
    return "web server" if of == 1 else f"web server {i} of {of}"


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _last(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run(hall: Hall, *, students_line: bool) -> int:
    """Start `hall`, print its addresses, serve until SIGINT/SIGTERM, stop. Returns the
    exit code."""
    from mnist_demo import classroom

    def on_signal(signum: int, frame: object) -> None:
        hall.processes.stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        hall.start()
        if students_line:
            hall.say(f"Students join at:   {classroom.join_url(hall.listen, hall.port)}")
            front = hall.url.replace("http://127.0.0.1:", "http://localhost:")
            hall.say(f"Instructor link:    {classroom.instructor_link(front)}")
        else:
            hall.say(f"Open http://localhost:{hall.port}/ (this machine only)")
        hall.say("Ready. Ctrl+C stops everything.")
        hall.watch()
    except HallError as e:
        if not hall.processes.stopping.is_set():
            print(f"error: {e}", file=sys.stderr, flush=True)  # one line, as every CLI error
            return 2
    finally:
        started = bool(hall.processes.running)
        if started:
            hall.say("Stopping…")
        hall.stop()
        if started:  # a start refused before any piece ran has said why, and no more
            hall.say("Stopped.")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
