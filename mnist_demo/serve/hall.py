"""The lecture hall (`make hall`, `python -m mnist_demo hall`): a whole installation on
one machine, started from nothing and stopped in order.

    PostgreSQL (LocalPostgres, its cluster in <home>/hall/postgres)
      └─ the training engine (python -m mnist_demo engine: a local Ray head + trainers)
      └─ N Streamlit replicas on loopback ports, all on that database and that engine
           └─ Debian's nginx on the hall's port: sticky sessions by a cookie it sets
              (deploy/nginx/digitlab.conf.template, rendered into <home>/hall/nginx)

Started in that order, each waited for (PostgreSQL takes connections, the engine beats in
the store, each replica's /_stcore/health answers, then the same through nginx); stopped
in the reverse one on SIGINT/SIGTERM: nginx (no new requests), the replicas, the engine
(which asks running runs to stop first, each keeping its last finished epoch),
PostgreSQL last. Every child runs in its own session, so a terminal's Ctrl+C reaches only
this process, which then stops them in that order; nothing is left running. Started again
on the same data home it finds its cluster, its password and everything in it.

A replica that dies mid-lesson is reported and left down: nginx passes its browsers to
another replica (their cookies name them; the class's state is in the database).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mnist_demo import config
from mnist_demo.errors import DigitLabError

ROOT = config.PACKAGE_DIR.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "digitlab.conf.template"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/bin/nginx")
SERVER_ENV = "MNIST_DEMO_SERVER"  # "server 2 of 2": the sidebar names the replica
DATABASE_URL_ENV = "MNIST_DEMO_DATABASE_URL"
MANAGED_ENV = "MNIST_DEMO_ENGINE_MANAGED"
COOKIE = "dl_replica"
STREAMLIT_UPLOAD_MB = 10  # .streamlit/config.toml server.maxUploadSize
START_TIMEOUT_S = 180.0  # a replica's first start imports TensorFlow: 5-10 s each, 2 cores
ENGINE_TIMEOUT_S = 120.0
REPLICA_STOP_S = 20.0
REPLICA_RESTARTS = 3  # a replica ending this often, each soon after its start, stays down
REPLICA_SOON_S = 60.0  # an end this soon after the start counts towards REPLICA_RESTARTS
ENGINE_STOP_S = 120.0  # the engine waits up to 60 s for running runs to stop
NGINX_STOP_S = 10.0


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


def missing_packages() -> list[str]:
    from mnist_demo.serve import postgres

    missing = []
    if nginx_binary() is None:
        missing.append("nginx")
    if postgres.bin_dir() is None:
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


# --- the processes -------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 20.0
    replica: int = 0  # app server i (1-based); 0: not an app server
    started: float = field(default_factory=time.monotonic)
    given_up: bool = False  # a replica that kept ending, left down


@dataclass
class Hall:
    """One lecture hall on this machine. `start()` brings everything up (or raises
    HallError having stopped what it started); `stop()` takes it all down in order."""

    home: Path
    replicas: int = 2
    port: int = 8500
    listen: str = "0.0.0.0"
    postgres_port: int = 5433
    instructor_code: str = ""
    say: Callable[[str], None] = print
    durable: bool = True
    replica_ports: list[int] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)
    pg: object | None = None
    stopping: threading.Event = field(default_factory=threading.Event)  # set: give up starting
    database_url: str = ""
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
        return f"http://127.0.0.1:{self.port}"

    def replica(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    # -- start ------------------------------------------------------------------------

    def start(self) -> Hall:
        missing = missing_packages()
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
            raise HallError(f"a lecture hall already runs on {self.home}") from None
        if not port_free(self.port, self.listen if self.listen != "0.0.0.0" else ""):
            raise HallError(f"port {self.port} is taken: choose another with --port (HALL_PORT=)")
        try:
            for step in (self._start_postgres, self._start_engine, self._start_replicas,
                         self._start_nginx):  # fmt: skip
                self._check_stopping()
                step()
        except BaseException:
            self.stop()
            raise
        return self

    def _check_stopping(self) -> None:
        if self.stopping.is_set():
            raise HallError("stopped while starting")

    def _start_postgres(self) -> None:
        from mnist_demo.serve.postgres import LocalPostgres
        from mnist_demo.store import Store

        taken = {self.port}
        port = pick_port(self.postgres_port, taken)
        pg = LocalPostgres(self._postgres_dir(), port, durable=self.durable)
        self.say(f"hall: PostgreSQL in {pg.data_dir} on 127.0.0.1:{port}…")
        self.pg = pg
        pg.start()
        self.database_url = pg.url
        Store(self.database_url).dispose()  # the schema, migrated once before anyone else

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
        self.say(f"hall: {self.dir} is closed to the postgres user; its cluster is in {moved}")
        return moved

    def _env(self) -> dict[str, str]:
        from mnist_demo import classroom

        env = dict(os.environ)
        env.pop(classroom.SOLO_ENV, None)
        env["MNIST_DEMO_HOME"] = str(self.home)
        env[DATABASE_URL_ENV] = self.database_url
        env[MANAGED_ENV] = "1"
        env[classroom.CODE_ENV] = self.instructor_code
        env.setdefault("MALLOC_ARENA_MAX", "2")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return env

    def _spawn(self, name: str, command: list[str], env: dict[str, str], **kw: object) -> Child:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl+C reaches the hall only; it stops us in order
            )
        child = Child(name, proc, log, **kw)  # type: ignore[arg-type]
        self.children.append(child)
        return child

    def _start_engine(self) -> None:
        from mnist_demo.serve import engine
        from mnist_demo.store import Store

        self.say("hall: the training engine (Ray)…")
        child = self._spawn(
            "engine",
            [sys.executable, "-m", "mnist_demo", "engine"],
            self._env(),
            stop_signal=signal.SIGTERM,
            stop_timeout=ENGINE_STOP_S,
        )
        store = Store(self.database_url)
        try:
            deadline = time.monotonic() + ENGINE_TIMEOUT_S
            while not engine.status(store).running:
                self._check_stopping()
                if child.proc.poll() is not None:
                    raise HallError(f"the training engine exited: {_tail(child.log)}")
                if time.monotonic() > deadline:
                    raise HallError(f"the training engine did not start; see {child.log}")
                time.sleep(0.3)
        finally:
            store.dispose()

    def _start_replicas(self) -> None:
        taken = {self.port, getattr(self.pg, "port", 0)}
        self.replica_ports = []
        for i in range(1, self.replicas + 1):
            port = pick_port(self.port + i, taken)
            taken.add(port)
            self.replica_ports.append(port)
        for i in range(1, self.replicas + 1):
            self._spawn_replica(i)
        self.say(
            f"hall: {self.replicas} app server(s) on 127.0.0.1:"
            + ", ".join(map(str, self.replica_ports))
            + "…"
        )
        for i, port in enumerate(self.replica_ports, start=1):
            child = self.replica(replica_name(i))
            assert child is not None
            self._wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", child)

    def _spawn_replica(self, i: int) -> Child:
        """App server i (1-based) on its port, named for the footer ("server i of n")."""
        env = self._env()
        env[SERVER_ENV] = f"server {i} of {self.replicas}"
        command = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
            "--server.address", "127.0.0.1", "--server.port", str(self.replica_ports[i - 1]),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        return self._spawn(replica_name(i), command, env, stop_timeout=REPLICA_STOP_S, replica=i)

    def _wait_healthy(self, url: str, child: Child, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_stopping()
            if child.proc.poll() is not None:
                raise HallError(f"{child.name} exited at start: {_tail(child.log)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise HallError(f"{child.name} did not answer {url} in {timeout:.0f} s")
            time.sleep(0.2)

    def _start_nginx(self) -> None:
        nginx = nginx_binary()
        assert nginx is not None
        worker_user = None
        temp = self.nginx_prefix / "temp"
        for sub in (
            "logs",
            "temp/client_body",
            "temp/proxy",
            "temp/fastcgi",
            "temp/uwsgi",
            "temp/scgi",
        ):
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
        self.say(f"hall: nginx on {self.listen}:{self.port} (config {self.nginx_conf})…")
        # SIGTERM, a fast stop: a graceful one (SIGQUIT) waits for every open WebSocket.
        child = self._spawn("nginx", args, dict(os.environ), stop_timeout=NGINX_STOP_S)
        for i in range(1, self.replicas + 1):
            self._wait_healthy(f"{self.url}/healthz/{replica_name(i)}", child, timeout=30)

    # -- run --------------------------------------------------------------------------

    def watch(self, stopping: threading.Event) -> None:
        """Until `stopping` is set, or nginx or the engine ends. A replica that ends is
        reported and started again on its port (nginx passes its browsers to the others
        meanwhile, and back once it is healthy); one that keeps ending within a minute of
        its start (REPLICA_RESTARTS times in a row) is left down, said so."""
        crashes: dict[str, int] = {}
        while not stopping.wait(0.5):
            for child in list(self.children):
                code = child.proc.poll()
                if code is None or child.given_up:
                    continue
                if child.name in ("nginx", "engine"):
                    self.say(f"hall: {child.name} exited ({code}): stopping the hall")
                    return
                lived = time.monotonic() - child.started
                soon = lived < REPLICA_SOON_S
                crashes[child.name] = crashes.get(child.name, 0) + 1 if soon else 1
                if crashes[child.name] > REPLICA_RESTARTS:
                    child.given_up = True
                    self.say(
                        f"hall: {child.name} exited ({code}) {crashes[child.name]} times "
                        f"within a minute of its start; left down (see {child.log})"
                    )
                    continue
                self.say(
                    f"hall: {child.name} exited ({code}); its students are passed to the "
                    "other servers, and it is started again"
                )
                self.children.remove(child)
                self._spawn_replica(child.replica)
            if all(c.given_up for c in self.children if c.replica):
                self.say("hall: every app server is down: stopping the hall")
                return

    # -- stop -------------------------------------------------------------------------

    def stop(self) -> None:
        """nginx, the replicas, the engine, PostgreSQL: each waited for before the next.
        Safe to call twice and after a partial start."""
        order = ["nginx"] + [c.name for c in self.children if c.name.startswith("r")] + ["engine"]
        for name in order:
            child = self.replica(name)
            if child is not None:
                _stop_child(child)
        for child in self.children:  # anything else (none today)
            _stop_child(child)
        if self.pg is not None:
            from mnist_demo.serve.postgres import LocalPostgres

            pg = self.pg
            assert isinstance(pg, LocalPostgres)
            pg.stop()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _stop_child(child: Child) -> None:
    proc = child.proc
    if proc.poll() is None:
        try:
            proc.send_signal(child.stop_signal)
            proc.wait(child.stop_timeout)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left of its session (a Streamlit or Ray helper) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(10)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _last(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _tail(path: Path) -> str:
    try:
        return _last(path.read_text(errors="replace")) or f"(see {path})"
    except OSError:
        return f"(see {path})"


def run(
    *,
    replicas: int,
    port: int,
    listen: str = "0.0.0.0",
    postgres_port: int = 5433,
) -> None:
    """The `hall` command: start, print the addresses, serve until SIGINT/SIGTERM, stop."""
    from mnist_demo import classroom

    code = os.environ.get(classroom.CODE_ENV, "").strip() or classroom.new_code()
    os.environ[classroom.CODE_ENV] = code  # instructor_link reads it
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def say(line: str) -> None:
        print(line, flush=True)

    hall = Hall(
        config.home(),
        replicas=replicas,
        port=port,
        listen=listen,
        postgres_port=postgres_port,
        instructor_code=code,
        say=say,
        stopping=stopping,
    )
    try:
        # Starting takes a while: a signal meanwhile stops what has started.
        errors: list[BaseException] = []
        starter = threading.Thread(target=_start_into, args=(hall, errors), daemon=True)
        starter.start()
        while starter.is_alive():
            starter.join(0.2)
        if errors and not stopping.is_set():
            raise errors[0]
        if not stopping.is_set():
            students = classroom.join_url(listen, port)
            say(f"Students join at:   {students}")
            say(f"Instructor link:    {classroom.instructor_link(f'http://localhost:{port}')}")
            say(
                f"{replicas} app server(s) behind nginx, PostgreSQL and one training engine; "
                f"data in {hall.home}. Ctrl+C stops everything."
            )
            hall.watch(stopping)
    finally:
        started = bool(hall.children) or hall.pg is not None
        if started:
            say("hall: stopping (nginx, app servers, engine, PostgreSQL)…")
        hall.stop()
        if started:
            say("hall: stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class HallProcess:
    """`python -m mnist_demo hall` as a child process on a data home (the tests and
    benchmarks/hall.py): `start()` waits until it prints the students' address;
    `stop()` is its Ctrl+C (SIGTERM) and waits for it to end."""

    def __init__(
        self,
        home: Path,
        *,
        port: int,
        replicas: int = 2,
        postgres_port: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = Path(home)
        self.port = port
        self.replicas = replicas
        self.postgres_port = postgres_port or pick_port(0, {port})
        self.env = env or {}
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.log = self.home / "hall-output.log"

    def start(self, timeout: float = 300.0) -> HallProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MNIST_DEMO_DATA": str(config.data_dir()),  # the caller's MNIST cache, shared
            "MNIST_DEMO_HOME": str(self.home),
            **self.env,
        }
        command = [
            sys.executable, "-m", "mnist_demo", "hall", "--replicas", str(self.replicas),
            "--port", str(self.port), "--listen", "127.0.0.1",
            "--postgres-port", str(self.postgres_port),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, bufsize=1,
        )  # fmt: skip
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            with open(self.log, "a") as log:
                for line in self.proc.stdout:
                    self.output.append(line.rstrip("\n"))
                    log.write(line)
                    log.flush()
                    if "Ctrl+C stops everything" in line:  # after both addresses
                        ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise HallError("the hall did not start: " + " | ".join(self.output[-5:]))
        return self

    def line(self, prefix: str) -> str:
        return next(line for line in self.output if line.startswith(prefix))

    @property
    def instructor_url(self) -> str:
        link = self.line("Instructor link:").split(":", 1)[1].strip()
        return link.replace("http://localhost:", "http://127.0.0.1:")

    def stop(self, timeout: float = 240.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def replica_pid(self, i: int) -> int | None:
        """The pid of replica i's Streamlit server (by its MNIST_DEMO_SERVER)."""
        for pid in processes_of(self.home):
            env = _environ(pid)
            if env.get(SERVER_ENV) == f"server {i} of {self.replicas}" and b"streamlit" in _cmdline(
                pid
            ):
                return pid
        return None


def processes_of(home: Path) -> list[int]:
    """Every process that belongs to the installation on `home`: its data home in the
    environment (replicas, the engine, Ray's head and workers, pg_ctl's PostgreSQL) or
    on the command line (nginx, PostgreSQL). Read from /proc."""
    needle = str(home).encode()
    mine = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == mine:
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except (OSError, IndexError):
            continue
        if needle in _cmdline(pid) or _environ(pid).get("MNIST_DEMO_HOME") == str(home):
            found.append(pid)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _start_into(hall: Hall, errors: list[BaseException]) -> None:
    try:
        hall.start()
    except BaseException as e:
        errors.append(e)


__all__ = [
    "COOKIE",
    "SERVER_ENV",
    "Hall",
    "HallError",
    "HallProcess",
    "processes_of",
    "render_nginx_conf",
    "run",
]
