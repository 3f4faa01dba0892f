"""The Experiment and Leaderboard pages as Streamlit runs them (AppTest): the card's
model summary and parameter count are build_model's for several settings, out-of-range
values are refused with their range before anything is submitted, a submit queues the
student's experiment, and the leaderboard hides the class-drawings column from a
student until the instructor reveals it."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_demo import classroom, experiments, queue
from mnist_demo.classroom import Role
from mnist_demo.model import build_model, save_model, summary_rows
from mnist_demo.recipe import Network
from mnist_demo.runs import RunRegistry

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
pytestmark = pytest.mark.slow


@pytest.fixture
def student(monkeypatch, home):
    monkeypatch.setenv(classroom.CODE_ENV, "class-code-9Zt")
    monkeypatch.delenv(classroom.SOLO_ENV, raising=False)


def open_page(path: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(path)
    at.run()
    assert not at.exception, at.exception
    return at


def summary_table(at: AppTest) -> list[dict]:
    frame = next(d.value for d in at.dataframe if "output shape" in d.value.columns)
    return frame.to_dict("records")


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error if "training engine" not in e.value]


SETTINGS = [
    {},  # the lab's network
    {"conv2_kernel": 5},  # what the lab's text says
    {"conv1_filters": 8, "conv1_kernel": 3, "conv2_filters": 16, "dense_units": 64},
    {"conv2_kernel": 3, "dense_units": 2000, "optimizer": "sgd"},
]


@pytest.mark.parametrize("values", SETTINGS, ids=["lab", "conv2-5x5", "small", "sgd-wide"])
def test_the_card_s_summary_and_parameters_are_build_model_s(student, values):
    at = open_page("app_pages/experiment.py")
    # each kernel's own lab value is named on its button (the second conv's is the code's)
    assert list(at.radio(key="card-conv1_kernel").options) == ["2x2", "3x3", "5x5 (the lab)", "7x7"]
    assert list(at.radio(key="card-conv2_kernel").options) == ["2x2 (the lab)", "3x3", "5x5"]
    for name, value in values.items():
        widget = (
            at.radio(key=f"card-{name}")
            if name in ("conv1_kernel", "conv2_kernel", "optimizer")
            else at.number_input(key=f"card-{name}")
        )
        widget.set_value(value)
    at.run()
    assert not at.exception, at.exception
    net_values = {k: v for k, v in values.items() if k != "optimizer"}
    model = build_model(
        "lab7",
        seed=None,
        network=Network(**net_values),
        optimizer=values.get("optimizer", "adam"),
        compile=False,
    )
    expected = summary_rows(model)
    assert summary_table(at) == expected
    count = model.count_params()
    assert metric(at, "Parameters") == f"{count:,}"
    assert count == experiments.parameters(Network(**net_values))
    assert metric(at, "Estimated training time").startswith("about ")
    changed = next(c.value for c in at.caption if c.value.startswith("What I changed"))
    assert changed.startswith("What I changed: epochs 12 → 1")  # the default: 1 epoch
    assert (changed.removeprefix("What I changed: ") == "epochs 12 → 1") == (not values)


def test_out_of_range_values_give_their_range_and_nothing_is_submitted(student):
    at = open_page("app_pages/experiment.py")
    at.number_input(key="card-conv1_filters").set_value(500)
    at.number_input(key="card-dropout_dense").set_value(0.95)
    at.number_input(key="card-epochs").set_value(40)
    at.run()
    assert "Conv 1 filters must be between 4 and 128" in errors(at)
    assert "Dropout before the output must be between 0 and 0.8" in errors(at)
    assert "Epochs must be between 1 and 30" in errors(at)
    submit = next(b for b in at.button if b.label == "Submit my experiment")
    assert submit.disabled
    # Inside the card's ranges but over the class's limits (5 epochs by default)
    at.number_input(key="card-conv1_filters").set_value(32)
    at.number_input(key="card-dropout_dense").set_value(0.5)
    at.number_input(key="card-epochs").set_value(8)
    at.number_input(key="card-train_size").set_value(3000)  # within the budget
    at.run()
    assert errors(at) == ["at most 5 epochs in this class"]
    # Within the limits but over the class's compute budget (2 minutes by default)
    at.number_input(key="card-epochs").set_value(5)
    at.number_input(key="card-train_size").set_value(60_000)
    at.number_input(key="card-conv2_filters").set_value(128)
    at.run()
    [over] = errors(at)
    assert "over the class's budget of 2.0 min an experiment" in over
    assert next(b for b in at.button if b.label == "Submit my experiment").disabled
    budget = next(m for m in at.metric if m.label == "Estimated training time")
    assert budget.proto.delta == "budget 2.0 min · over it"
    assert RunRegistry().list_runs() == []


def test_a_submit_queues_my_experiment_and_a_second_says_where_the_first_is(student):
    at = open_page("app_pages/experiment.py")
    at.number_input(key="card-train_size").set_value(500)
    at.run()
    next(b for b in at.button if b.label == "Submit my experiment").click().run()
    assert not at.exception, at.exception
    [run] = RunRegistry().list_runs()
    assert run.status == "queued" and run.config.train_size == 500
    assert any("#1 in the queue" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Submit my experiment").click().run()
    assert any("already waiting, #1 in the queue" in e for e in errors(at))
    next(b for b in at.button if b.label == "Cancel my experiment").click().run()
    assert RunRegistry().get(run.id).status == "cancelled"


def finished_experiment(registry: RunRegistry, owner: str, accuracy: float) -> int:
    run = registry.enqueue(experiments.LAB_EXPERIMENT, owner=owner, priority=1)
    queue.claim_next(registry, "test")
    path = registry.run_dir(run.id) / "model.keras"
    save_model(build_model("lab7", seed=None, compile=False), path)
    registry.record_epoch(
        run.id,
        {"loss": [0.5], "accuracy": [0.9], "val_loss": [0.3], "val_accuracy": [accuracy]},
        path,
    )
    registry.finish_run(
        run.id, "finished", test_loss=0.3, test_accuracy=accuracy, misclassified=12, test_n=10_000
    )
    registry.set_class_score(run.id, 0.61, 30)
    return run.id


def test_the_leaderboard_hides_the_class_column_until_revealed(student):
    registry = RunRegistry()
    first = finished_experiment(registry, "aaaa1111aaaa1111", 0.97)
    finished_experiment(registry, "bbbb2222bbbb2222", 0.98)
    at = open_page("app_pages/leaderboard.py")
    [board] = [d.value for d in at.dataframe]
    assert "class drawings" not in board.columns
    # the two reference rows (within the class's limits, then the shipped 12 epochs),
    # then best first, ranked
    assert list(board["run"]) == [-1, -2, first + 1, first]
    assert list(board["rank"]) == ["ref", "ref", "1", "2"]
    assert list(board["status"].iloc[:2]) == ["reference", "reference"]
    assert board["MNIST test accuracy"].iloc[0] == "—"  # not trained in this class yet
    assert board["MNIST test accuracy"].iloc[1] == "99.32%"  # the shipped Lab 7
    assert list(board["what I changed"].iloc[2:]) == ["epochs 12 → 1"] * 2
    assert not any("None" in str(v) for v in board.to_numpy().ravel())
    experiments.reveal(registry, True, role=Role.INSTRUCTOR)
    at.run()
    [board] = [d.value for d in at.dataframe]
    assert list(board["class drawings"].iloc[2:]) == ["61.0% of 30 drawings"] * 2
