"""Exactly one training engine per store: a lease with a fencing token.

The engine's supervisor holds one row of the store (`engine_lease`): who holds it, when
it last said so, and a token that grows by one at every takeover. While it renews the
lease every second, no other supervisor can take it; a second one started on the same
store says who holds it, in one line, and exits. A holder silent for LEASE_S (killed,
frozen, cut off) has lost it: the next supervisor takes it over with token + 1.

The token is the fence (as in Chubby's sequencers and etcd's leases): every trainer
presents the token it was started under when it claims a run and when it writes
progress, and the store refuses a stale one in the same transaction
(StaleTokenError). So a trainer of an old cluster that is still alive — its supervisor
killed, its Ray head orphaned — can neither take a run from the queue nor write into a
run the new engine now owns; it stops itself.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mnist_demo.errors import DigitLabError
from mnist_demo.store import Store, StoreError, engine_lease

LEASE_NAME = "engine"
LEASE_S = 10.0  # a holder silent this long has lost the lease (and the engine is "not running")


class LeaseHeldError(DigitLabError):
    """Another engine holds this store's lease; the message says which and where."""


class LeaseLostError(StoreError):
    """This supervisor's lease was taken over (it was silent too long): it must stop."""


class StaleTokenError(StoreError):
    """A trainer presented a fencing token that is no longer the lease's: its engine has
    been replaced, so it may not claim or write."""


def new_holder() -> str:
    """This process's name as a holder: host, pid and a nonce (a reused pid is another
    holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Lease:
    holder: str | None
    token: int
    heartbeat: float | None
    acquired_at: float | None
    info: dict[str, Any] = field(default_factory=dict)

    def age(self, now: float | None = None) -> float | None:
        if self.heartbeat is None:
            return None
        return (time.time() if now is None else now) - self.heartbeat

    def live(self, now: float | None = None) -> bool:
        """Held by a supervisor that renewed it within LEASE_S and has not released it."""
        age = self.age(now)
        return self.holder is not None and age is not None and age < LEASE_S

    def describe(self, now: float | None = None) -> str:
        who = self.info.get("host") or "?"
        pid = self.info.get("pid")
        age = self.age(now)
        heard = f"{age:.0f} s ago" if age is not None else "never"
        return f"process {pid} on {who} (token {self.token}, last heard {heard})"


def _row(con: Connection) -> Any:
    return con.execute(sa.select(engine_lease).where(engine_lease.c.name == LEASE_NAME)).first()


def _lease(row: Any) -> Lease | None:
    if row is None:
        return None
    return Lease(
        holder=row.holder,
        token=int(row.token),
        heartbeat=row.heartbeat,
        acquired_at=row.acquired_at,
        info=json.loads(row.info or "{}"),
    )


def read(store: Store) -> Lease | None:
    with store.read() as con:
        return _lease(_row(con))


def acquire(store: Store, holder: str, info: dict[str, Any], now: float | None = None) -> int:
    """Take the lease (first holder, or a takeover once the last holder is silent for
    LEASE_S) and return its token; LeaseHeldError if a live engine holds it."""
    now = time.time() if now is None else now
    text = json.dumps(info)
    with store.write(lock=engine_lease) as con:
        current = _lease(_row(con))
        if current is None:
            con.execute(
                sa.insert(engine_lease).values(
                    name=LEASE_NAME,
                    holder=holder,
                    token=1,
                    heartbeat=now,
                    acquired_at=now,
                    info=text,
                )
            )
            return 1
        if current.holder == holder:
            return current.token
        if current.live(now) and not _dead_here(current):
            raise LeaseHeldError(
                f"another training engine serves this store: {current.describe(now)}; "
                f"stop it first, or wait {LEASE_S:.0f} s after it has gone"
            )
        token = current.token + 1
        con.execute(
            sa.update(engine_lease)
            .where(engine_lease.c.name == LEASE_NAME)
            .values(holder=holder, token=token, heartbeat=now, acquired_at=now, info=text)
        )
        return token


def renew(
    store: Store, holder: str, token: int, info: dict[str, Any], now: float | None = None
) -> None:
    """Say this holder is alive (every second); LeaseLostError if it was taken over."""
    now = time.time() if now is None else now
    with store.write() as con:
        changed = con.execute(
            sa.update(engine_lease)
            .where(
                engine_lease.c.name == LEASE_NAME,
                engine_lease.c.holder == holder,
                engine_lease.c.token == token,
            )
            .values(heartbeat=now, info=json.dumps(info))
        ).rowcount
    if not changed:
        raise LeaseLostError("this engine's lease was taken over by another engine")


def release(store: Store, holder: str, token: int) -> None:
    """A clean stop: the lease is free at once (the next engine need not wait LEASE_S)."""
    with store.write() as con:
        con.execute(
            sa.update(engine_lease)
            .where(engine_lease.c.name == LEASE_NAME, engine_lease.c.holder == holder)
            .values(holder=None, heartbeat=None)
        )


def _dead_here(held: Lease) -> bool:
    """A holder on this machine whose process is gone (killed): no need to wait out
    LEASE_S for it."""
    if held.info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(held.info.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError):
        return False
    return False


def check(con: Connection, token: int | None) -> None:
    """Inside a write: refuse a trainer's stale token (None: not under an engine, as a
    test or the CLI calling the training job directly)."""
    if token is None:
        return
    row = _row(con)
    if row is None or int(row.token) != token:
        current = "none" if row is None else str(row.token)
        raise StaleTokenError(
            f"fencing token {token} is stale (the store's engine lease is at {current}): "
            "this trainer's engine was replaced"
        )
