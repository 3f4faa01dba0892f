"""Charts: what each figure encodes, read from the Vega-Lite spec (`to_dict()`) or the
pixels, so a wrong field, a lost row or a shifted tile fails without a browser."""

from __future__ import annotations

import base64
import io
import json
import re

import altair as alt
import numpy as np
import pytest
from PIL import Image

from mnist_demo import charts

# --- helpers --------------------------------------------------------------------------


def spec(chart) -> dict:
    return chart.spec if isinstance(chart, charts.VegaLite) else chart.to_dict()


def rows_of(chart) -> list[dict]:
    """The one dataset of a chart, as records."""
    if isinstance(chart, charts.VegaLite):
        return chart.data.to_dict("records")
    d = spec(chart)
    datasets = d.get("datasets", {})
    assert len(datasets) == 1, f"expected one dataset, got {list(datasets)}"
    name = next(iter(datasets))
    assert d["data"] == {"name": name}
    return datasets[name]


def params_of(chart) -> dict[str, dict]:
    """Selection parameters by name, wherever Altair put them (top level or in a layer)."""
    found: dict[str, dict] = {}

    def walk(node):
        if isinstance(node, dict):
            for p in node.get("params", []):
                found[p["name"]] = p
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec(chart))
    return found


def layers_of(chart) -> list[dict]:
    return spec(chart)["layer"]


def layer_with_mark(chart, mark: str) -> dict:
    matches = [layer for layer in layers_of(chart) if layer["mark"]["type"] == mark]
    assert len(matches) == 1, mark
    return matches[0]


def decode_png(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    raw = base64.b64decode(uri[len(prefix) :], validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(raw)))


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Five distinct uint8 28x28 'digits': random noise, each with its own pattern."""
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


# --- training curves ------------------------------------------------------------------


def valid_vega_lite(chart: charts.VegaLite) -> None:
    """The live charts skip Altair at run time; here Altair checks them against the
    Vega-Lite schema (raises on an unknown property or a wrong type)."""
    values = json.loads(chart.data.to_json(orient="records"))
    alt.Chart.from_dict({**chart.spec, "data": {"values": values}}, validate=True)


def test_batch_chart_sends_one_row_per_batch_and_draws_each_metric_on_its_own_axis():
    points = [
        {"epoch": 0.25, "loss": 2.0, "accuracy": 0.3},
        {"epoch": 0.5, "loss": 1.5, "accuracy": 0.5, "batch": 7},  # extra keys are ignored
        {"epoch": 0.75, "loss": 1.0, "accuracy": 0.7},
    ]
    chart = charts.batch_chart(points)
    assert rows_of(chart) == [
        {"epoch": 0.25, "loss": 2.0, "accuracy": 0.3},
        {"epoch": 0.5, "loss": 1.5, "accuracy": 0.5},
        {"epoch": 0.75, "loss": 1.0, "accuracy": 0.7},
    ]
    d = spec(chart)
    assert d["encoding"]["x"]["field"] == "epoch"
    # loss (0-2.5) and accuracy (0-1) each on its own y axis, one left, one right:
    # on one shared axis accuracy was a flat line along the bottom
    assert d["resolve"] == {"scale": {"y": "independent"}}
    ys = {layer["encoding"]["y"]["field"]: layer["encoding"]["y"] for layer in d["layer"]}
    assert set(ys) == {"loss", "accuracy"}
    assert ys["loss"]["axis"]["orient"] == "left" and ys["accuracy"]["axis"]["orient"] == "right"
    assert ys["accuracy"]["scale"]["domain"] == [0, 1]
    assert d["title"].startswith("Every batch")
    valid_vega_lite(chart)


def test_batch_chart_with_no_points_is_empty_not_an_error():
    chart = charts.batch_chart([])
    assert spec(chart)["encoding"]["x"]["field"] == "epoch"
    assert rows_of(chart) == []
    valid_vega_lite(chart)


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_epoch_chart_has_train_and_test_series(metric):
    history = {
        "loss": [0.5, 0.3, 0.2, 0.1],
        "val_loss": [0.6, 0.4, 0.35, 0.3],
        "accuracy": [0.8, 0.9, 0.95, 0.97],
        "val_accuracy": [0.75, 0.85, 0.9, 0.92],
    }
    chart = charts.epoch_chart(history, metric)
    rows = rows_of(chart)
    train = [(r["epoch"], r[metric]) for r in rows if r["set"] == "train"]
    test = [(r["epoch"], r[metric]) for r in rows if r["set"] == "test"]
    assert train == list(zip([1, 2, 3, 4], history[metric], strict=True))
    assert test == list(zip([1, 2, 3, 4], history[f"val_{metric}"], strict=True))
    assert len(rows) == 8
    d = spec(chart)
    assert d["encoding"]["y"]["field"] == metric
    assert d["encoding"]["x"]["field"] == "epoch"
    assert d["encoding"]["color"]["field"] == "set"
    assert d["title"] == f"Model - {metric.capitalize()}"
    assert d["encoding"]["color"]["scale"]["domain"] == ["train", "test"]
    valid_vega_lite(chart)


def test_epoch_chart_of_one_epoch_draws_labelled_bars_not_a_lone_dot():
    history = {"accuracy": [0.93], "val_accuracy": [0.991]}
    chart = charts.epoch_chart(history, "accuracy")
    assert [(r["set"], r["accuracy"]) for r in rows_of(chart)] == [
        ("train", 0.93),
        ("test", 0.991),
    ]
    d = spec(chart)
    assert d["title"] == "Model - Accuracy"
    marks = {layer["mark"]["type"]: layer for layer in d["layer"]}
    assert set(marks) == {"bar", "text"}
    assert marks["text"]["encoding"]["text"] == {
        "field": "accuracy",
        "type": "quantitative",
        "format": ".2%",
    }
    valid_vega_lite(chart)


def test_epoch_chart_without_test_history_has_only_train():
    chart = charts.epoch_chart({"loss": [0.9, 0.5]}, "loss")
    rows = rows_of(chart)
    assert [(r["set"], r["epoch"], r["loss"]) for r in rows] == [
        ("train", 1, 0.9),
        ("train", 2, 0.5),
    ]


def test_runs_overlay_chart_one_series_per_run():
    histories = {"run A": {"val_accuracy": [0.9, 0.95]}, "run B": {"val_accuracy": [0.8]}}
    chart = charts.runs_overlay_chart(histories, "val_accuracy")
    rows = rows_of(chart)
    assert [(r["run"], r["epoch"], r["val_accuracy"]) for r in rows] == [
        ("run A", 1, 0.9),
        ("run A", 2, 0.95),
        ("run B", 1, 0.8),
    ]
    assert spec(chart)["encoding"]["color"]["field"] == "run"
    valid_vega_lite(chart)


# --- predictions ----------------------------------------------------------------------


BAR = re.compile(
    r'data-digit="(\d)" data-top="(true|false)".*?width:([\d.]+)%;.*?>([\d.]+)%</span></div>'
)


def bars_of(html: str) -> list[tuple[int, bool, float, float]]:
    """(digit, is top, bar width %, printed %) for each bar."""
    return [(int(d), top == "true", float(w), float(p)) for d, top, w, p in BAR.findall(html)]


def test_probability_bars_one_per_digit_sized_by_probability():
    p = np.array([0.01, 0.02, 0.05, 0.6, 0.02, 0.1, 0.05, 0.1, 0.03, 0.02], np.float32)
    bars = bars_of(charts.probability_bars(p))
    assert [b[0] for b in bars] == list(range(10))
    assert [b[2] for b in bars] == pytest.approx(100 * p, abs=0.05)
    assert [b[3] for b in bars] == pytest.approx(100 * p, abs=0.05)
    assert [b[1] for b in bars] == [d == 3 for d in range(10)]


def test_probability_bars_top_moves_with_the_argmax_and_stands_out():
    p = np.full(10, 0.05)
    p[9] = 0.55
    html = charts.probability_bars(list(p))
    assert [b[0] for b in bars_of(html) if b[1]] == [9]
    rows = html.split('role="listitem"')[1:]
    assert charts.TRAIN_COLOR in rows[9] and charts.TRAIN_COLOR not in "".join(rows[:9])


def test_probability_bars_refuse_anything_but_ten_values():
    with pytest.raises(ValueError, match="ten probabilities"):
        charts.probability_bars(np.full(9, 0.1))


def test_confusion_chart_cells_counts_and_shade():
    rng = np.random.default_rng(5)
    confusion = rng.integers(0, 50, size=(10, 10))
    confusion[np.diag_indices(10)] = rng.integers(900, 1100, size=10)
    chart = charts.confusion_chart(confusion)
    rows = rows_of(chart)
    assert len(rows) == 100
    assert {(r["true"], r["predicted"]) for r in rows} == {
        (t, p) for t in range(10) for p in range(10)
    }
    for r in rows:
        t, p = r["true"], r["predicted"]
        assert r["count"] == confusion[t, p], (t, p)
        assert r["error"] == (t != p)
        assert hue(r["fill"]) == ("green" if t == p else "red" if r["count"] else "grey"), r
    assert sum(r["count"] for r in rows) == confusion.sum()

    rect = layer_with_mark(chart, "rect")
    assert rect["encoding"]["x"]["field"] == "predicted"
    assert rect["encoding"]["y"]["field"] == "true"
    assert rect["encoding"]["color"] == {
        "field": "fill",
        "type": "nominal",
        "scale": None,
        "legend": None,
    }
    text = layer_with_mark(chart, "text")
    assert text["encoding"]["text"]["field"] == "count"
    assert text["encoding"]["color"]["field"] == "ink"


def hue(colour: str) -> str:
    """'green', 'red' or 'grey': which channel dominates a #rrggbb colour."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    if max(r, g, b) - min(r, g, b) < 16:
        return "grey"
    return "green" if g > r else "red" if r > g else "blue"


def contrast(a: str, b: str) -> float:
    la, lb = sorted([charts._luminance(a), charts._luminance(b)], reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_confusion_chart_of_a_set_with_no_mistakes_is_green_on_the_diagonal_not_red():
    # the class's drawings with one right answer: the 1 on the diagonal is a right answer
    confusion = np.zeros((10, 10), int)
    confusion[4, 4] = 1
    rows = rows_of(charts.confusion_chart(confusion))
    fills = {(r["true"], r["predicted"]): r["fill"] for r in rows}
    assert hue(fills[4, 4]) == "green"
    assert all(hue(fills[t, p]) == "grey" for t, p in fills if (t, p) != (4, 4))
    # and a perfect model's matrix: every right answer green, nothing red
    rows = rows_of(charts.confusion_chart(np.eye(10, dtype=int) * 1000))
    assert {hue(r["fill"]) for r in rows if not r["error"]} == {"green"}
    assert {hue(r["fill"]) for r in rows if r["error"]} == {"grey"}


def test_confusion_chart_one_mistake_among_thousands_is_red_and_every_count_is_legible():
    confusion = np.eye(10, dtype=int) * 980
    confusion[7, 1] = 1
    rows = rows_of(charts.confusion_chart(confusion))
    (mistake,) = [r for r in rows if r["error"] and r["count"]]
    assert hue(mistake["fill"]) == "red"
    for r in rows:  # the count printed in the cell stays readable on its colour
        assert contrast(r["fill"], r["ink"]) >= 3.0, r


def grid_position(encoding: dict, row: dict, rows: list[dict]) -> tuple[int, int]:
    """(column, row) of a datum in an ordinal x/y grid, counted from the left and from
    the top: Vega-Lite lays a discrete domain out in ascending order, left to right and
    top to bottom, unless the encoding sorts it descending or reverses the scale."""
    place = []
    for channel in ("x", "y"):
        enc = encoding[channel]
        assert enc["type"] == "ordinal", (channel, enc)
        assert enc.get("sort") in (None, "ascending", "descending"), enc["sort"]
        domain = sorted({r[enc["field"]] for r in rows})
        if enc.get("sort") == "descending" or enc.get("scale", {}).get("reverse"):
            domain.reverse()
        place.append(domain.index(row[enc["field"]]))
    return place[0], place[1]


def test_confusion_chart_is_oriented_true_down_predicted_across():
    confusion = np.zeros((10, 10), int)
    confusion[7, 1] = 9  # true 7 read as 1
    chart = charts.confusion_chart(confusion)
    rows = rows_of(chart)
    (lit,) = [r for r in rows if r["count"]]
    top = spec(chart).get("encoding", {})
    for mark in ("rect", "text"):
        enc = {**top, **layer_with_mark(chart, mark)["encoding"]}
        assert enc["x"]["field"] == "predicted" and enc["x"]["title"] == "predicted", mark
        assert enc["y"]["field"] == "true" and enc["y"]["title"] == "true", mark
        # every cell lands at (column = predicted, row = true), counted from the top left
        for r in rows:
            assert grid_position(enc, r, rows) == (r["predicted"], r["true"]), (mark, r)
        # the one mistake: 8th row down, 2nd column across, and it is coloured
        assert grid_position(enc, lit, rows) == (1, 7), mark
    assert lit["count"] == 9 and lit["error"] and hue(lit["fill"]) == "red"
    assert layer_with_mark(chart, "rect")["encoding"]["color"]["field"] == "fill"
    assert layer_with_mark(chart, "text")["encoding"]["text"]["field"] == "count"


def test_confusion_chart_selection_is_named_cell_over_the_pair():
    params = params_of(charts.confusion_chart(np.eye(10, dtype=int)))
    assert set(params) == {"cell"}
    assert params["cell"]["select"]["type"] == "point"
    assert sorted(params["cell"]["select"]["fields"]) == ["predicted", "true"]
    assert set(params_of(charts.confusion_chart(np.eye(10, dtype=int), selection_name="pair"))) == {
        "pair"
    }


# --- digit pictures -------------------------------------------------------------------


def test_upscale_nearest_neighbour_blocks(digits):
    img = digits[0]
    big = charts.upscale(img, 3)
    assert big.shape == (84, 84)
    assert big.dtype == np.uint8
    for r, c in [(0, 0), (5, 17), (27, 27), (13, 0)]:
        block = big[3 * r : 3 * r + 3, 3 * c : 3 * c + 3]
        assert (block == img[r, c]).all(), (r, c)
    np.testing.assert_array_equal(big[::3, ::3], img)
    assert charts.upscale(img).shape == (224, 224)  # default scale 8
    np.testing.assert_array_equal(charts.upscale(img, 1), img)


def test_upscale_float_unit_range_becomes_uint8():
    img = np.zeros((28, 28), np.float32)
    img[0, 0] = 1.0
    img[0, 1] = 0.5
    img[0, 2] = 0.2
    img[0, 3] = 1.7  # out of range: clipped
    img[0, 4] = -0.3
    big = charts.upscale(img, 2)
    assert big.dtype == np.uint8
    assert big.shape == (56, 56)
    assert big[0, 0] == 255
    assert big[1, 1] == 255
    assert big[0, 2] == 128  # 127.5 rounds to 128
    assert big[0, 4] == 51
    assert big[0, 6] == 255
    assert big[0, 8] == 0
    assert big[10, 10] == 0


def test_upscale_colour_image():
    rgb = np.zeros((28, 28, 3), np.float32)
    rgb[2, 3] = [1.0, 0.0, 0.5]
    big = charts.upscale(rgb, 4)
    assert big.shape == (112, 112, 3)
    assert big.dtype == np.uint8
    assert (big[8:12, 12:16] == [255, 0, 128]).all()
    assert (big[:8] == 0).all()


def test_png_data_uri_round_trips(digits):
    grey = digits[1]
    np.testing.assert_array_equal(decode_png(charts.png_data_uri(grey)), grey)
    rgb = np.stack([digits[2], digits[3], digits[4]], axis=-1)
    np.testing.assert_array_equal(decode_png(charts.png_data_uri(rgb)), rgb)
    # a different picture gives a different URI
    assert charts.png_data_uri(digits[1]) != charts.png_data_uri(digits[2])


def test_lab_grid_quadrants_are_the_first_four_images(digits):
    grid = charts.lab_grid(digits, scale=6)
    tile, gap = 28 * 6, 4
    assert grid.shape == (2 * tile + gap, 2 * tile + gap)
    assert grid.dtype == np.uint8
    quadrants = [
        grid[:tile, :tile],
        grid[:tile, tile + gap :],
        grid[tile + gap :, :tile],
        grid[tile + gap :, tile + gap :],
    ]
    for k, q in enumerate(quadrants):
        np.testing.assert_array_equal(q, charts.upscale(digits[k], 6), err_msg=f"quadrant {k}")
    # the gaps are white
    assert (grid[tile : tile + gap, :] == 255).all()
    assert (grid[:, tile : tile + gap] == 255).all()


def test_lab_grid_default_scale(digits):
    grid = charts.lab_grid(digits[:4])
    assert grid.shape == (2 * 28 * 6 + 4, 2 * 28 * 6 + 4)


def test_saliency_overlay_shape_and_colours():
    image = np.zeros((28, 28), np.float32)
    image[10, 10] = 1.0  # ink, no heat: grey
    image[12, 12] = 1.0  # ink and full heat: red
    heat = np.zeros((28, 28), np.float32)
    heat[12, 12] = 1.0
    heat[20, 20] = 1.0  # heat on the background: red too
    heat[5, 5] = 0.5
    out = charts.saliency_overlay(image, heat, scale=4)
    assert out.shape == (112, 112, 3)
    assert out.dtype == np.uint8

    def px(r, c):
        return out[4 * r + 1, 4 * c + 2].tolist()

    assert px(12, 12) == [255, 0, 0]
    assert px(20, 20) == [255, 0, 0]
    r, g, b = px(5, 5)
    assert r > g and r > b  # half heat is still red-dominant
    grey = round(0.55 * 255)
    assert px(10, 10) == [grey, grey, grey]
    assert px(0, 0) == [0, 0, 0]
    assert charts.saliency_overlay(image, heat).shape == (224, 224, 3)  # default scale 8


def test_saliency_overlay_red_where_heat_is_one_for_any_image(digits):
    rng = np.random.default_rng(9)
    image = rng.random((28, 28)).astype(np.float32)
    heat = np.zeros((28, 28), np.float32)
    heat[3, 7] = 1.0
    out = charts.saliency_overlay(image, heat, scale=2).astype(int)
    block = out[6:8, 14:16]
    assert (block[..., 0] == 255).all()
    assert (block[..., 1:] == 0).all()
    # elsewhere no heat: grey (the three channels agree)
    rest = out[::2, ::2].reshape(-1, 3)
    mask = np.ones(28 * 28, bool)
    mask[3 * 28 + 7] = False
    assert (rest[mask, 0] == rest[mask, 1]).all()
    assert (rest[mask, 1] == rest[mask, 2]).all()


# --- the clickable gallery ------------------------------------------------------------


def test_digit_gallery_chart_rows_cols_captions_wrong_and_pictures(digits):
    indices = np.array([5, 17, 3, 42, 8])  # numpy ints, as the pages pass them
    captions = ["5 → 5 · 99%", "1 → 7 · 80%", "3 → 3 · 97%", "4 → 9 · 51%", "8 → 8 · 100%"]
    wrong = ~np.array([True, False, True, False, True])
    chart = charts.digit_gallery_chart(digits, indices, captions, wrong, columns=3)
    rows = rows_of(chart)
    assert [r["index"] for r in rows] == [5, 17, 3, 42, 8]
    assert [r["col"] for r in rows] == [0, 1, 2, 0, 1]
    assert [r["row"] for r in rows] == [0, 0, 0, 1, 1]
    assert [r["caption"] for r in rows] == captions
    assert [r["wrong"] for r in rows] == [False, True, False, True, False]
    for k, r in enumerate(rows):
        picture = decode_png(r["url"])
        assert picture.shape == (56, 56), k
        np.testing.assert_array_equal(picture, charts.upscale(digits[k], 2), err_msg=str(k))

    params = params_of(chart)
    assert set(params) == {"digit"}
    assert params["digit"]["select"]["fields"] == ["index"]
    marks = {layer["mark"]["type"] for layer in layers_of(chart)}
    assert marks == {"rect", "image", "text"}
    assert layer_with_mark(chart, "image")["encoding"]["url"]["field"] == "url"
    assert layer_with_mark(chart, "text")["encoding"]["text"]["field"] == "caption"
    # readable on a projector, with no menu and no raw field names over the grid
    assert layer_with_mark(chart, "text")["mark"]["fontSize"] >= 13
    assert spec(chart)["usermeta"] == {"embedOptions": {"actions": False}}
    tooltip = layer_with_mark(chart, "rect")["encoding"]["tooltip"]
    assert [t["field"] for t in tooltip] == ["index"]


def test_digit_gallery_chart_default_ten_columns_and_selection_name(digits):
    images = np.concatenate([digits, digits, digits])[:12]
    chart = charts.digit_gallery_chart(
        images, range(12), [str(i) for i in range(12)], [False] * 12, selection_name="pick"
    )
    rows = rows_of(chart)
    assert [(r["row"], r["col"]) for r in rows] == [(k // 10, k % 10) for k in range(12)]
    assert set(params_of(chart)) == {"pick"}
