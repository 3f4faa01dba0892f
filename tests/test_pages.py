"""Test set, Misclassified and Draw pages in AppTest, with the shipped model and the
real test set (the numbers are the model's own: 68 mistakes, 6 of them 4 -> 9)."""

import io
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from mnist_demo import classroom, config
from tools.drawn_digits import (
    draw_canvas,
    on_the_draw_page,
    pen_strokes,
    place_strokes,
    render_strokes,
)
from tools.non_digits import non_digit_canvas

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
pytestmark = pytest.mark.slow


def open_page(path: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(path)
    at.run()
    assert not at.exception, at.exception
    return at


def matching(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "test images match" in m.value)


# --- Test set ---------------------------------------------------------------------------


def answers(at: AppTest):
    return next(s for s in at.segmented_control if s.label == "Answers")


def test_filters_change_the_count(home):
    at = open_page("app_pages/browse.py")
    assert matching(at).startswith("**10,000** of 10,000")
    answers(at).set_value("wrong").run()
    assert matching(at).startswith("**68** of")
    [true_box] = [s for s in at.selectbox if s.label == "True digit"]
    true_box.set_value(4).run()
    assert matching(at).startswith("**8** of")  # the digit-4 row of the confusion matrix
    answers(at).set_value("right").run()
    assert matching(at).startswith("**974** of")
    low_confidence = at.slider[0].set_value((0, 90)).run()
    assert int(matching(low_confidence).split("**")[1]) < 974


def test_go_to_an_index_opens_its_detail(home):
    at = open_page("app_pages/browse.py")
    at.number_input(key="go_to").set_value(2130).run()
    prediction = next(m for m in at.metric if m.label == "Prediction")
    assert prediction.value == "9" and "wrong: the label is 4" in prediction.delta
    (bars,) = [h.proto.body for h in at.get("html")]
    assert 'data-digit="9" data-top="true"' in bars
    assert any("Top 3: **9**" in m.value for m in at.markdown)


# --- Misclassified ----------------------------------------------------------------------


def test_the_count_matches_the_evaluation_and_pairs_filter_the_gallery(home):
    at = open_page("app_pages/misclassified.py")
    assert at.subheader[0].value.startswith("68 of 10,000 test images misclassified (0.68 %)")
    assert any(m.value.startswith("**All 68 mistakes**") for m in at.markdown)
    at.selectbox(key="misclassified-true").set_value(4)
    at.selectbox(key="misclassified-predicted").set_value(9)
    at.run()
    assert any(
        m.value.startswith("**6 mistakes** with true digit 4 predicted as 9") for m in at.markdown
    )
    per_digit = at.dataframe[0].value
    assert per_digit["errors"].sum() == 68 and per_digit.loc[4, "errors"] == 8
    at.button[0].click().run()  # "Show all"
    assert any(m.value.startswith("**All 68 mistakes**") for m in at.markdown)


# --- Draw -------------------------------------------------------------------------------


@pytest.fixture
def canvas(monkeypatch):
    """Stand in for streamlit-drawable-canvas (its real self runs only in a browser: the
    e2e tests draw on it). Set `.image` to what the student has drawn."""
    state = types.SimpleNamespace(image=None)
    fake = types.ModuleType("streamlit_drawable_canvas")
    fake.st_canvas = lambda **kwargs: types.SimpleNamespace(image_data=state.image)
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", fake)
    return state


def drawn_seven(x_test: np.ndarray) -> np.ndarray:
    """MNIST's first test digit, a 7, re-drawn as brush strokes on the Draw page's canvas."""
    return on_the_draw_page(draw_canvas(x_test[0], np.random.default_rng(3)))


def test_blank_canvas_shows_a_prompt_not_a_guess(home, canvas):
    canvas.image = np.zeros((280, 280, 4), np.uint8)  # transparent: nothing drawn
    at = open_page("app_pages/draw.py")
    assert any("Draw a digit on the black square" in i.value for i in at.info)
    assert not [m for m in at.metric if m.label == "Prediction"]


def test_a_drawn_digit_is_read(home, canvas, mnist):
    _, (x_test, y_test) = mnist
    canvas.image = drawn_seven(x_test)
    at = open_page("app_pages/draw.py")
    prediction = next(m for m in at.metric if m.label == "Prediction")
    assert prediction.value == str(y_test[0]) == "7"
    assert "confident" in prediction.delta
    (bars,) = [h.proto.body for h in at.get("html")]  # the probability bars
    assert 'data-digit="7" data-top="true"' in bars and bars.count('data-top="true"') == 1


def test_two_digits_side_by_side_are_not_read_as_one_digit(home, canvas, mnist):
    """The Draw page's model (robust) says so in words, and still shows every bar."""
    (x_train, _), _ = mnist
    canvas.image = on_the_draw_page(
        non_digit_canvas("two digits", np.random.default_rng([98, 0]), x_train[:20])
    )
    at = open_page("app_pages/draw.py")
    prediction = next(m for m in at.metric if m.label == "Prediction")
    assert (prediction.value, prediction.delta) == ("?", "not a digit")
    (warning,) = at.warning
    assert warning.value.startswith("That doesn't look like a digit to me — the closest is ")
    (bars,) = [h.proto.body for h in at.get("html")]
    assert bars.count("data-digit=") == 10 and bars.count('data-top="true"') == 1


def test_the_steps_show_how_a_small_corner_digit_becomes_mnist_like(home, canvas, mnist):
    _, (x_test, y_test) = mnist
    small = place_strokes(pen_strokes(x_test[0]), size=80, top=10, left=190)
    canvas.image = on_the_draw_page(render_strokes(small, brush=10))
    at = open_page("app_pages/draw.py")
    # the strip is off by default: the page stays quick
    assert not [m for m in at.markdown if "Without the steps" in m.value]
    next(t for t in at.toggle if t.label == "Show the steps").set_value(True).run()
    captions = [c for img in at.get("image") for c in [img.proto.imgs[0].caption]]
    numbered = [c for c in captions if c[:2] in {f"{i}." for i in range(6)}]
    assert [c[:2] for c in numbered] == ["0.", "1.", "2.", "3.", "4.", "5."]
    (without,) = [m.value for m in at.markdown if "Without the steps" in m.value]
    # the lesson: through the steps the corner 7 is a 7; squashed whole, it is not
    prediction = next(m for m in at.metric if m.label == "Prediction")
    assert prediction.value == str(y_test[0])
    assert "the model would read **7" not in without


def png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.png", b"these are not pixels", "not an image"),
        ("cut.png", png(np.full((64, 64), 200, np.uint8))[:60], "truncated or damaged"),
        ("white.png", png(np.full((64, 64), 255, np.uint8)), "No digit found"),
        ("black.jpg", png(np.zeros((64, 64, 3), np.uint8), "JPEG"), "No digit found"),
        ("tiny.png", png(np.zeros((4, 4), np.uint8)), "too small"),
        ("clear.png", png(np.zeros((64, 64, 4), np.uint8)), "No digit found"),  # transparent
        ("bomb.png", png(np.zeros((9000, 9000), np.uint8)), "too large"),  # 81 MP, 80 kB
    ],
)
def test_bad_uploads_get_a_clear_message(home, canvas, name, content, message):
    at = open_page("app_pages/draw.py")
    at.file_uploader[0].set_value((name, content, "image/png")).run()
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]


def test_an_uploaded_photo_of_dark_ink_on_paper_is_read(home, canvas, mnist):
    _, (x_test, y_test) = mnist
    paper = 255 - np.array(Image.fromarray(x_test[1]).resize((300, 300), Image.BILINEAR))
    at = open_page("app_pages/draw.py")
    at.file_uploader[0].set_value(("photo.jpg", png(paper, "JPEG"), "image/jpeg")).run()
    prediction = next(m for m in at.metric if m.label == "Prediction")
    assert prediction.value == str(y_test[1])


@pytest.mark.skipif(
    not config.ROBUST_MODEL_PATH.exists(),
    reason="the robust model is not shipped",
)
def test_draw_defaults_to_the_robust_model_and_the_sidebar_says_who_uses_what(home, canvas):
    canvas.image = None
    draw = open_page("app_pages/draw.py")
    assert draw.sidebar.selectbox[0].label == "Model for drawings"
    assert draw.sidebar.selectbox[0].value == "robust"
    assert any("use **Lab 7 (shipped)**" in c.value for c in draw.sidebar.caption)
    assert "Robust (shipped)" in draw.caption[0].value  # the page names its model
    lab = open_page("app_pages/misclassified.py")
    assert lab.sidebar.selectbox[0].value == "shipped"
    assert any("Draw uses **Robust (shipped)**" in c.value for c in lab.sidebar.caption)


@pytest.mark.skipif(not config.ROBUST_MODEL_PATH.exists(), reason="needs a second model")
def test_comparing_two_models_counts_fixed_and_introduced_errors(home):
    at = open_page("app_pages/misclassified.py")
    assert not [m for m in at.metric if m.label == "Errors it fixes"]  # only on request
    [second] = [s for s in at.selectbox if s.label == "Second model"]
    second.select_index(0).run()  # the robust model
    counts = {m.label: int(m.value) for m in at.metric}
    both = counts["Errors both make"]
    assert counts["Errors it fixes"] + both == 68  # every Lab 7 error is fixed or shared
    robust_errors = both + counts["Errors it introduces"]
    info = json.loads(config.ROBUST_MODEL_PATH.with_suffix(".json").read_text())
    assert robust_errors == info["misclassified"]  # as its training run counted them


def test_a_student_session_that_floods_the_server_is_slowed_with_a_message(
    home, canvas, mnist, monkeypatch
):
    """Limits per student session (classroom.STUDENT_LIMITS), lowered here to 3 drawings
    and 2 uploads a minute so the test stays short."""
    monkeypatch.setitem(classroom.STUDENT_LIMITS, "drawing", ("drawings read", 3))
    monkeypatch.setitem(classroom.STUDENT_LIMITS, "upload", ("uploads", 2))
    _, (x_test, _) = mnist
    canvas.image = drawn_seven(x_test)
    at = open_page("app_pages/draw.py")  # drawing 1
    at.run()  # 2
    at.run()  # 3
    assert next(m for m in at.metric if m.label == "Prediction").value == "7"
    at.run()  # 4: over the limit
    assert any("Too many drawings read: at most 3 per minute" in e.value for e in at.error)
    assert not [m for m in at.metric if m.label == "Prediction"]
    assert not at.exception

    at = open_page("app_pages/draw.py")  # a new session has its own budget
    paper = png(255 - np.array(Image.fromarray(x_test[1]).resize((200, 200))))
    for i in range(2):
        at.file_uploader[0].set_value((f"photo{i}.png", paper, "image/png")).run()
        assert not any("Too many" in e.value for e in at.error)
    at.file_uploader[0].set_value(("photo2.png", paper, "image/png")).run()
    assert any("Too many uploads: at most 2 per minute" in e.value for e in at.error)


def test_a_dot_and_a_painted_canvas_get_a_clear_message_not_a_guess(home, canvas):
    dot = np.zeros((280, 280, 4), np.uint8)
    dot[130:150, 130:150] = 255  # one click of a 20 px brush
    canvas.image = dot
    at = open_page("app_pages/draw.py")
    assert any("too small to read" in e.value for e in at.error)  # ui.user_errors
    assert not [m for m in at.metric if m.label == "Prediction"]
    canvas.image = np.full((280, 280, 4), 255, np.uint8)  # painted all over
    at.run()
    assert any("painted nearly all over" in e.value for e in at.error)
    assert not [m for m in at.metric if m.label == "Prediction"]


def test_drawing_with_a_photo_attached_says_the_photo_is_read(home, canvas, mnist):
    _, (x_test, _) = mnist
    canvas.image = drawn_seven(x_test)
    paper = 255 - np.array(Image.fromarray(x_test[1]).resize((300, 300), Image.BILINEAR))
    at = open_page("app_pages/draw.py")
    at.file_uploader[0].set_value(("photo.png", png(paper), "image/png")).run()
    assert any("Reading your photo" in i.value for i in at.info)
    assert next(m for m in at.metric if m.label == "Prediction").value == "2"  # the photo's


def test_an_uploaded_photo_is_decoded_once_not_on_every_rerun(home, canvas, mnist, monkeypatch):
    from mnist_demo import preprocess

    calls = []
    real = preprocess.load_image
    monkeypatch.setattr(preprocess, "load_image", lambda data: calls.append(1) or real(data))
    _, (x_test, _) = mnist
    paper = 255 - np.array(Image.fromarray(x_test[1]).resize((300, 300), Image.BILINEAR))
    at = open_page("app_pages/draw.py")
    at.file_uploader[0].set_value(("photo.png", png(paper), "image/png")).run()
    for _ in range(3):  # strokes, toggles: the fragment reruns
        at.run()
    assert next(m for m in at.metric if m.label == "Prediction").value == "2"
    assert len(calls) == 1
