"""The instructor is in charge, checked through the pages as Streamlit runs them
(AppTest): locked controls say why, forged clicks change nothing, the code unlocks, and
guessing it is slow."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_demo import classroom, queue, ui
from mnist_demo.classroom import Role
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import RunRegistry

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
CODE = "class-code-9Zt"
TIMEOUT = 120


@pytest.fixture
def code(monkeypatch) -> str:
    monkeypatch.setenv(classroom.CODE_ENV, CODE)
    monkeypatch.delenv(classroom.SOLO_ENV, raising=False)
    return CODE


@pytest.fixture
def registry(home, monkeypatch) -> RunRegistry:
    return RunRegistry()


@pytest.fixture
def finished(registry, tmp_path):
    """A finished run with a (tiny, real) model file, as if trained earlier."""
    from mnist_demo.model import build_model, save_model

    registry.submit(TrainConfig(train_size=500, epochs=1), role=Role.INSTRUCTOR)
    run = queue.claim_next(registry, "test")
    path = registry.run_dir(run.id) / "model.keras"
    save_model(build_model("lab7", compile=False), path)
    registry.record_epoch(run.id, {"loss": [0.5], "accuracy": [0.9]}, path)
    return registry.finish_run(
        run.id, "finished", test_loss=0.3, test_accuracy=0.9, misclassified=1, test_n=10
    )


def train_page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str):
    [found] = [b for b in at.button if b.label == label]
    return found


def all_text(at: AppTest) -> str:
    parts = [c.value for c in at.caption] + [e.value for e in at.error]
    parts += [m.value for m in at.markdown]
    return "\n".join(str(p) for p in parts)


def select_history_row(at: AppTest, row: int = 0) -> AppTest:
    """What a click on a history row does: the dataframe's selection state."""
    at.session_state["history"] = {"selection": {"rows": [row], "columns": []}}
    at.run()
    return at


def test_a_student_sees_every_instructor_control_locked_with_the_reason(code, finished):
    at = select_history_row(train_page())
    assert button(at, "Start training").disabled
    assert button(at, "Quick demo").disabled
    assert button(at, "Make this the active model").disabled
    assert button(at, f"Make run {finished.id} the active model").disabled
    assert button(at, "Delete for good").disabled
    text = all_text(at)
    for reason in (
        "Only the instructor can start training.",
        "Only the instructor can set the server's active model.",
        "Only the instructor can delete runs.",
    ):
        assert reason in text, reason


def forge_click(at: AppTest, label: str) -> AppTest:
    """What a hand-made WebSocket message can do: press a button the page disabled."""
    widget = button(at, label)
    widget.proto.disabled = False  # AppTest, like a browser, refuses disabled widgets
    return widget.click().run()


def test_forged_clicks_from_a_student_session_change_nothing(code, finished, registry):
    at = select_history_row(train_page())
    forge_click(at, "Start training")
    assert registry.list_runs() == [registry.get(finished.id)]  # nothing queued
    forge_click(at, "Quick demo")
    assert registry.list_runs() == [registry.get(finished.id)]  # nothing queued
    forge_click(at, "Make this the active model")
    assert registry.active_run_id() is None
    select_history_row(at)
    forge_click(at, "Delete for good")
    assert [r.id for r in registry.list_runs()] == [finished.id]
    assert registry.run_dir(finished.id).exists()


def test_hiding_buttons_is_not_the_guard_the_core_refuses(code, finished, registry, monkeypatch):
    """A page that forgot to lock its controls (or a stale page from before the lock):
    the student's clicks reach the core, which refuses each with the reason."""
    from mnist_demo.ui import training as train_ui

    monkeypatch.setattr(ui, "locked_caption", lambda action: True)
    monkeypatch.setattr(train_ui, "locked_caption", lambda action: True)
    at = select_history_row(train_page())
    button(at, "Start training").click().run()
    assert any("Only the instructor can start training" in e.value for e in at.error)
    assert registry.list_runs() == [registry.get(finished.id)]  # nothing queued
    button(at, "Quick demo").click().run()
    assert any("Only the instructor can start training" in e.value for e in at.error)
    assert registry.list_runs() == [registry.get(finished.id)]  # nothing queued
    button(at, "Make this the active model").click().run()
    assert any("Only the instructor can set the server's active model" in e.value for e in at.error)
    assert registry.active_run_id() is None
    select_history_row(at)
    button(at, "Delete for good").click().run()
    assert any("Only the instructor can delete runs" in e.value for e in at.error)
    assert [r.id for r in registry.list_runs()] == [finished.id]
    assert registry.run_dir(finished.id).exists()


def test_the_right_code_unlocks_and_lock_gives_the_student_view_back(code, finished, registry):
    at = train_page()
    at.sidebar.text_input[0].set_value(CODE)
    at.sidebar.button[0].click().run()  # Unlock
    assert not at.exception
    assert at.session_state["classroom_role"] == Role.INSTRUCTOR
    assert at.session_state["classroom_code_input"] == "", "the code does not stay in the page"
    assert CODE not in [t.value for t in at.text_input]
    assert not button(at, "Start training").disabled
    assert "Instructor" in "\n".join(m.value for m in at.sidebar.markdown)
    button(at, "Make this the active model").click().run()
    assert registry.active_run_id() == finished.id
    button(at, "Lock").click().run()
    assert button(at, "Start training").disabled


def test_wrong_codes_do_not_unlock_and_guessing_slows_down_after_five(code):
    at = train_page()
    for attempt in ("nope", "", "x" * 500, "class-code-9Z", "CLASS-CODE-9ZT"):
        at.sidebar.text_input[0].set_value(attempt)
        at.sidebar.button[0].click().run()
        assert not at.exception
        assert any("instructor code" in e.value for e in at.sidebar.error), attempt
        assert button(at, "Start training").disabled
    at.sidebar.text_input[0].set_value(CODE)  # even the right code must wait now
    at.sidebar.button[0].click().run()
    assert any("Too many code attempts" in e.value for e in at.sidebar.error)
    assert "classroom_role" not in at.session_state
    assert button(at, "Start training").disabled


def test_the_instructor_link_unlocks_and_leaves_the_address_bar(code):
    at = train_page({"code": CODE})
    assert "code" not in at.query_params
    assert not button(at, "Start training").disabled


def test_a_wrong_code_in_the_link_is_removed_and_explained(code):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["code"] = "guess"
    at.run()  # Home, where the link lands
    assert "code" not in at.query_params
    assert any("Wrong instructor code" in e.value for e in at.sidebar.error)
    at.switch_page("app_pages/train.py").run()
    assert button(at, "Start training").disabled


def test_a_student_cannot_stop_the_run_the_class_is_watching(code, registry, tiny_mnist):
    config = TrainConfig(train_size=600, test_size=200, epochs=30, batch_size=32)
    registry.submit(config, role=Role.INSTRUCTOR)
    run = queue.claim_next(registry, "test")  # as a trainer would: running, the page follows it
    registry.record_progress(run.id, epoch=1, batch=3, batches_per_epoch=19, new_points=[])
    at = train_page()
    stop = button(at, "Stop")
    assert stop.disabled
    assert "Only the instructor can stop the run." in all_text(at)
    stop.proto.disabled = False  # forged, as a hand-made WebSocket message would be
    stop.click().run()
    after = registry.get(run.id)
    assert after.status == "running" and after.stop_requested_at is None


def test_solo_mode_has_the_instructor_controls_without_a_code(monkeypatch, home):
    monkeypatch.setenv(classroom.SOLO_ENV, "1")
    at = train_page()
    assert not button(at, "Start training").disabled
    assert "Solo mode" in "\n".join(c.value for c in at.sidebar.caption)


def test_a_code_on_another_page_s_address_unlocks_and_leaves_it_too(code):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.query_params["code"] = CODE
    at.switch_page("app_pages/train.py").run()
    assert "code" not in at.query_params
    assert not button(at, "Start training").disabled
