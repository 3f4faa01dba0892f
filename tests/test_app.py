"""The pages, run by Streamlit's AppTest (no browser): what they show and how they
refuse bad input. Training here is tiny: 500 real images, one epoch."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_demo import classroom, live, training
from mnist_demo.recipe import QUICK_DEMO
from tests.inline_engine import InlineEngine

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
TIMEOUT = 120


@pytest.fixture
def trainer(home, mnist):
    """Runs train in this process (what a Ray trainer does; test_engine.py tests Ray)."""
    home.mkdir(parents=True, exist_ok=True)
    worker = InlineEngine(home, mnist).start()
    yield worker
    worker.stop()


@pytest.fixture
def app(home, monkeypatch, trainer):
    """The app as `make run` serves it: solo, so this session has the instructor's
    controls (test_roles_app.py checks the classroom roles)."""
    monkeypatch.setenv(classroom.SOLO_ENV, "1")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def page(at: AppTest, path: str) -> AppTest:
    at.switch_page(path)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = (
        [m.value for m in at.markdown]
        + [h.value for h in at.header]
        + [c.value for c in at.caption]
    )
    return "\n".join(str(p) for p in parts)


def test_home_answers_a_and_b_for_the_shipped_model(app):
    # the tables and (c)-(e) are tests/test_home.py's
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["(b) Misclassified"] == "68 of 10,000"  # the shipped model
    assert metrics["(a) Test accuracy"] == "99.32%"
    assert app.sidebar.selectbox[0].value == "shipped"


def wait_for_training_end(at: AppTest, trainer: InlineEngine) -> None:
    trainer.wait_idle(TIMEOUT)
    # the server's live feed reads the store at most every REFRESH_S for all its
    # sessions: a run that failed at once may still be "running" in the last read
    time.sleep(live.REFRESH_S + 0.05)
    at.run()


def start_button(at: AppTest):
    return next(b for b in at.button if b.label == "Start training")


def test_quick_demo_starts_the_quick_preset_with_its_own_recipe(app, trainer):
    at = page(app, "app_pages/train.py")
    [quick] = [b for b in at.button if b.label == "Quick demo"]
    quick.click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    run = trainer.registry.list_runs()[0]
    assert run.config == QUICK_DEMO
    assert (run.config.preset, run.config.epochs, run.config.train_size) == ("quick", 1, 60000)
    assert (run.config.batch_size, run.config.learning_rate) == (128, 0.01)
    # the form leaves the recipe to the preset: empty boxes, lab7 chosen
    form = {w.label: w for w in at.number_input}
    assert (form["Epochs"].value, form["Batch size"].value) == (None, None)
    assert next(s for s in at.selectbox if s.label == "Preset").value == "lab7"
    # the demo's whole run and its accuracy: tests/e2e/test_train_e2e.py's watched one
    trainer.registry.request_stop(run.id, role=classroom.Role.INSTRUCTOR)
    wait_for_training_end(at, trainer)
    assert at.dataframe[0].value.iloc[0]["status"] in ("stopped", "cancelled")


def test_a_tiny_run_started_from_the_train_page_lands_in_the_history(app, trainer):
    at = page(app, "app_pages/train.py")
    assert "No run yet" in "\n".join(i.value for i in at.info)
    form = {w.label: w for w in at.number_input}
    form["Epochs"].set_value(1)
    at.select_slider[0].set_value(500)
    start_button(at).click()
    at.run()
    assert not at.error, [e.value for e in at.error]
    wait_for_training_end(at, trainer)
    assert not at.exception
    run = at.dataframe[0].value.iloc[0]
    assert run["run"] >= 1 and run["status"] == "finished" and run["images"] == 500
    accuracy = float(run["test accuracy"].rstrip("%")) / 100
    assert run["epochs"] == "1/1" and 0.2 < accuracy <= 1  # well above chance (0.1)
    labels = {m.label for m in at.metric}
    assert {"Test accuracy", "Misclassified"} <= labels
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert {"Model - Accuracy", "Model - Loss"} <= {spec.get("title") for spec in specs}
    # make it the active model: the sidebar switches to it
    [activate] = [b for b in at.button if b.label == "Make this the active model"]
    activate.click()
    at.run()
    assert at.sidebar.selectbox[0].value == str(run["run"])


@pytest.mark.parametrize(
    ("epochs", "batch", "images", "message"),
    [
        (0, 128, 60000, "epochs must be between 1"),
        (1, 1000, 500, "larger than the training subset"),
    ],
)
def test_invalid_settings_are_refused_in_the_form(app, trainer, epochs, batch, images, message):
    at = page(app, "app_pages/train.py")
    form = {w.label: w for w in at.number_input}
    form["Epochs"].set_value(epochs)
    form["Batch size"].set_value(batch)
    at.select_slider[0].set_value(images)
    start_button(at).click()
    at.run()
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert trainer.registry.list_runs() == []  # nothing was queued


def test_a_failed_run_shows_its_error_and_the_page_keeps_working(app, trainer, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError("failed to allocate 12.5 GiB for the model")

    monkeypatch.setattr(training, "build_model", out_of_memory)
    at = page(app, "app_pages/train.py")
    {w.label: w for w in at.number_input}["Epochs"].set_value(1)
    at.select_slider[0].set_value(500)
    start_button(at).click()
    at.run()
    wait_for_training_end(at, trainer)
    assert not at.exception
    assert any("failed: MemoryError: failed to allocate" in e.value for e in at.error)
    assert at.dataframe[0].value.iloc[0]["status"] == "failed"
    assert not start_button(at).disabled
