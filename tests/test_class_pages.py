"""The class set through the pages (AppTest): a drawing sent from Draw lands on the
Class wall, students cannot manage the set, and Test set / Misclassified switch to it."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mnist_demo import classroom
from mnist_demo.class_set import ClassSet
from mnist_demo.classroom import Role
from tools.drawn_digits import draw_canvas, on_the_draw_page

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture
def canvas(monkeypatch):
    """Stand in for streamlit-drawable-canvas (the e2e tests draw on the real one)."""
    state = types.SimpleNamespace(image=None)
    fake = types.ModuleType("streamlit_drawable_canvas")
    fake.st_canvas = lambda **kwargs: types.SimpleNamespace(image_data=state.image)
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", fake)
    return state


@pytest.fixture
def student(home, monkeypatch):
    monkeypatch.delenv(classroom.SOLO_ENV, raising=False)
    monkeypatch.setenv(classroom.CODE_ENV, "class-pages-code")


def open_page(path: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_a_drawing_sent_from_draw_lands_on_the_class_wall(student, canvas, mnist):
    _, (x_test, _) = mnist
    canvas.image = on_the_draw_page(draw_canvas(x_test[0], np.random.default_rng(3)))  # a 7
    at = open_page("app_pages/draw.py")
    meant = next(p for p in at.get("button_group") if "digit you meant" in p.label)
    assert meant.value == [7] or meant.value == 7  # the model's answer, pre-selected
    button(at, "Send to the class").click().run()
    assert any("Sent: you meant 7, the model read right" in s.value for s in at.success)
    button(at, "Send to the class").click().run()  # the same drawing again
    assert any("already in the class set" in e.value for e in at.error)

    wall = open_page("app_pages/class.py")
    assert "this class at **100.0%** — 1 drawing" in "\n".join(m.value for m in wall.markdown)
    (tiles,) = [h.proto.body for h in wall.get("html") if "digit-lab-tile" in h.proto.body]
    assert tiles.count("digit-lab-tile") == 1 and 'data-correct="true"' in tiles
    assert "7 → 7" in tiles

    button(at, "Take back").click().run()
    assert ClassSet().count() == 0


def test_a_student_cannot_manage_the_class_set(student, canvas):
    store = ClassSet()
    image = np.zeros((28, 28), np.uint8)
    image[5:20, 12:16] = 255
    d = store.add(image, 1, session="someone", predicted=1)
    at = open_page("app_pages/class.py")
    assert not [b for b in at.button if b.label in ("Hide", "Delete", "Archive and start new")]
    assert any(
        "Only the instructor can hide, delete or archive the class's drawings" in c.value
        for c in at.caption
    )
    assert not at.get("download_button")
    assert ClassSet().count() == 1
    with pytest.raises(classroom.PermissionDeniedError):
        store.delete(d.id, role=Role.STUDENT)


def test_the_instructor_deletes_a_drawing_from_the_class_page(home, canvas, monkeypatch):
    monkeypatch.setenv(classroom.SOLO_ENV, "1")
    store = ClassSet()
    image = np.zeros((28, 28), np.uint8)
    image[5:20, 12:16] = 255
    d = store.add(image, 1, session="someone", predicted=7)
    at = open_page("app_pages/class.py")
    at.number_input[0].set_value(d.id)
    button(at, "Delete").click().run()
    assert not at.exception
    assert store.count() == 0


def test_misclassified_switches_to_the_class_drawings(student, canvas, mnist):
    store = ClassSet()
    _, (x_test, y_test) = mnist
    for i in range(6):
        store.add(x_test[i], int(y_test[i]), session=f"s{i}")
    at = open_page("app_pages/misclassified.py")
    switch = next(s for s in at.segmented_control if s.label == "Dataset")
    assert "Class drawings (6)" in str(switch.proto)
    switch.set_value("class").run()
    assert not at.exception
    (heading,) = [h.value for h in at.subheader if "misclassified" in h.value]
    assert "of 6 class drawings misclassified" in heading
