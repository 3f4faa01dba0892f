"""Every student runs the lab, in real browsers against a real server and engine: three
student browsers each submit a tiny experiment from the Experiment page, one is refused
a second submission (and told where the first is), the instructor's leaderboard fills
live as they end, the class-drawings score is hidden from a student until the
instructor reveals it, and the instructor makes a student's run the class's model for
Draw, which a new student browser then opens on."""

import re

import pytest
from playwright.sync_api import expect

from mnist_demo.runs import RunRegistry
from mnist_demo.ui.experiments import LEADERBOARD_ROW_HEIGHT
from tools.app_server import AppServer

STUDENTS = 3
SHOTS = None  # a folder to keep screenshots in while developing (None: none)


@pytest.fixture(scope="module")
def class_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("experiments-e2e") / "home"
    app = AppServer(home, engine=True).start()
    yield app
    app.stop()


def shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


def open_as_instructor(page, server: AppServer, path: str) -> None:
    page.goto(server.instructor_url)
    expect(page.get_by_test_id("stSidebar").get_by_text("Instructor")).to_be_visible(timeout=60_000)
    for _ in range(100):  # a new page load is a new session: it needs the kept token
        if any(c["name"] == "digit_lab_instructor" for c in page.context.cookies()):
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError("the instructor's browser kept no token")
    page.goto(f"{server.url}/{path}")


def submit_tiny(page, server: AppServer) -> None:
    page.goto(f"{server.url}/experiment")
    images = page.get_by_label(re.compile(r"^Training images"))
    expect(images).to_be_visible(timeout=60_000)
    images.fill("500")
    images.press("Enter")
    expect(page.get_by_text("training images 60,000 → 500")).to_be_visible()
    page.get_by_role("button", name="Submit my experiment").click()
    expect(page.get_by_text(re.compile(r"My experiment · run \d+"))).to_be_visible(timeout=30_000)


def test_three_students_and_the_instructor(class_server, new_page):
    server = class_server
    teacher = new_page()
    open_as_instructor(teacher, server, "leaderboard")
    expect(teacher.get_by_role("heading", name="Class leaderboard")).to_be_visible(timeout=60_000)
    expect(teacher.get_by_text("0 experiment(s) ended")).to_be_visible()

    students = [new_page() for _ in range(STUDENTS)]
    for page in students:
        submit_tiny(page, server)
    shot(students[0], "experiment-student")

    # a second submission while the first waits or trains: refused, saying where it is
    last = students[-1]
    last.get_by_role("button", name="Submit my experiment").click()
    expect(
        last.get_by_text(re.compile(r"your experiment \(run \d+\) is (already waiting|training)"))
    ).to_be_visible(timeout=30_000)

    # the instructor's leaderboard fills live (no reload) as the experiments end
    expect(teacher.get_by_text(f"{STUDENTS} experiment(s) ended")).to_be_visible(timeout=240_000)
    registry = RunRegistry(server.home / "runs.sqlite")
    runs = [r for r in registry.list_runs() if r.owner != "instructor"]
    assert len(runs) == STUDENTS and {r.status for r in runs} == {"finished"}
    assert len({r.owner for r in runs}) == STUDENTS  # three identities, one each
    board = teacher.get_by_test_id("stDataFrame").first
    expect(board).to_contain_text("class drawings")
    shot(teacher, "leaderboard-instructor")

    # a student sees no class-drawings column until the instructor reveals it
    viewer = students[0]
    viewer.goto(f"{server.url}/leaderboard")
    expect(viewer.get_by_text("score is hidden until revealed")).to_be_visible(timeout=60_000)
    expect(viewer.get_by_test_id("stDataFrame").first).not_to_contain_text("class drawings")
    teacher.get_by_text("Reveal the class-drawings score to students").click()
    expect(viewer.get_by_text("score is hidden until revealed")).to_be_hidden(timeout=30_000)
    expect(viewer.get_by_test_id("stDataFrame").first).to_contain_text("class drawings")
    shot(viewer, "leaderboard-student-revealed")

    # the instructor clicks the top student's row (row 2: rows 0 and 1 are the lab's
    # references; rows are LEADERBOARD_ROW_HEIGHT tall under a 35 px header)
    box = board.bounding_box()
    teacher.mouse.click(box["x"] + 18, box["y"] + 35 + LEADERBOARD_ROW_HEIGHT * 2.5)
    make = teacher.get_by_role("button", name="Make it the class's model for Draw")
    expect(make).to_be_visible(timeout=30_000)
    expect(teacher.get_by_text("(b) Misclassified")).to_be_visible()
    shot(teacher, "leaderboard-detail")
    top = re.search(
        r"run (\d+) · finished",
        teacher.get_by_text(re.compile(r"· run \d+ · finished")).first.inner_text(),
    )
    assert top
    make.click()
    expect(teacher.get_by_role("button", name="The class's model for Draw")).to_be_visible()

    # a new student browser opens Draw on that run's model
    newcomer = new_page()
    newcomer.goto(f"{server.url}/draw")
    sidebar = newcomer.get_by_test_id("stSidebar")
    # the selectbox shows its choice as the combobox's value, not as a text node
    chosen = sidebar.get_by_role("combobox", name="Model for drawings")
    expect(chosen).to_match_aria_snapshot(
        f'- combobox "Model for drawings": /Run {top.group(1)} · lab7/', timeout=60_000
    )
    shot(newcomer, "draw-class-model")
