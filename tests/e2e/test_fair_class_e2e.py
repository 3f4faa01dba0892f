"""A fair class in real Chromium against a real server (issue 31).

The rule checked: the queue shares turns by address group first (every browser here
comes from 127.0.0.1, one group: "local"), then by seat. So eight fresh browsers (eight cookies,
eight seats) from one address beside two students from other addresses get one turn per
round, like one student; with nobody else waiting all eight still train. And: a browser
that only visits makes no seat; a seat code brings a student who lost their cookie back;
the instructor removes a seat and its queued experiment is cancelled; a forged
X-Forwarded-For changes nothing; while the class-drawings score is hidden no student
page shows one (every page's text read).

No engine: the test process claims runs as the engine's trainer would (queue.claim_next),
so the order is the queue's own and nothing waits on training.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from mnist_demo import experiments, queue, students
from mnist_demo.class_set import ClassSet
from mnist_demo.classroom import Role
from mnist_demo.runs import RunRegistry
from mnist_demo.store import Store
from mnist_demo.ui.sidebar import PAGES
from tests.e2e.test_experiments_e2e import open_as_instructor
from tests.e2e.test_students_e2e import student_tag
from tools.app_server import AppServer

LAPTOP = 8  # fresh browsers from one address
TEACHER = Role.INSTRUCTOR


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    app = AppServer(tmp_path_factory.mktemp("fair-class") / "home").start()
    yield app
    app.stop()


def registry_of(server: AppServer) -> RunRegistry:
    return RunRegistry(Store(server.home / "runs.sqlite"))


def submit_default(page, server: AppServer) -> None:
    page.goto(f"{server.url}/experiment")
    button = page.get_by_role("button", name="Submit my experiment")
    expect(button).to_be_enabled(timeout=90_000)
    button.click()
    expect(page.get_by_text(re.compile(r"My experiment · run \d+"))).to_be_visible(timeout=30_000)


def set_nickname(page, name: str) -> None:
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text(re.compile(r"You are ")).click()
    box = sidebar.get_by_role("textbox", name="Nickname (optional)")
    box.fill(name)
    sidebar.get_by_role("button", name="Save nickname").click()


def clear_queue(registry: RunRegistry) -> None:
    for run in queue.waiting(registry):
        queue.cancel_queued(registry, run.id, role=TEACHER)


def test_eight_browsers_from_one_address_get_one_persons_share(server, new_page):
    registry = registry_of(server)
    clear_queue(registry)
    visitor = new_page()
    visitor.goto(f"{server.url}/leaderboard")
    expect(visitor.get_by_role("heading", name="Class leaderboard")).to_be_visible(timeout=90_000)
    student_tag(visitor)
    assert students.list_students(registry.store) == []  # a visit makes no seat

    laptop = [new_page() for _ in range(LAPTOP)]
    for page in laptop:
        submit_default(page, server)
    seats = [student_tag(page) for page in laptop]
    assert len(set(seats)) == LAPTOP
    roster = {s.id: s for s in students.list_students(registry.store)}
    # this machine's browsers are one address group ("local": Streamlit reports no
    # address for a loopback peer)
    assert set(roster) == set(seats) and {s.network for s in roster.values()} == {"local"}

    # two students from other addresses submit after all eight
    others = ["0000000000000b0b", "0000000000000c0c"]
    for i, other in enumerate(others):
        experiments.submit(registry, other, experiments.LAB_EXPERIMENT, network=f"10.0.0.{i + 2}")
    waiting = [r.owner for r in queue.waiting(registry)]
    # the laptop's eight seats take one turn, then the others, then the laptop's next
    assert set(waiting[:3]) == {seats[0], *others}
    assert waiting[3:] == seats[1:]
    # a laptop browser sees the same place the queue gives it
    expect(laptop[1].get_by_text("#4 in the queue")).to_be_visible(timeout=30_000)

    # the others are served; alone, every one of the eight still trains
    started = []
    while (run := queue.claim_next(registry, "test")) is not None:
        registry.finish_run(run.id, "finished", test_accuracy=0.9)
        started.append(run.owner)
    assert set(started[:3]) == {seats[0], *others} and started[3:] == seats[1:]


def test_a_seat_code_brings_a_student_back_and_a_removed_seat_loses_its_experiment(
    server, new_page
):
    registry = registry_of(server)
    clear_queue(registry)
    page = new_page()
    page.goto(f"{server.url}/experiment")
    expect(page.get_by_role("button", name="Submit my experiment")).to_be_enabled(timeout=90_000)
    set_nickname(page, "Grace")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("The class sees you as Grace.")).to_be_visible()
    code = re.search(
        r"[A-Z0-9]{4}-[A-Z0-9]{4}", sidebar.get_by_text("Your seat code").inner_text()
    ).group(0)
    mine = student_tag(page)

    # the cookie is lost: a new browser is a visitor, until it types the code
    again = new_page()
    again.goto(f"{server.url}/experiment")
    side = again.get_by_test_id("stSidebar")
    expect(side.get_by_text(re.compile(r"You are Student"))).to_be_visible(timeout=90_000)
    side.get_by_text(re.compile(r"You are ")).click()
    side.get_by_role("textbox", name="Seat code").fill(code.lower())
    side.get_by_role("button", name="Get my seat back").click()
    expect(side.get_by_text("Welcome back, Grace")).to_be_visible()
    again.reload()
    expect(
        again.get_by_test_id("stSidebar").get_by_text(re.compile(r"You are Grace"))
    ).to_be_visible(timeout=60_000)
    assert student_tag(again) == mine

    # the seat submits; the instructor removes it on the Class page
    submit_default(again, server)
    [run] = [r for r in queue.waiting(registry) if r.owner == mine]
    teacher = new_page()
    open_as_instructor(teacher, server, "class")
    roster = teacher.get_by_test_id("stDataFrame").filter(has_text="address group")
    expect(roster).to_be_visible(timeout=60_000)
    teacher.get_by_test_id("stSelectbox").filter(has_text="Student").click()
    teacher.keyboard.type("Grace")  # the list is long after the other tests: filter it
    teacher.get_by_role("option", name=re.compile(r"^Grace ")).click()
    teacher.get_by_role("button", name="Remove seat").click()
    expect(teacher.get_by_text("Seat removed; 1 experiment(s) cancelled")).to_be_visible()
    assert registry.get(run.id).status == "cancelled"
    assert students.get(registry.store, mine) is None  # "Grace" is free again


def test_a_forged_x_forwarded_for_changes_nothing(server, browser):
    registry = registry_of(server)
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.66"})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/experiment")
        expect(page.get_by_role("button", name="Submit my experiment")).to_be_enabled(
            timeout=90_000
        )
        set_nickname(page, "Mallory")
        expect(page.get_by_text("The class sees you as Mallory.")).to_be_visible()
        seat = students.get(registry.store, student_tag(page))
        assert seat is not None and seat.network == "local"  # the socket's, not the header's
    finally:
        context.close()


def student_run_with_a_class_score(server: AppServer, owner: str) -> int:
    """A finished experiment of `owner` with a model file and a class-drawings score, as
    a trainer leaves one; and the class's drawings it was scored on."""
    from mnist_demo.model import build_model, save_model

    registry = registry_of(server)
    run = registry.enqueue(experiments.LAB_EXPERIMENT, owner=owner, priority=1)
    queue.claim_next(registry, "test")
    path = registry.run_dir(run.id) / "model.keras"
    save_model(build_model("lab7", seed=3, compile=False), path)
    registry.record_epoch(run.id, {"loss": [0.5], "val_accuracy": [0.5]}, path)
    registry.finish_run(run.id, "finished", test_accuracy=0.5, misclassified=5000, test_n=10_000)
    registry.set_class_score(run.id, 0.077, 13)
    drawings = ClassSet(registry.store)
    rng = np.random.default_rng(5)
    for i in range(13):
        image = np.zeros((28, 28), np.uint8)
        image[6:22, 10:18] = rng.integers(1, 255, (16, 8), dtype=np.uint8)
        drawings.add(image, i % 10, session=f"{i:016x}")
    return run.id


def test_while_hidden_no_student_page_shows_a_class_drawings_score(server, new_page):
    registry = registry_of(server)
    page = new_page()
    page.goto(f"{server.url}/draw")
    me = student_tag(page)
    run_id = student_run_with_a_class_score(server, me)
    # the instructor makes it the class's model for Draw (what the Class page reads)
    experiments.set_draw_model(registry, run_id, role=TEACHER)
    assert not experiments.revealed(registry)
    leaks = re.compile(r"this class at|of \d+ drawings|7\.7 ?%|class drawings\b.*%")
    for app_page in PAGES:
        page.goto(f"{server.url}/{'' if app_page is PAGES[0] else app_page.url}")
        main = page.get_by_test_id("stMain")
        expect(main.locator("h1").first).to_be_visible(timeout=90_000)
        page.wait_for_timeout(1500)  # fragments and the live wall have drawn
        text = page.locator("body").inner_text()
        assert not leaks.search(text), (app_page.title, leaks.search(text).group(0))
    # the Class page says why, and Test set refuses the class's drawings for this model
    page.goto(f"{server.url}/class")
    expect(page.get_by_text("is hidden until the instructor reveals").first).to_be_visible(
        timeout=60_000
    )
    page.goto(f"{server.url}/test_set")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("combobox").first.click()
    page.get_by_role("option", name=re.compile(rf"Run {run_id} ")).click()
    page.get_by_role("radio", name=re.compile(r"Class drawings")).click()
    expect(page.get_by_text("hidden until the instructor reveals it")).to_be_visible(timeout=60_000)
    # revealed, the same student sees it
    experiments.reveal(registry, True, role=TEACHER)
    # the grid draws only the rows in view, and the other tests' experiments (90 % on
    # the same tiny set) rank above this one: they are removed, so this row is in view
    for other in registry.list_runs():
        if other.id != run_id and other.owner != "instructor" and other.ended:
            registry.delete(other.id, role=TEACHER)
    page.goto(f"{server.url}/leaderboard")
    expect(page.get_by_test_id("stDataFrame").first).to_contain_text(
        "7.7% of 13 drawings", timeout=60_000
    )
    experiments.reveal(registry, False, role=TEACHER)
    experiments.set_draw_model(registry, None, role=TEACHER)
