"""A fair class (issue 31), in the core: one person, one share; one experiment per seat,
atomically (SQLite and PostgreSQL); names people can tell apart; the client address a
browser cannot forge; seats made only when needed, given back by their code, removed
with their experiment; compute budgets refused on the card's values and in the core;
an experiment past its budget stopped with its last epoch and the reason.

The fairness rule these tests check: the queue takes students' experiments round-robin
by address group first (an IPv4 address, an IPv6 /64), then by seat; so eight seats
from one address get one turn per round beside other people, and all eight still train
when nobody else waits. With "this class shares one address" on, the group is the seat.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from mnist_demo import classroom, experiments, queue, students, training
from mnist_demo.class_set import SENDS_PER_MINUTE, ClassSet, TooManySendsError
from mnist_demo.classroom import PermissionDeniedError, Role
from mnist_demo.experiments import ClassLimits, ExperimentError
from mnist_demo.runs import RunRegistry
from mnist_demo.store import Store
from mnist_demo.students import NicknameError, SeatCodeError
from tests.test_students import digit

pytest_plugins = ["tests.conftest_pg"]  # `backend`: SQLite and a real PostgreSQL

TEACHER, STUDENT = Role.INSTRUCTOR, Role.STUDENT
TINY = replace(experiments.LAB_EXPERIMENT, train_size=500, test_size=100)


@pytest.fixture
def registry(tmp_path) -> RunRegistry:
    return RunRegistry(tmp_path / "runs.sqlite")


def seat(n: int) -> str:
    return f"{n:016x}"


def started_in_order(registry: RunRegistry, n: int | None = None) -> list[str]:
    """Claim and finish queued runs one at a time (one trainer), `n` of them (None: all):
    their owners in the order they started."""
    owners: list[str] = []
    while n is None or len(owners) < n:
        run = queue.claim_next(registry, "test")
        if run is None:
            break
        registry.finish_run(run.id, "finished", test_accuracy=0.9)
        owners.append(run.owner)
    return owners


# --- one person, one share --------------------------------------------------------------


def test_eight_seats_from_one_address_get_one_persons_share_beside_others(registry):
    laptop = [seat(i) for i in range(1, 9)]  # 8 cookies, one address
    for s in laptop:
        experiments.submit(registry, s, TINY, network="10.0.0.66")
    bo, cy = seat(100), seat(200)
    experiments.submit(registry, bo, TINY, network="10.0.0.2")
    experiments.submit(registry, cy, TINY, network="10.0.0.3")
    # the listing shows each one's true place: one turn per address group per round
    assert [r.owner for r in queue.waiting(registry)] == [laptop[0], bo, cy, *laptop[1:]]
    assert queue.position(registry, queue.waiting(registry)[3].id) == 4
    first_round = started_in_order(registry, 3)
    # one turn for the laptop, one for Bo, one for Cy: the laptop's other seven wait
    assert sorted(first_round) == sorted([laptop[0], bo, cy])
    # Bo and Cy submit again while the laptop still has seven queued: the next round is
    # again one turn each, not the laptop's seven first
    experiments.submit(registry, bo, TINY, network="10.0.0.2")
    experiments.submit(registry, cy, TINY, network="10.0.0.3")
    assert sorted(started_in_order(registry, 3)) == sorted([laptop[1], bo, cy])
    assert started_in_order(registry) == laptop[2:]  # alone again, all eight train


def test_alone_eight_seats_from_one_address_all_train(registry):
    laptop = [seat(i) for i in range(1, 9)]
    for s in laptop:
        experiments.submit(registry, s, TINY, network="127.0.0.1")
    assert started_in_order(registry) == laptop  # nothing lost while nobody else waits


def test_a_class_behind_one_address_is_counted_per_seat_when_the_instructor_says_so(
    registry,
):
    nat = [seat(i) for i in range(1, 4)]  # three real students behind the school's NAT
    for s in nat:
        experiments.submit(registry, s, TINY, network="192.0.2.1")
    experiments.submit(registry, seat(99), TINY, network="10.0.0.9")
    with pytest.raises(PermissionDeniedError):
        classroom.set_shared_address(registry.store, True, role=STUDENT)
    classroom.set_shared_address(registry.store, True, role=TEACHER)
    # per seat: the three NAT students and the other one are four people, in order
    assert started_in_order(registry) == [*nat, seat(99)]


def test_many_cookies_from_one_address_cannot_spend_the_class_s_send_cap(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    sets = ClassSet(store)
    sets.set_sends_cap(SENDS_PER_MINUTE * 2, role=TEACHER)
    laptop = "network:10.0.0.66"
    sent = 0
    for cookie in range(4):  # 4 identities x 12 sends, all from one laptop
        for i in range(SENDS_PER_MINUTE):
            try:
                sets.add(digit(cookie * 100 + i), 1, session=seat(cookie + 1), person=laptop)
                sent += 1
            except TooManySendsError:
                pass
    assert sent == SENDS_PER_MINUTE * 2  # the class's cap is spent ...
    # ... but a real student from another address still sends their share
    for i in range(3):
        sets.add(digit(9000 + i), 2, session=seat(500), person="network:10.0.0.5")
    # and the laptop's next cookie is refused, at the cap
    with pytest.raises(TooManySendsError, match="the most the instructor allows"):
        sets.add(digit(7777), 3, session=seat(9), person=laptop)


# --- one experiment per seat, atomically ---------------------------------------------------


def test_three_submits_at_once_from_one_seat_queue_exactly_one(backend):
    """Three app servers (their own Store each) submit for one seat at the same moment."""
    RunRegistry(Store(backend.url))  # migrate once, before the race
    me = seat(7)
    start = threading.Barrier(3)
    outcomes: list[str] = []

    def submit() -> None:
        registry = RunRegistry(Store(backend.url))
        start.wait()
        try:
            experiments.submit(registry, me, TINY, network="10.0.0.7")
            outcomes.append("queued")
        except ExperimentError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes.count("queued") == 1, outcomes
    assert all("already waiting" in o for o in outcomes if o != "queued"), outcomes
    mine = [r for r in RunRegistry(Store(backend.url)).list_runs() if r.owner == me]
    assert [r.status for r in mine] == ["queued"]


# --- names people can tell apart ---------------------------------------------------------


@pytest.mark.parametrize(
    ("nickname", "reason"),
    [
        ("\u0410da", "looks the same as “Ada”"),  # Cyrillic А
        ("ADA", "is taken"),
        ("\uff21\uff44\uff41", "is taken"),  # fullwidth Ａｄａ: NFKC makes it Ada
        ("Instructor", "cannot claim a role"),
        ("Teacher", "cannot claim a role"),
        ("1nstructor", "cannot claim a role"),  # a look-alike role
        ("Admin_2", "cannot claim a role"),
        ("\u3164", "invisible or blank characters \\(HANGUL"),  # ㅤ
        ("Bob\u200b", "invisible or blank characters \\(ZERO WIDTH SPACE"),
        ("\u200b\u200b", "invisible or blank characters"),
    ],
    ids=[
        "cyrillic-a",
        "case",
        "fullwidth",
        "instructor",
        "teacher",
        "lookalike-role",
        "admin",
        "hangul-filler",
        "zero-width",
        "only-zero-width",
    ],
)
def test_a_name_people_could_not_tell_apart_is_refused_saying_why(tmp_path, nickname, reason):
    store = Store(tmp_path / "runs.sqlite")
    students.set_nickname(store, seat(1), "Ada")
    with pytest.raises(NicknameError, match=reason):
        students.set_nickname(store, seat(2), nickname)
    assert students.get(store, seat(2)) is None  # a refused name makes no seat


def test_names_that_only_look_alike_to_a_machine_are_accepted(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for i, name in enumerate(["Ada", "Ana", "Anna", "Zoë", "Zoe", "Badminton", "Tara"]):
        students.set_nickname(store, seat(i + 1), name)
    # the instructor follows the rules too, and a removed seat frees its name
    with pytest.raises(NicknameError, match="looks the same"):
        students.rename(store, seat(1), "Аnna", role=TEACHER)


# --- the client address ---------------------------------------------------------------------


def test_a_forged_x_forwarded_for_changes_nothing_without_a_trusted_proxy(monkeypatch):
    monkeypatch.delenv(classroom.TRUSTED_PROXY_ENV, raising=False)
    assert classroom.client_address("10.0.0.5", "203.0.113.9") == "10.0.0.5"
    monkeypatch.setenv(classroom.TRUSTED_PROXY_ENV, "127.0.0.1")
    # a student's own socket is not the proxy: their header is still ignored
    assert classroom.client_address("10.0.0.5", "127.0.0.1") == "10.0.0.5"
    # through the hall's nginx: the address nginx saw (the last entry), not what the
    # browser wrote before it
    assert classroom.client_address("127.0.0.1", "6.6.6.6, 10.0.0.5") == "10.0.0.5"
    assert classroom.client_address("127.0.0.1", "not an address") == "127.0.0.1"
    assert classroom.client_address("127.0.0.1", None) == "127.0.0.1"


def test_address_groups_are_people_not_a_whole_room():
    assert classroom.address_group("192.168.1.20") == "192.168.1.20"  # not the room's /24
    assert classroom.address_group("192.168.1.21") != classroom.address_group("192.168.1.20")
    # one device's IPv6 privacy addresses are one /64
    assert classroom.address_group("2001:db8:1:2::aa") == classroom.address_group(
        "2001:db8:1:2:ffff::1"
    )
    assert classroom.address_group("::ffff:10.0.0.7") == "10.0.0.7"
    assert classroom.address_group(None) == classroom.address_group("junk") == "local"


# --- seats -------------------------------------------------------------------------------------


def test_a_seat_code_gives_the_seat_back_and_a_wrong_one_says_so(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    me = students.set_nickname(store, seat(3), "Grace", network="10.0.0.3")
    shown = students.format_seat_code(me.seat_code)
    assert students.reclaim(store, shown.lower()).id == seat(3)  # as typed from the screen
    with pytest.raises(SeatCodeError, match="No seat"):
        students.reclaim(store, "ABCD-EFGH")
    with pytest.raises(SeatCodeError, match="8 letters and digits"):
        students.reclaim(store, "123")


def test_a_removed_seat_loses_its_queued_experiment_and_frees_its_nickname(registry):
    store = registry.store
    students.set_nickname(store, seat(4), "Linus", network="10.0.0.4")
    run = experiments.submit(registry, seat(4), TINY, network="10.0.0.4")
    with pytest.raises(PermissionDeniedError):
        students.remove_seat(registry, seat(4), role=STUDENT)
    assert students.remove_seat(registry, seat(4), role=TEACHER) == 1
    assert registry.get(run.id).status == "cancelled"
    assert students.get(store, seat(4)) is None
    students.set_nickname(store, seat(5), "Linus")  # the name is free again
    assert queue.waiting(registry) == []


# --- compute budgets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"conv1_filters": 64.5}, "Conv 1 filters must be a whole number, not 64.5"),
        ({"epochs": 2.5}, "Epochs must be a whole number, not 2.5"),
        ({"dense_units": True}, "Dense units must be a number, not True"),
        ({"train_size": "600"}, "Training images must be a number, not '600'"),
    ],
)
def test_card_values_are_whole_numbers_where_they_must_be(values, message):
    with pytest.raises(ExperimentError, match=message):
        experiments.card_config(values)
    assert experiments.card_config({"conv1_filters": 64.0}).network.conv1_filters == 64


def test_an_experiment_over_the_budget_is_refused_in_the_core(registry):
    experiments.set_limits(registry, ClassLimits(max_epochs=30, budget_minutes=0.25), role=TEACHER)
    big = replace(experiments.LAB_EXPERIMENT, epochs=5)  # minutes on this engine
    assert experiments.estimate_seconds(big) > 15
    with pytest.raises(ExperimentError, match="over the class's budget of 15 s"):
        experiments.submit(registry, seat(1), big, network="10.0.0.1")
    assert registry.list_runs() == []
    run = experiments.submit(registry, seat(1), TINY, network="10.0.0.1")
    assert run.budget_s == 15 and run.network == "10.0.0.1"


def test_an_experiment_past_its_budget_is_stopped_with_its_last_epoch_and_why(registry, tiny_mnist):
    """What the engine does every second (Supervisor.tend): experiments.overrunning, then
    registry.stop with the reason. Here the clock is moved on instead of waiting."""
    experiments.set_limits(registry, ClassLimits(max_epochs=30, budget_minutes=0.25), role=TEACHER)
    cfg = replace(TINY, epochs=30, train_size=600, test_size=200, batch_size=32)
    submitted = experiments.submit(registry, seat(1), cfg, network="10.0.0.1")
    run = queue.claim_next(registry, "test")
    assert run.id == submitted.id
    trainer = threading.Thread(target=training.train_run, args=(registry, run, tiny_mnist))
    trainer.start()
    deadline = time.monotonic() + 120
    while registry.get(run.id).epochs_done < 1:
        assert time.monotonic() < deadline and trainer.is_alive(), "no epoch finished"
        time.sleep(0.05)
    assert experiments.overrunning(registry) == []  # within its budget now
    later = run.started_at + 15 * experiments.OVERRUN_FACTOR + experiments.OVERRUN_GRACE_S + 1
    [(found, reason)] = experiments.overrunning(registry, now=later)
    assert found.id == run.id and "past the class's budget of 15 s" in reason
    registry.stop(run.id, reason)
    trainer.join(120)
    ended = registry.get(run.id)
    assert ended.status == "stopped" and ended.error == reason
    assert 1 <= ended.epochs_done < cfg.epochs and ended.has_model  # its last epoch kept
    assert ended.test_accuracy is not None
    assert experiments.overrunning(registry, now=later) == []  # stopped: nothing more
