"""novelty: the rule (not a digit, then not sure, then the digit), its words, its file
beside the model, the shipped Lab 7 model's fitted rule on real and unreal drawings,
every awkward drawing on the Draw page's path to a verdict (reader.Reader), and the fit
(novelty.fit_rule, with tools/fit_novelty's CLI over it)."""

from __future__ import annotations

import json
import math
import shutil

import keras
import numpy as np
import pytest

from mnist_demo import novelty
from mnist_demo.config import DEFAULT_MODEL_PATH
from mnist_demo.errors import DigitLabError
from mnist_demo.evaluation import predict_proba
from mnist_demo.model import load_model
from mnist_demo.novelty import (
    DIGIT,
    FALLBACK,
    FALLBACK_SURE_BELOW,
    NOT_A_DIGIT,
    NOT_SURE,
    Rule,
    RuleFileError,
    Verdict,
    calibration_error,
    load_rule,
    save_rule,
)
from mnist_demo.preprocess import BlankImageError, DrawingTooSmallError, FullCanvasError, to_mnist
from mnist_demo.reader import Reader
from tools import fit_novelty
from tools.drawn_digits import on_the_draw_page, pen_strokes, place_strokes, render_strokes
from tools.non_digits import iter_non_digits, non_digit_canvas, through_to_mnist


@pytest.fixture(scope="module")
def lab7():
    return load_model(DEFAULT_MODEL_PATH)


@pytest.fixture(scope="module")
def reader(lab7):
    """The shipped Lab 7 model as the Draw page and the CLI read with it."""
    return Reader(lab7, DEFAULT_MODEL_PATH)


def _width(model: keras.Model) -> int:
    return novelty.head_inputs(model, np.zeros((1, 28, 28), np.float32)).shape[1]


# --- the rule and its words ------------------------------------------------------------


def test_not_a_digit_comes_first_then_not_sure_then_the_digit():
    rule = Rule(sure_below=0.8, weights=np.zeros(3), bias=0.0, not_digit_above=1.0)
    confidence = np.array([0.99, 0.5, 0.99, 0.5, 0.8, 0.99])
    scores = np.array([2.0, 2.0, 0.0, 0.0, 0.0, 1.0])
    assert rule.kinds(confidence, scores).tolist() == [
        NOT_A_DIGIT,  # however confident
        NOT_A_DIGIT,  # not merely "not sure"
        DIGIT,
        NOT_SURE,
        DIGIT,  # sure_below itself is sure
        DIGIT,  # the threshold itself is not above it
    ]


def test_the_fallback_never_says_not_a_digit():
    confidence = np.linspace(0, 1, 101)
    kinds = FALLBACK.kinds(confidence, np.full(101, -math.inf))
    assert not FALLBACK.fitted
    np.testing.assert_array_equal(kinds == NOT_SURE, confidence < FALLBACK_SURE_BELOW)
    assert set(kinds.tolist()) == {NOT_SURE, DIGIT}


def test_the_words():
    assert (
        Verdict(NOT_A_DIGIT, 8, 0.41).text
        == "That doesn't look like a digit to me — the closest is 8, 41%"
    )
    assert Verdict(NOT_SURE, 4, 0.554).text == "Not sure: maybe 4, 55%"
    assert Verdict(DIGIT, 7, 0.981).text == "7, 98% confident"
    # the Prediction metric's value and note
    assert (Verdict(NOT_A_DIGIT, 8, 0.41).headline, Verdict(NOT_A_DIGIT, 8, 0.41).note) == (
        "?",
        "not a digit",
    )
    assert (Verdict(NOT_SURE, 4, 0.554).headline, Verdict(NOT_SURE, 4, 0.554).note) == (
        "4?",
        "not sure (55%)",
    )
    assert (Verdict(DIGIT, 7, 0.981).headline, Verdict(DIGIT, 7, 0.981).note) == (
        "7",
        "98% confident",
    )


def test_one_verdict_from_the_head_inputs_of_one_drawing():
    rule = Rule(sure_below=0.8, weights=np.array([1.0, -1.0]), bias=0.5, not_digit_above=1.0)
    p = np.full(10, 0.01)
    p[3] = 0.91
    assert rule.verdict(p, np.array([1.0, 0.0])) == Verdict(NOT_A_DIGIT, 3, 0.91)  # 1.5 > 1
    assert rule.verdict(p, np.array([0.0, 0.0])) == Verdict(DIGIT, 3, 0.91)  # 0.5
    assert FALLBACK.verdict(p, None) == Verdict(DIGIT, 3, 0.91)
    with pytest.raises(ValueError, match="head inputs"):
        rule.verdict(p, None)


def test_calibration_error():
    # Two bins: 0.95 shown, all right (gap 0.05); 0.55 shown, half right (gap 0.05).
    confidence = [0.95] * 4 + [0.55] * 4
    correct = [True] * 4 + [True, False] * 2
    assert calibration_error(confidence, correct) == pytest.approx(0.05)
    assert calibration_error([0.75] * 4, [True, True, True, False]) == pytest.approx(0.0)
    # 100 % shown and never right: the worst there is, in the top bin, not past it
    assert calibration_error([1.0, 1.0], [False, False]) == pytest.approx(1.0)
    assert math.isnan(calibration_error([], []))


# --- the rule file ---------------------------------------------------------------------


def test_no_rule_file_no_path_no_head(tmp_path, lab7):
    assert load_rule(lab7, tmp_path / "m.keras") is FALLBACK
    assert load_rule(lab7, None) is FALLBACK


def test_a_saved_rule_comes_back_for_the_same_weights_only(tmp_path, lab7):
    path = tmp_path / "m.keras"
    rule = Rule(0.7, np.linspace(-1, 1, _width(lab7)), bias=0.5, not_digit_above=1.5)
    written = save_rule(rule, lab7, path, {"by": "a test"})
    assert written == tmp_path / "m.novelty.json"
    back = load_rule(lab7, path)
    assert back.fitted and (back.sure_below, back.bias, back.not_digit_above) == (0.7, 0.5, 1.5)
    np.testing.assert_allclose(back.weights, rule.weights, rtol=1e-5)
    assert json.loads(written.read_text())["about"] == {"by": "a test"}

    retrained = keras.models.clone_model(lab7)  # same shape, other weights
    assert load_rule(retrained, path) is FALLBACK


def test_a_damaged_rule_file_says_what_to_do_without_sending_anyone_to_tools(tmp_path, lab7):
    path = tmp_path / "m.keras"
    rule_file = tmp_path / "m.novelty.json"
    for content in ("{not json", json.dumps({"version": 1, "weights": [1.0]})):
        rule_file.write_text(content)
        with pytest.raises(RuleFileError, match=r"m\.novelty\.json .*delete it") as e:
            load_rule(lab7, path)
        assert "tools" not in str(e.value) and str(path) in str(e.value)


def test_a_model_that_does_not_end_in_softmax_has_only_the_fallback(tmp_path, lab7):
    path = tmp_path / "m.keras"
    save_rule(Rule(0.7, np.zeros(_width(lab7))), lab7, path, {})
    logits = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    assert novelty.output_layer(logits) is None
    assert load_rule(logits, path) is FALLBACK


# --- the shipped Lab 7 model's rule ------------------------------------------------------


def _verdict(reader: Reader, image28: np.ndarray) -> Verdict:
    return reader.read(image28).verdict


def test_the_shipped_lab7_model_has_a_rule_fitted_to_its_weights(lab7):
    rule = load_rule(lab7, DEFAULT_MODEL_PATH)
    assert rule.fitted, f"run: {novelty.FIT_COMMAND} {DEFAULT_MODEL_PATH}"
    assert 0.5 < rule.sure_below < 0.99


def test_clean_mnist_digits_are_digits(lab7, reader, mnist):
    _, (x_test, _) = mnist
    rule = load_rule(lab7, DEFAULT_MODEL_PATH)
    images = x_test[:300].astype(np.float32) / 255
    kinds = rule.kinds(predict_proba(lab7, images).max(axis=1), rule.scores(lab7, images))
    assert (kinds == DIGIT).mean() >= 0.97
    assert _verdict(reader, images[0]) == Verdict(DIGIT, 7, pytest.approx(1.0, abs=1e-3))


def test_scribbles_and_near_blank_pictures_are_flagged(reader, mnist):
    (x_train, _), _ = mnist
    scribbles = [
        to_mnist(non_digit_canvas("scribble", np.random.default_rng([99, i]), x_train[:20]))
        for i in range(20)
    ]
    flagged = [_verdict(reader, s).kind != DIGIT for s in scribbles]
    assert sum(flagged) >= 14, flagged
    noise = np.random.default_rng(0).uniform(0, 0.3, (28, 28)).astype(np.float32)
    dot = np.zeros((28, 28), np.float32)
    dot[13:16, 13:16] = 1.0
    for faint in (noise, dot):
        assert _verdict(reader, faint).kind == NOT_A_DIGIT


def test_one_drawing_gets_what_the_rule_gives_a_batch(lab7, reader, mnist):
    (x_train, _), (x_test, _) = mnist
    images = np.stack(
        [x_test[i].astype(np.float32) / 255 for i in range(3)]
        + [
            to_mnist(non_digit_canvas("face", np.random.default_rng([7, i]), x_train[:9]))
            for i in range(3)
        ]
    )
    rule = load_rule(lab7, DEFAULT_MODEL_PATH)
    probabilities = predict_proba(lab7, images)
    batch = rule.kinds(probabilities.max(axis=1), rule.scores(lab7, images))
    single = [reader.read(im).verdict for im in images]
    assert [v.kind for v in single] == batch.tolist()
    assert [v.digit for v in single] == probabilities.argmax(axis=1).tolist()
    assert {DIGIT, NOT_A_DIGIT} <= set(batch.tolist())  # both answers were asked for


# --- awkward drawings on the Draw page's path ------------------------------------------


def _page(reader: Reader, canvas: np.ndarray) -> Verdict:
    """What app_pages/draw.py does with a canvas: one Reader.read."""
    return reader.read(canvas).verdict


def _on_black(grey: np.ndarray) -> np.ndarray:
    return np.dstack([grey, grey, grey, np.full_like(grey, 255)])


def test_several_digits_are_not_a_digit(reader, mnist):
    (x_train, _), _ = mnist
    for i in range(3):
        canvas = non_digit_canvas("two digits", np.random.default_rng([98, i]), x_train[:20])
        assert _page(reader, on_the_draw_page(canvas)).kind == NOT_A_DIGIT


def test_a_digit_touching_the_edges_is_read(reader, mnist):
    _, (x_test, y_test) = mnist
    placed = place_strokes(pen_strokes(x_test[0]), size=250, top=0, left=0)
    canvas = render_strokes(placed, brush=20)  # the brush runs off the top and left
    assert canvas[0, :, 0].max() == 255 and canvas[:, 0, 0].max() == 255
    assert _page(reader, canvas) == Verdict(DIGIT, int(y_test[0]), pytest.approx(1.0, abs=0.01))


def test_a_speck_is_too_small_to_read(reader):
    grey = np.zeros((280, 280), np.uint8)
    grey[100:104, 200:204] = 255
    with pytest.raises(DrawingTooSmallError, match="too small"):
        _page(reader, _on_black(grey))


def test_an_all_ink_canvas_is_refused_on_the_page_and_blank_elsewhere(reader):
    canvas = _on_black(np.full((280, 280), 255, np.uint8))
    with pytest.raises(FullCanvasError, match="Clear"):
        _page(reader, canvas)
    with pytest.raises(BlankImageError):  # an upload or the CLI: no digit in one flat colour
        to_mnist(canvas)


# --- the fit: novelty.fit_rule, and tools/fit_novelty's CLI over it -----------------------


def test_thresholds_flag_the_shares_asked_for():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 2000)
    scores = rng.normal(size=2000)
    sure_below, above = novelty.thresholds(confidence, scores)
    unsure = confidence < sure_below
    assert unsure.sum() == pytest.approx(novelty.SURE_SHARE * 2000, abs=1)
    assert (unsure | (scores > above)).sum() == int(novelty.FLAGGED_SHARE * 2000)


def test_logistic_regression_on_raw_inputs():
    rng = np.random.default_rng(1)
    scale = np.array([1.0, 100.0, 0.01])  # wildly different units: standardised inside
    shift = np.array([2.0, 0.0, 2.0])  # the middle column is noise
    x = np.vstack([rng.normal(0, 1, (300, 3)), rng.normal(0, 1, (300, 3)) + shift]) * scale
    y = np.r_[np.zeros(300), np.ones(300)]
    weights, bias = novelty.logistic_regression(x, y)
    assert ((x @ weights + bias > 0) == (y == 1)).mean() > 0.9
    assert abs(weights[1] * scale[1]) < 0.2 * abs(weights[0] * scale[0])


def test_the_fit_writes_a_rule_the_model_then_uses(tmp_path, capsys):
    path = tmp_path / "lab7.keras"
    shutil.copy(DEFAULT_MODEL_PATH, path)
    assert fit_novelty.main(["--model", str(path), "--digits", "80", "--non-digits", "21"]) == 0
    assert f"wrote {tmp_path / 'lab7.novelty.json'}" in capsys.readouterr().out
    rule = load_rule(load_model(path), path)
    assert rule.fitted and rule.not_digit_above < math.inf
    about = json.loads((tmp_path / "lab7.novelty.json").read_text())["about"]
    assert about["command"] == f"{novelty.FIT_COMMAND} {path}"


def test_fit_rule_flags_the_non_digits_it_learned_and_keeps_the_digits(lab7, mnist):
    """The core's fit on a small set: MNIST test digits against generated non-digits."""
    (x_train, _), (x_test, y_test) = mnist
    digits = x_test[:200].astype(np.float32) / 255
    _, non_digits, dropped = through_to_mnist(iter_non_digits(140, 5, x_train[:20]))
    non_digits = non_digits[~dropped]
    refused = np.zeros(len(digits), bool)
    refused[0] = True  # ignored: as if the page had refused it
    rule, figures = novelty.fit_rule(lab7, digits, y_test[:200], non_digits, refused=refused)
    assert rule.fitted and 0.0 < rule.sure_below < 1.0
    # a tiny set: far from the real fit's 90 %, far above the 1.75 % of digits it flags
    assert figures["fit non-digits flagged (in sample)"] >= 0.4
    assert figures["right answers flagged (odd drawings)"] <= 0.05
    with pytest.raises(DigitLabError, match="too few digits"):
        novelty.fit_rule(lab7, digits[:2], (y_test[:2] + 1) % 10, non_digits)


def test_the_fit_refuses_a_model_with_no_softmax_output_in_one_line(tmp_path, capsys):
    path = tmp_path / "logits.keras"
    keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    ).save(path)
    assert fit_novelty.main(["--model", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "softmax" in err[0]
