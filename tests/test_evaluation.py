"""Evaluation: every number is checked against a tiny set whose probabilities are written
by hand, so each expected value below can be worked out on paper."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from mnist_demo import config
from mnist_demo.evaluation import (
    ORDERS,
    Evaluation,
    compare,
    evaluate,
    predict_proba,
    select,
    top_k,
)

# --- a hand-made set of seven answers -------------------------------------------------
#
# idx  label  probabilities                  predicted  confidence  right?  loss
#  0     0    0: .9, 1: .1                       0         .9        yes    -ln .9
#  1     1    1: .6, 7: .4                       1         .6        yes    -ln .6
#  2     7    1: .8, 7: .2                       1         .8        no     -ln .2
#  3     3    5: .5, 3: .25, 8: .25              5         .5        no     -ln .25
#  4     5    3: .8, 5: .2                       3         .8        no     -ln .2
#  5     3    3: 1.0                             3        1.0        yes     0
#  6     9    0: .7, 4: .3 (9 gets 0)            0         .7        no     -ln 1e-7 (clipped)
#
# Digits 2, 4, 6, 8 never occur as labels; 2, 4, 6, 7, 8, 9 are never predicted.

ROWS = [
    {0: 0.9, 1: 0.1},
    {1: 0.6, 7: 0.4},
    {1: 0.8, 7: 0.2},
    {5: 0.5, 3: 0.25, 8: 0.25},
    {3: 0.8, 5: 0.2},
    {3: 1.0},
    {0: 0.7, 4: 0.3},
]
LABELS = [0, 1, 7, 3, 5, 3, 9]
PREDICTED = [0, 1, 1, 5, 3, 3, 0]
CONFIDENCE = [0.9, 0.6, 0.8, 0.5, 0.8, 1.0, 0.7]
CORRECT = [True, True, False, False, False, True, False]
LOSSES = [
    -math.log(0.9),
    -math.log(0.6),
    -math.log(0.2),
    -math.log(0.25),
    -math.log(0.2),
    0.0,
    -math.log(1e-7),
]


def probabilities_from(rows: list[dict[int, float]], dtype=np.float64) -> np.ndarray:
    p = np.zeros((len(rows), 10), dtype=dtype)
    for i, row in enumerate(rows):
        for digit, value in row.items():
            p[i, digit] = value
    return p


@pytest.fixture
def ev() -> Evaluation:
    return Evaluation(probabilities_from(ROWS), np.array(LABELS))


def test_predictions_confidence_and_correct(ev):
    np.testing.assert_array_equal(ev.predictions, PREDICTED)
    np.testing.assert_allclose(ev.confidence, CONFIDENCE)
    np.testing.assert_array_equal(ev.correct, CORRECT)
    assert ev.correct.dtype == bool
    assert ev.n == 7


def test_per_image_loss_is_minus_log_of_the_true_class_clipped(ev):
    np.testing.assert_allclose(ev.per_image_loss, LOSSES, rtol=1e-6, atol=1e-9)
    # a zero probability for the true digit is clipped, not infinite
    assert np.isfinite(ev.per_image_loss).all()
    assert ev.per_image_loss[6] == pytest.approx(16.118, abs=1e-3)


def test_loss_accuracy_and_error_count(ev):
    assert ev.loss == pytest.approx(sum(LOSSES) / 7, rel=1e-6)
    assert ev.accuracy == pytest.approx(3 / 7)
    assert ev.misclassified_count == 4
    assert isinstance(ev.misclassified_count, int)


def test_loss_matches_keras_categorical_crossentropy():
    # rows that sum to 1 and never reach 0 or 1: Keras's clipping does not come into play
    p = probabilities_from(ROWS[:5]) * 0.9 + 0.01
    labels = np.array(LABELS[:5])
    keras_loss = keras.losses.CategoricalCrossentropy()(np.eye(10)[labels], p)
    assert Evaluation(p, labels).loss == pytest.approx(float(keras_loss), rel=1e-5)


def test_misclassified_indices_most_confident_first_with_stable_ties(ev):
    # wrong: 2 (.8), 3 (.5), 4 (.8), 6 (.7); 2 and 4 tie and keep index order
    np.testing.assert_array_equal(ev.misclassified_indices(), [2, 4, 6, 3])
    np.testing.assert_array_equal(
        ev.misclassified_indices(most_confident_first=False), [2, 3, 4, 6]
    )


def test_misclassified_indices_ties_are_stable_in_float32():
    # many equal confidences: an unstable sort would shuffle them
    n = 40
    p = np.zeros((n, 10), np.float32)
    p[:, 1] = 0.75
    p[:, 2] = 0.25
    p[::3, 1] = 0.9  # a few more confident ones
    p[::3, 2] = 0.1
    labels = np.full(n, 2)
    order = Evaluation(p, labels).misclassified_indices()
    expected = list(range(0, n, 3)) + [i for i in range(n) if i % 3]
    np.testing.assert_array_equal(order, expected)


def test_confusion_is_indexed_true_then_predicted(ev):
    expected = np.zeros((10, 10), int)
    for t, p in zip(LABELS, PREDICTED, strict=True):
        expected[t, p] += 1
    np.testing.assert_array_equal(ev.confusion, expected)
    # the asymmetric pairs pin down the orientation: true 7 was predicted 1, not the reverse
    assert ev.confusion[7, 1] == 1
    assert ev.confusion[1, 7] == 0
    assert ev.confusion[9, 0] == 1
    assert ev.confusion[0, 9] == 0
    assert ev.confusion.sum() == 7
    assert np.trace(ev.confusion) == 3


def test_per_class_precision_recall_errors_support(ev):
    rows = ev.per_class()
    assert [r["digit"] for r in rows] == list(range(10))
    by = {r["digit"]: r for r in rows}

    def check(d, support, precision, recall, errors):
        r = by[d]
        assert r["support"] == support, d
        assert r["errors"] == errors, d
        for key, want in (("precision", precision), ("recall", recall)):
            if want is None:
                assert math.isnan(r[key]), (d, key)
            else:
                assert r[key] == pytest.approx(want), (d, key)

    check(0, support=1, precision=0.5, recall=1.0, errors=0)  # 0 predicted for 0 and 9
    check(1, support=1, precision=0.5, recall=1.0, errors=0)  # 1 predicted for 1 and 7
    check(3, support=2, precision=0.5, recall=0.5, errors=1)
    check(5, support=1, precision=0.0, recall=0.0, errors=1)
    # never predicted but present: precision undefined, recall 0
    check(7, support=1, precision=None, recall=0.0, errors=1)
    check(9, support=1, precision=None, recall=0.0, errors=1)
    # absent and never predicted: both undefined
    for d in (2, 4, 6, 8):
        check(d, support=0, precision=None, recall=None, errors=0)
    assert sum(r["support"] for r in rows) == 7
    assert sum(r["errors"] for r in rows) == ev.misclassified_count


def test_summary_is_the_json_contract(ev):
    s = ev.summary()
    assert set(s) == {"test_loss", "test_accuracy", "misclassified", "n"}
    assert s["test_loss"] == pytest.approx(sum(LOSSES) / 7, rel=1e-6)
    assert s["test_accuracy"] == pytest.approx(3 / 7)
    assert s["misclassified"] == 4
    assert s["n"] == 7
    # plain Python numbers, so `evaluate --json` can dump it
    assert json.loads(json.dumps(s)) == pytest.approx(s)


def test_float32_probabilities_give_python_floats():
    ev32 = Evaluation(probabilities_from(ROWS, np.float32), np.array(LABELS))
    s = ev32.summary()
    assert type(s["test_loss"]) is float
    assert type(s["test_accuracy"]) is float
    json.dumps(s)


def test_empty_set_has_undefined_scores_but_no_crash():
    ev0 = Evaluation(np.zeros((0, 10), np.float32), np.zeros(0, np.int64))
    assert ev0.n == 0
    assert math.isnan(ev0.loss)
    assert math.isnan(ev0.accuracy)
    assert ev0.misclassified_count == 0
    assert ev0.misclassified_indices().size == 0
    assert ev0.confusion.sum() == 0
    assert all(math.isnan(r["precision"]) and math.isnan(r["recall"]) for r in ev0.per_class())
    assert select(ev0).size == 0


# --- compare --------------------------------------------------------------------------


def test_compare_fixed_introduced_both_wrong(ev):
    # model b answers: right on 0, 2, 4, 5; wrong on 1, 3, 6
    b_predicted = [0, 4, 7, 8, 5, 3, 1]
    b = Evaluation(np.eye(10)[b_predicted], np.array(LABELS))
    np.testing.assert_array_equal(b.correct, [True, False, True, False, True, True, False])
    diff = compare(ev, b)
    assert set(diff) == {"fixed", "introduced", "both_wrong"}
    np.testing.assert_array_equal(diff["fixed"], [2, 4])
    np.testing.assert_array_equal(diff["introduced"], [1])
    np.testing.assert_array_equal(diff["both_wrong"], [3, 6])
    # and the other way round, fixed and introduced swap
    back = compare(b, ev)
    np.testing.assert_array_equal(back["fixed"], [1])
    np.testing.assert_array_equal(back["introduced"], [2, 4])
    np.testing.assert_array_equal(back["both_wrong"], [3, 6])


def test_compare_same_rights_and_wrongs_fixes_and_introduces_nothing(ev):
    """Another model, right and wrong on the same images but sure of every answer and
    wrong in other ways on 2, 3 and 6: a different wrong answer fixes nothing."""
    b_predicted = [0, 1, 2, 8, 3, 3, 4]
    b = Evaluation(np.eye(10)[b_predicted], np.array(LABELS))
    np.testing.assert_array_equal(b.correct, CORRECT)
    for diff in (compare(ev, b), compare(b, ev), compare(ev, ev)):
        np.testing.assert_array_equal(diff["fixed"], [])
        np.testing.assert_array_equal(diff["introduced"], [])
        np.testing.assert_array_equal(diff["both_wrong"], [2, 3, 4, 6])


# --- select ---------------------------------------------------------------------------


def test_select_default_is_everything_in_index_order(ev):
    np.testing.assert_array_equal(select(ev), range(7))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"true_digit": 3}, [3, 5]),
        ({"true_digit": 0}, [0]),
        ({"true_digit": 2}, []),
        ({"predicted_digit": 1}, [1, 2]),
        ({"predicted_digit": 0}, [0, 6]),
        ({"predicted_digit": 9}, []),
        ({"true_digit": 3, "predicted_digit": 5}, [3]),
        ({"true_digit": 3, "predicted_digit": 3}, [5]),
        ({"true_digit": 7, "predicted_digit": 7}, []),
        ({"true_digit": 0, "predicted_digit": 0}, [0]),  # digit 0 is a filter, not "any"
        ({"outcome": "all"}, [0, 1, 2, 3, 4, 5, 6]),
        ({"outcome": "right"}, [0, 1, 5]),
        ({"outcome": "wrong"}, [2, 3, 4, 6]),
        ({"true_digit": 3, "outcome": "right"}, [5]),
        ({"predicted_digit": 0, "outcome": "wrong"}, [6]),
        # confidence range is inclusive at both ends
        ({"confidence": (0.6, 0.8)}, [1, 2, 4, 6]),
        ({"confidence": (0.5, 0.5)}, [3]),
        ({"confidence": (1.0, 1.0)}, [5]),
        ({"confidence": (0.0, 0.59)}, [3]),
        ({"confidence": (0.81, 1.0)}, [0, 5]),
        ({"confidence": (0.7, 0.9), "outcome": "wrong"}, [2, 4, 6]),
    ],
)
def test_select_filters(ev, filters, expected):
    got = select(ev, **filters)
    np.testing.assert_array_equal(got, expected)
    assert np.issubdtype(got.dtype, np.integer)


@pytest.mark.parametrize(
    ("filters", "order", "expected"),
    [
        ({}, "index", [0, 1, 2, 3, 4, 5, 6]),
        # least confident first; 2 and 4 tie at .8 and keep index order
        ({}, "confidence", [3, 1, 6, 2, 4, 0, 5]),
        # highest loss first; 2 and 4 tie at -ln .2
        ({}, "loss", [6, 2, 4, 3, 1, 0, 5]),
        # most confident first
        ({}, "wrong_confidence", [5, 0, 2, 4, 6, 1, 3]),
        ({"outcome": "wrong"}, "wrong_confidence", [2, 4, 6, 3]),
        ({"outcome": "wrong"}, "confidence", [3, 6, 2, 4]),
        ({"outcome": "wrong"}, "loss", [6, 2, 4, 3]),
        ({"outcome": "right"}, "loss", [1, 0, 5]),
        ({"true_digit": 3}, "confidence", [3, 5]),
        ({"true_digit": 3}, "wrong_confidence", [5, 3]),
    ],
)
def test_select_orders(ev, filters, order, expected):
    np.testing.assert_array_equal(select(ev, order=order, **filters), expected)


def test_select_confidence_bounds_inclusive_for_float32_and_slider_percentages():
    # the model gives float32; the Test set page passes percent / 100 as Python floats
    p = np.zeros((3, 10), np.float32)
    p[0, [3, 1]] = [0.7, 0.3]
    p[1, [2, 3]] = [0.71, 0.29]
    p[2, [5, 6]] = [0.69, 0.31]
    ev32 = Evaluation(p, np.array([3, 2, 5]))
    np.testing.assert_array_equal(select(ev32, confidence=(70 / 100, 100 / 100)), [0, 1])
    np.testing.assert_array_equal(select(ev32, confidence=(0 / 100, 70 / 100)), [0, 2])
    np.testing.assert_array_equal(select(ev32, confidence=(69 / 100, 69 / 100)), [2])


def test_select_wrong_confidence_matches_misclassified_indices(ev):
    np.testing.assert_array_equal(
        select(ev, outcome="wrong", order="wrong_confidence"), ev.misclassified_indices()
    )


def test_every_order_sorts_by_its_key_with_ties_in_index_order():
    """500 random answers with many ties (probabilities in tenths): each order is its
    key's sort, ties broken by image number, every image once."""
    rng = np.random.default_rng(3)
    p = rng.integers(0, 4, size=(500, 10)).astype(np.float64)
    p[:, 0] += 0.5  # no all-zero rows
    p = np.round(p / p.sum(axis=1, keepdims=True), 1)
    r = Evaluation(p, rng.integers(0, 10, 500))
    keys = {
        "index": np.zeros(500),
        "confidence": r.confidence,
        "loss": -r.per_image_loss,
        "wrong_confidence": -r.confidence,
    }
    assert set(ORDERS) == set(keys)
    for order, key in keys.items():
        got = select(r, order=order)
        expected = sorted(range(500), key=lambda i, key=key: (key[i], i))
        assert got.tolist() == expected, order


@pytest.mark.parametrize("outcome", ["Wrong", "correct", "", None, "any"])
def test_select_rejects_unknown_outcome(ev, outcome):
    with pytest.raises(ValueError, match="outcome"):
        select(ev, outcome=outcome)


@pytest.mark.parametrize("order", ["Index", "random", "", "least confident first"])
def test_select_rejects_unknown_order(ev, order):
    with pytest.raises(ValueError, match="order"):
        select(ev, order=order)


# --- top_k ----------------------------------------------------------------------------


def test_top_k_most_probable_first_with_stable_ties():
    p = probabilities_from(ROWS)[3]  # 5: .5, 3: .25, 8: .25
    assert top_k(p) == [(5, 0.5), (3, 0.25), (8, 0.25)]
    assert top_k(p, k=1) == [(5, 0.5)]
    assert [d for d, _ in top_k(p, k=10)] == [5, 3, 8, 0, 1, 2, 4, 6, 7, 9]
    digit, prob = top_k(p)[0]
    assert type(digit) is int
    assert type(prob) is float


def test_top_k_float32_row():
    p = np.array([0.05, 0.1, 0.02, 0.03, 0.6, 0.05, 0.05, 0.05, 0.03, 0.02], np.float32)
    got = top_k(p, k=2)
    assert [d for d, _ in got] == [4, 1]
    assert got[0][1] == pytest.approx(0.6)


# --- a tiny Keras model whose answers we control --------------------------------------

LIT_PIXEL = {d: (3 + 2 * d, 5 + d) for d in range(10)}  # digit -> (row, col) it looks at


@pytest.fixture(scope="module")
def pixel_model() -> keras.Model:
    """Digit d scores 12 x (brightness of pixel LIT_PIXEL[d]). A Dropout layer makes any
    call with training=True visible: it would zero pixels and rescale the rest."""
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    kernel = np.zeros((784, 10), np.float32)
    for d, (r, c) in LIT_PIXEL.items():
        kernel[r * 28 + c, d] = 12.0
    model.layers[-1].set_weights([kernel, np.zeros(10, np.float32)])
    return model


def lit_images(digits, rng) -> np.ndarray:
    """uint8 (N, 28, 28): the digit's pixel at full brightness, a rival digit's pixel dimmer,
    noise everywhere else (which the model ignores)."""
    x = rng.integers(0, 40, size=(len(digits), 28, 28), dtype=np.uint8)
    for d in range(10):
        r, c = LIT_PIXEL[d]
        x[:, r, c] = 0
    for i, d in enumerate(digits):
        r, c = LIT_PIXEL[int(d)]
        x[i, r, c] = 255
        rival = (int(d) + 1 + i % 9) % 10
        rr, rc = LIT_PIXEL[rival]
        x[i, rr, rc] = 60 + 7 * i
    return x


def test_predict_proba_equals_model_predict_and_ignores_batching(pixel_model):
    rng = np.random.default_rng(0)
    digits = np.arange(23) % 10
    x = lit_images(digits, rng)  # uint8 (23, 28, 28)

    default = predict_proba(pixel_model, x)
    assert default.shape == (23, 10)
    assert default.dtype == np.float32
    np.testing.assert_array_equal(default.argmax(axis=1), digits)
    np.testing.assert_allclose(default.sum(axis=1), 1.0, rtol=1e-5)

    reference = pixel_model.predict(x[..., None].astype(np.float32) / 255.0, verbose=0)
    np.testing.assert_allclose(default, reference, rtol=1e-5, atol=1e-7)

    # 23 = 4 x 5 + 3 and 23 = 3 x 7 + 2: the short last batch must not be lost or repeated
    for batch_size in (1, 5, 7, 22, 23, 1000):
        np.testing.assert_allclose(
            predict_proba(pixel_model, x, batch_size=batch_size), default, rtol=1e-6, atol=1e-7
        )

    # the model's other input forms give the same answer
    unit = x.astype(np.float32) / 255.0
    np.testing.assert_allclose(predict_proba(pixel_model, unit), default, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        predict_proba(pixel_model, unit[..., None], batch_size=4), default, rtol=1e-6, atol=1e-7
    )


def test_predict_proba_probabilities_follow_the_lit_pixels(pixel_model):
    x = np.zeros((2, 28, 28), np.uint8)
    x[0][LIT_PIXEL[4]] = 255  # only digit 4 scores: e^12 / (e^12 + 9)
    x[1][LIT_PIXEL[2]] = 255
    x[1][LIT_PIXEL[8]] = 255  # 2 and 8 tie: each e^12 / (2 e^12 + 8)
    p = predict_proba(pixel_model, x)
    e = math.exp(12)
    assert p[0, 4] == pytest.approx(e / (e + 9), rel=1e-5)
    assert p[0, 0] == pytest.approx(1 / (e + 9), rel=1e-4)
    assert p[1, 2] == pytest.approx(e / (2 * e + 8), rel=1e-5)
    assert p[1, 8] == pytest.approx(p[1, 2], rel=1e-5)


def test_predict_proba_of_no_images(pixel_model):
    p = predict_proba(pixel_model, np.zeros((0, 28, 28), np.uint8))
    assert p.shape == (0, 10)
    assert p.dtype == np.float32


def test_evaluate_with_a_controlled_model(pixel_model):
    rng = np.random.default_rng(1)
    digits = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5])
    x = lit_images(digits, rng)
    labels = digits.copy()
    labels[[2, 7]] = [0, 8]  # two images the model must get wrong
    result = evaluate(pixel_model, x, labels.astype(np.uint8))  # uint8, like MNIST's

    assert result.labels.dtype == np.int64
    np.testing.assert_array_equal(result.labels, labels)
    np.testing.assert_array_equal(result.predictions, digits)
    np.testing.assert_allclose(result.probabilities, predict_proba(pixel_model, x))
    assert result.misclassified_count == 2
    assert result.accuracy == pytest.approx(9 / 11)
    assert set(result.misclassified_indices()) == {2, 7}
    assert result.confusion[0, 4] == 1
    assert result.confusion[8, 6] == 1
    expected_loss = -np.log(np.clip(result.probabilities[np.arange(11), labels], 1e-7, 1)).mean()
    assert result.loss == pytest.approx(float(expected_loss), rel=1e-6)


# --- the shipped model on the real test set -------------------------------------------


@pytest.mark.slow
def test_shipped_model_on_the_real_test_set(mnist):
    from mnist_demo.model import load_model

    _, (x_test, y_test) = mnist
    model = load_model(config.DEFAULT_MODEL_PATH)
    result = evaluate(model, x_test, y_test)

    assert result.n == 10000
    assert result.misclassified_count == 68
    assert result.accuracy == pytest.approx(0.9932, abs=1e-9)
    assert result.confusion.sum() == 10000
    assert np.trace(result.confusion) == 9932
    np.testing.assert_array_equal(result.confusion.sum(axis=1), np.bincount(y_test, minlength=10))
    assert len(result.misclassified_indices()) == 68

    # the loss Keras's model.evaluate reports (categorical cross-entropy, clipped at 1e-7)
    keras_loss = float(
        keras.losses.CategoricalCrossentropy()(np.eye(10)[y_test], result.probabilities)
    )
    assert keras_loss == pytest.approx(0.0201, abs=1e-4)
    assert result.loss == pytest.approx(keras_loss, abs=1e-4)
    # and what the training run recorded beside the model
    info = json.loads(config.DEFAULT_MODEL_INFO_PATH.read_text())
    assert result.loss == pytest.approx(info["test_loss"], abs=1e-4)
    assert result.summary()["misclassified"] == info["misclassified"]
