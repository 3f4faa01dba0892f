"""Home in AppTest with the shipped Lab 7 model and the real test set: the lab's questions
(a) to (e) answered for the session's model, and its small tables as copyable text."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from mnist_demo import config, ui
from mnist_demo.classroom import OWNER
from mnist_demo.evaluation import predict_proba
from mnist_demo.model import load_model
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import RunRegistry

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
pytestmark = pytest.mark.slow


def open_home(model_key: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if model_key is not None:
        at.session_state[ui.MODEL_KEY] = model_key
    at.run()
    assert not at.exception, at.exception
    return at


def charts_on(at: AppTest) -> dict[str, pd.DataFrame]:
    """Each Vega-Lite chart's data, by the chart's title."""
    return {
        json.loads(c.proto.spec)["title"]: convert_arrow_bytes_to_pandas_df(c.proto.data.data)
        for c in at.get("vega_lite_chart")
    }


def mistake_tiles(at: AppTest) -> list[tuple[int, str]]:
    """(test image number, caption) of each tile of (e), in page order."""
    tiles = "".join(h.proto.body for h in at.get("html") if "digit-lab-tile" in h.proto.body)
    return [
        (int(number), caption)
        for number, caption in re.findall(
            r'data-test-image-id="(\d+)".*?<figcaption[^>]*>([^<]*)<', tiles
        )
    ]


def test_small_tables_are_text_a_student_can_copy(home):
    at = open_home()
    assert not at.dataframe, "Home's small tables are st.table, not canvas grids"
    versions, shapes, encoded, summary = (t.value for t in at.table)
    import keras
    import tensorflow as tf

    versions = versions.set_index("library")["version"]
    assert versions["TensorFlow"] == tf.__version__ and versions["Keras"] == keras.__version__
    shapes = shapes.set_index("array")
    assert shapes.loc["X_train", "before"] == "(60000, 28, 28)"
    assert shapes.loc["X_train", "after"] == "(60000, 28, 28, 1)"
    assert shapes.loc["y_train", "after"] == "(60000, 10)"
    assert encoded["label"].tolist() == [5, 0, 4, 1, 9]  # MNIST's first training labels
    assert encoded.loc[0, "5"] == 1 and encoded.iloc[0, 1:].sum() == 1
    assert summary["layer"].tolist()[0] == "conv1" and summary["parameters"].sum() == 3_156_098


def test_c_draws_the_shipped_models_recorded_history(home):
    history = json.loads(config.DEFAULT_MODEL_PATH.with_suffix(".json").read_text())["history"]
    drawn = charts_on(open_home())
    assert set(drawn) == {"Model - Accuracy", "Model - Loss"}
    for title, metric in (("Model - Accuracy", "accuracy"), ("Model - Loss", "loss")):
        data = drawn[title].sort_values(["set", "epoch"])
        for series, key in (("train", metric), ("test", f"val_{metric}")):
            line = data[data["set"] == series]
            assert line["epoch"].tolist() == list(range(1, 13))  # the lab's 12 epochs
            assert line[metric].tolist() == history[key], f"{title}: {series}"


def test_c_a_model_without_recorded_history_gets_a_note_not_an_error(home):
    """A model file registered with no per-epoch history (a copy of the shipped one)."""
    registry = RunRegistry()
    run = registry.submit(TrainConfig(epochs=1), role=OWNER)
    path = registry.run_dir(run.id) / "model.keras"
    shutil.copy(config.DEFAULT_MODEL_PATH, path)
    registry.record_epoch(run.id, {}, path)
    registry.finish_run(run.id, "finished")
    at = open_home(model_key=str(run.id))
    assert at.sidebar.selectbox[0].value == str(run.id)
    assert not at.get("vega_lite_chart") and not at.error
    assert any("has no recorded training history" in c.value for c in at.caption)
    assert {m.label: m.value for m in at.metric}["(b) Misclassified"] == "68 of 10,000"


def test_d_reads_test_image_0_as_7_and_refuses_an_n_outside_the_set(home, mnist):
    _, (_, y_test) = mnist
    at = open_home()
    assert at.number_input(key="home_n").value == 0  # the lab's example
    prediction = next(m for m in at.metric if m.label == "Prediction")
    assert prediction.value == str(y_test[0]) == "7"
    assert prediction.delta == "right: the label is 7"
    (bars,) = [h.proto.body for h in at.get("html") if "data-digit" in h.proto.body]
    assert 'data-digit="7" data-top="true"' in bars
    assert any(m.value.startswith("Top 3: **7** ") for m in at.markdown)  # with its %

    for n in (10_000, -1):
        at.number_input(key="home_n").set_value(n).run()
        assert not at.exception
        (error,) = at.error
        assert f"there is no image {n}" in error.value and "0 to 9,999" in error.value
        assert not [m for m in at.metric if m.label == "Prediction"]
        assert mistake_tiles(at), "a wrong n spoils (d) only: (e) still follows"

    at.number_input(key="home_n").set_value(9_999).run()
    assert not at.error
    assert next(m for m in at.metric if m.label == "Prediction").value == str(y_test[9_999])


def test_e_shows_the_shipped_models_most_confident_real_mistakes(home, mnist):
    _, (x_test, y_test) = mnist
    at = open_home()
    tiles = mistake_tiles(at)
    assert len(tiles) == 8 and len({n for n, _ in tiles}) == 8
    numbers = np.array([n for n, _ in tiles])
    # the shipped model's own answers on those ten images, computed here, not by the page
    probabilities = predict_proba(load_model(config.DEFAULT_MODEL_PATH), x_test[numbers])
    predicted = probabilities.argmax(axis=1)
    truths = y_test[numbers]
    assert [c for _, c in tiles] == [f"{t} → {p}" for t, p in zip(truths, predicted, strict=True)]
    assert (predicted != truths).all(), "every tile is a mistake"
    confidence = probabilities.max(axis=1)
    assert (np.diff(confidence) <= 1e-6).all(), "most confident first"
    links = [link.proto.label for link in at.get("page_link")]
    assert "All 68 mistakes, with the confusion matrix" in links
