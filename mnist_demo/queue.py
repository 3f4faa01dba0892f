"""The one queue every server and trainer shares: its order, its fairness, its pause.

A run waits as a *queued* row in the store (runs.py makes it); a trainer claims the next
one here (`claim_next`), inside one locked transaction, so two trainers never take the
same run. The order is the class's fairness rule:

1. the instructor's runs (priority 0) first, oldest first;
2. then students' experiments round-robin by *person*: the address group
   (classroom.address_group) with the fewest experiments started so far goes next, then
   within it the seat with the fewest, then the oldest. Eight cookies from one laptop are
   one address group: while anyone else waits they get one turn per round, like one
   student; alone, they lose nothing (every one of them still trains in turn). When the
   instructor says the class shares one address (a school NAT, everyone on 127.0.0.1
   through a proxy: classroom.set_shared_address), the group is the seat;
3. while the instructor has paused the students' queue, only priority 0 is taken.

Every function takes the RunRegistry whose store holds the queue.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa

from mnist_demo import lease
from mnist_demo.classroom import SHARED_ADDRESS, Action, Role, require
from mnist_demo.runs import HOST, Run, RunRegistry, row_to_run
from mnist_demo.store import StoreError, runs, settings

PAUSED = "class_queue_paused"  # settings key: the students' experiments wait


def waiting(registry: RunRegistry) -> list[Run]:
    """Queued runs in the order trainers take them (see `_order`); while the students'
    queue is paused, their experiments are listed after, waiting."""
    with registry.store.read() as con:
        ids = _order(con, everything=True)
        found = {
            r.id: row_to_run(r)
            for r in con.execute(sa.select(runs).where(runs.c.id.in_(ids))).fetchall()
        }
    return [found[i] for i in ids if i in found]


def position(registry: RunRegistry, run_id: int) -> int | None:
    """1-based place in the queue as trainers will take it (None: not queued)."""
    for place, run in enumerate(waiting(registry), start=1):
        if run.id == run_id:
            return place
    return None


def _setting(con: Any, key: str) -> str | None:
    return con.execute(
        sa.select(settings.c.value).where(settings.c.key == key)
    ).scalar_one_or_none()


def _order(con: Any, everything: bool = False) -> list[int]:
    """The queued runs' ids in the order trainers take them (the module's docstring
    says why). Each student's experiment gets a *round*: how many experiments its group
    (address group, or seat) has started so far, plus how many of the group's queued
    experiments go before it. Rounds are served in order, so every group has one turn
    per round however many seats it queued from, and the listing shows each run's true
    place, not just the next one. Ties: the seat that has started fewer, then the
    oldest. A class's queue is tens of rows: read and sorted here, in one transaction."""
    per_seat = _setting(con, SHARED_ADDRESS) == "1"

    def group(network: str | None, owner: str) -> str:
        return owner if per_seat or network is None else network

    group_started: dict[str, int] = {}
    seat_started: dict[str, int] = {}
    for network, owner, n in con.execute(
        sa.select(runs.c.network, runs.c.owner, sa.func.count())
        .where(runs.c.started_at.is_not(None))
        .group_by(runs.c.network, runs.c.owner)
    ):
        key = group(network, owner)
        group_started[key] = group_started.get(key, 0) + n
        seat_started[owner] = seat_started.get(owner, 0) + n
    queued = con.execute(
        sa.select(runs.c.id, runs.c.priority, runs.c.owner, runs.c.network, runs.c.queued_at)
        .where(runs.c.status == "queued")
        .order_by(runs.c.queued_at, runs.c.id)
    ).all()
    first = [r for r in queued if r.priority == 0]  # the instructor's, oldest first
    students = [r for r in queued if r.priority != 0]
    if _setting(con, PAUSED) == "1" and not everything:
        students = []

    def within(r: Any) -> tuple[int, float, int]:
        return (seat_started.get(r.owner, 0), r.queued_at or 0.0, r.id)

    rounds: dict[int, int] = {}
    by_group: dict[str, list[Any]] = {}
    for r in students:
        by_group.setdefault(group(r.network, r.owner), []).append(r)
    for key, members in by_group.items():
        for place, r in enumerate(sorted(members, key=within)):
            rounds[r.id] = group_started.get(key, 0) + place
    students.sort(key=lambda r: (rounds[r.id], *within(r)))
    return [r.id for r in first] + [r.id for r in students]


def claim_next(
    registry: RunRegistry, worker: str, pid: int | None = None, token: int | None = None
) -> Run | None:
    """The next queued run, now running on `worker` (a training worker's call); None
    when the queue is empty. Two workers never claim the same run. `token`: the
    engine lease's fencing token the worker was started under (a stale one is
    refused: lease.StaleTokenError)."""
    now = time.time()
    with registry.store.write(lock=runs) as con:
        lease.check(con, token)
        order = _order(con)
        if not order:
            return None
        run_id = order[0]
        con.execute(
            sa.update(runs)
            .where(runs.c.id == run_id, runs.c.status == "queued")
            .values(
                status="running",
                started_at=now,
                heartbeat=now,
                host=HOST,
                worker=worker,
                pid=os.getpid() if pid is None else pid,
                epoch=0,
                batch=0,
                stop_requested_at=None,
                phase="preparing",
                lease_token=token,
            )
        )
    return registry.get(run_id)


def cancel_queued(registry: RunRegistry, run_id: int, *, role: Role) -> Run:
    """Take a run out of the queue before it started (the instructor's call; a student
    cancels their own experiment through experiments.cancel)."""
    require(role, Action.STOP_TRAINING)
    run = registry.get(run_id)
    if run.status != "queued":
        raise StoreError(f"{run.name} is {run.status}, not queued: nothing to cancel")
    return registry.stop(run_id)


def paused(registry: RunRegistry) -> bool:
    return registry.store.setting(PAUSED) == "1"


def pause(registry: RunRegistry, on: bool, *, role: Role) -> None:
    """Hold (or release) the students' experiments; the instructor's runs go on."""
    require(role, Action.MANAGE_EXPERIMENTS)
    registry.store.set_setting(PAUSED, "1" if on else None)
