"""The lecture hall (`make hall` = `python -m mnist_demo hall`): started from nothing on
free ports, nginx answers and routes by its sticky cookie to healthy replicas; SIGTERM
stops every process it started (checked by the pids and paths it used); started again on
the same data home it finds its data. Plus the nginx configuration it renders, checked by
nginx itself, and the one line a machine without nginx or PostgreSQL gets."""

from __future__ import annotations

import os
import signal
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from mnist_demo.serve import hall as hall_module
from mnist_demo.serve.hall import render_nginx_conf
from mnist_demo.serve.postgres import LocalPostgres
from mnist_demo.serve.processes import pid_alive
from mnist_demo.store import Store
from tests.conftest import wait_for
from tools.hall_process import HallProcess, processes_of

NGINX = hall_module.nginx_binary()
needs_hall = pytest.mark.skipif(
    NGINX is None or hall_module.missing_packages() != [],
    reason="needs Debian's nginx and postgresql (make nginx postgres)",
)


def get(url: str, cookie: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def serves(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except OSError:  # 502 while the replica starts (HTTPError is an OSError)
        return False


def replica_cookie(headers: dict[str, str]) -> str:
    """The value of the dl_replica cookie nginx set."""
    # urllib joins several Set-Cookie headers with ", "
    for part in headers.get("set-cookie", "").split(", "):
        if part.startswith("dl_replica="):
            return part.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError(f"no dl_replica cookie in {headers}")


@pytest.fixture
def hall_home():
    # As root PostgreSQL runs as the postgres user, who must reach the folder: pytest's
    # own tmp folders are closed to other users.
    home = Path(tempfile.mkdtemp(prefix="digit-lab-hall-"))
    home.chmod(0o755)
    yield home
    import shutil

    shutil.rmtree(home, ignore_errors=True)


@needs_hall
def test_hall_starts_from_nothing_routes_sticky_stops_clean_and_finds_its_data(hall_home):
    port = hall_module.pick_port(0, set())
    hall = HallProcess(hall_home, port=port, replicas=2).start()
    try:
        assert f":{port}/" in hall.line("Students join at:")
        assert "?code=" in hall.instructor_url
        # nginx itself, and each replica's own health through it
        assert get(f"{hall.url}/healthz")[0] == 200
        for name in ("r1", "r2"):
            status, _, body = get(f"{hall.url}/healthz/{name}")
            assert (status, body) == (200, b"ok")
        # a new browser gets a replica cookie; with it, it stays there
        seen = set()
        for _ in range(24):
            status, headers, _ = get(f"{hall.url}/_stcore/health")
            assert status == 200
            seen.add(replica_cookie(headers))
        assert seen == {"r1", "r2"}, "new browsers are spread over both replicas"
        for name in ("r1", "r2"):
            for _ in range(5):
                _, headers, _ = get(f"{hall.url}/_stcore/health", cookie=f"dl_replica={name}")
                assert replica_cookie(headers) == name
                assert headers["x-digit-lab-replica"] == name
        # the page itself comes through the proxy
        status, _, body = get(f"{hall.url}/", cookie="dl_replica=r1")
        assert status == 200 and b"<html" in body.lower()

        # what it started: nginx (its pid file), PostgreSQL (postmaster.pid), the replicas
        # and the engine (their environment names this data home)
        nginx_pid = int((hall_home / "hall" / "nginx" / "nginx.pid").read_text())
        pg = LocalPostgres(hall_home / "hall" / "postgres", hall.postgres_port)
        pg_pid = pg.pid
        assert pg_pid is not None
        replica_pids = [hall.replica_pid(1), hall.replica_pid(2)]
        assert all(replica_pids)
        running = set(processes_of(hall_home))
        assert {nginx_pid, pg_pid, *replica_pids} <= running
        # a replica that dies is started again on its port, and nginx sends to it again
        os.kill(replica_pids[1], signal.SIGKILL)
        wait_for(
            lambda: (
                "web server 2 of 2 ended (killed by SIGKILL): starting it again in 1 s"
                in hall.output
            ),
            timeout=30,
            what="the hall to say it starts r2 again",
        )
        wait_for(
            lambda: (
                hall.replica_pid(2) not in (None, replica_pids[1])
                and serves(f"{hall.url}/healthz/r2")
            ),
            timeout=120,
            what="r2 serving again under a new pid",
        )
        replica_pids[1] = hall.replica_pid(2)
        # a setting written now must be there after a restart
        store = Store(pg.url)
        store.set_setting("test_hall_marker", "written by the first hall")
        store.dispose()
    finally:
        code = hall.stop()
    assert code == 0, hall.output[-5:]
    assert hall.output[-1] == "Stopped."
    left = _wait_none_left(hall_home)
    assert left == [], f"processes left behind: {left}"
    for pid in (nginx_pid, pg_pid, *replica_pids):
        assert not pid_alive(pid)
    assert not (hall_home / "hall" / "nginx" / "nginx.pid").exists()

    # started again on the same data home: the same database, with its data
    again = HallProcess(hall_home, port=port, replicas=2, postgres_port=hall.postgres_port)
    again.start()
    try:
        assert get(f"{again.url}/healthz/r2")[0] == 200
        store = Store(LocalPostgres(hall_home / "hall" / "postgres", hall.postgres_port).url)
        assert store.setting("test_hall_marker") == "written by the first hall"
        store.dispose()
    finally:
        assert again.stop() == 0
    assert _wait_none_left(hall_home) == []


def _wait_none_left(home: Path, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = processes_of(home)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return [Path(f"/proc/{pid}/cmdline").read_bytes()[:120].decode(errors="replace") for pid in left
            if Path(f"/proc/{pid}").exists()]  # fmt: skip


@pytest.mark.skipif(NGINX is None, reason="needs Debian's nginx")
def test_the_rendered_config_passes_nginx_t(tmp_path):
    prefix = tmp_path / "nginx"
    for sub in ("logs", "temp"):
        (prefix / sub).mkdir(parents=True)
    text = render_nginx_conf(prefix=prefix, port=18999, replica_ports=[18001, 18002, 18003])
    assert "{{" not in text
    assert "33.33% r1;" in text and "* r3;" in text
    assert "server 127.0.0.1:18002 backup;" in text
    assert "proxy_read_timeout 1d;" in text and "client_max_body_size 16m;" in text
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    import subprocess

    result = subprocess.run(
        [str(NGINX), "-t", "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "logs/e.log")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_without_nginx_and_postgresql_it_says_what_to_install(monkeypatch, capsys, tmp_path):
    from mnist_demo.__main__ import main
    from mnist_demo.serve import postgres

    monkeypatch.setattr(hall_module, "nginx_binary", lambda: None)
    monkeypatch.setattr(postgres, "bin_dir", lambda: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("MNIST_DEMO_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as ended:
        main(["hall", "--port", str(hall_module.pick_port(0, set()))])
    assert ended.value.code == 2
    captured = capsys.readouterr()
    said = (captured.out + captured.err).strip().splitlines()
    assert said[0] == (
        "error: the lecture hall needs nginx and postgresql: run "
        "`sudo apt-get install -y nginx postgresql`"
    ), said
