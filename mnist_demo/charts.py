"""Figures: Vega-Lite and Altair charts for the pages, HTML probability bars, and digit
pictures built with numpy/Pillow.

Charts are plain functions of data, so a test can check what a chart encodes without a
browser. Images are encoded once per grid (not one Matplotlib figure per digit).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image

from mnist_demo.data import to_byte_pixels

WRONG_COLOR = "#d6336c"
RIGHT_COLOR = "#2b8a3e"
TRAIN_COLOR = "#3b5bdb"
TEST_COLOR = "#f08c00"


# --- training curves --------------------------------------------------------------------
# Plain Vega-Lite, not Altair: every browser on the Train page redraws these once a
# second, and Streamlit converts an Altair chart under one process-wide lock, validating
# it against the schema. With 30 browsers watching, each poll queued behind that lock
# for 1.2 s, longer than the poll period (benchmarks/classroom_train.py). The tests
# still validate these specs against the schema, with Altair.


@dataclass(frozen=True)
class VegaLite:
    """A Vega-Lite spec and the data it draws, for `st.vega_lite_chart(data, spec)`."""

    data: pd.DataFrame
    spec: dict


def _legend_right() -> dict:
    return {"orient": "right", "title": None}


def batch_chart(points: Sequence[dict[str, float]]) -> VegaLite:
    """Per-batch loss and accuracy (running means over the epoch, as Keras reports them)
    against fractional epochs, so the x axis means the same in every run."""
    data = pd.DataFrame(points, columns=["epoch", "loss", "accuracy"])

    def line(metric: str, colour: str, orient: str, domain: list[float] | None) -> dict:
        # Each metric on its own axis, the axis title in the line's colour: on one axis
        # loss (0-2.5) flattened accuracy (0-1) into a line along the bottom.
        axis = {"title": metric, "titleColor": colour, "orient": orient, "titleFontSize": 14}
        scale = {"domain": domain} if domain else {"zero": True}
        return {
            "mark": {"type": "line", "strokeWidth": 2.5, "color": colour},
            "encoding": {
                "y": {"field": metric, "type": "quantitative", "axis": axis, "scale": scale},
                "tooltip": [
                    {"field": "epoch", "type": "quantitative", "format": ".2f"},
                    {"field": metric, "type": "quantitative", "format": ".4f"},
                ],
            },
        }

    spec = {
        "title": "Every batch: loss (left axis) and accuracy (right axis)",
        "height": 240,
        # One row per batch on the wire; each layer draws one column of it.
        "encoding": {
            "x": {
                "field": "epoch",
                "type": "quantitative",
                "scale": {"zero": True},
                "axis": {"title": "epoch", "titleFontSize": 14, "labelFontSize": 13},
            }
        },
        "layer": [
            line("loss", TEST_COLOR, "left", None),
            line("accuracy", TRAIN_COLOR, "right", [0, 1]),
        ],
        "resolve": {"scale": {"y": "independent"}},
        "config": {"axis": {"labelFontSize": 13}, "title": {"fontSize": 15}},
    }
    return VegaLite(data, spec)


def _series_chart(
    series: dict[str, list[float]],
    metric: str,
    series_field: str,
    title: str,
    colors: list[str] | None = None,
) -> VegaLite:
    """Per-epoch lines, one per named series (train/test, or one per run)."""
    rows = [
        {series_field: name, "epoch": i + 1, metric: v}
        for name, values in series.items()
        for i, v in enumerate(values)
    ]
    data = pd.DataFrame(rows, columns=[series_field, "epoch", metric])
    scale = {"domain": list(series), "range": colors} if colors else {}
    if max((len(v) for v in series.values()), default=0) == 1:
        return VegaLite(data, _one_epoch_spec(metric, series_field, title, scale))
    spec = {
        "title": title,
        "height": 250,
        "mark": {"type": "line", "point": {"size": 70}, "strokeWidth": 2.5},
        "encoding": {
            "x": {
                "field": "epoch",
                "type": "quantitative",
                "axis": {"tickMinStep": 1, "format": "d"},
            },
            "y": {"field": metric, "type": "quantitative", "scale": {"zero": False}},
            "color": {
                "field": series_field,
                "type": "nominal",
                "scale": scale,
                "legend": _legend_right(),
            },
            "tooltip": [
                {"field": series_field, "type": "nominal"},
                {"field": "epoch", "type": "quantitative"},
                {"field": metric, "type": "quantitative", "format": ".4f"},
            ],
        },
    }
    return VegaLite(data, spec)


def _one_epoch_spec(metric: str, series_field: str, title: str, scale: dict) -> dict:
    """One epoch has one value per series: a line of one point is a dot nobody sees, so
    each value is a labelled bar (the Quick demo's whole history)."""
    value_format = ".2%" if "accuracy" in metric else ".4f"
    encoding = {
        "x": {
            "field": series_field,
            "type": "nominal",
            "sort": None,
            "axis": {"labelAngle": 0, "title": "after epoch 1", "labelFontSize": 13},
        },
        "y": {"field": metric, "type": "quantitative", "scale": {"zero": True}},
    }
    return {
        "title": title,
        "height": 250,
        "encoding": encoding,
        "layer": [
            {
                "mark": {"type": "bar", "width": {"band": 0.6}},
                "encoding": {
                    "color": {
                        "field": series_field,
                        "type": "nominal",
                        "scale": scale,
                        "legend": None,  # the x axis names each bar
                    }
                },
            },
            {
                "mark": {"type": "text", "dy": -8, "fontSize": 15, "fontWeight": "bold"},
                "encoding": {
                    "text": {"field": metric, "type": "quantitative", "format": value_format}
                },
            },
        ],
    }


def epoch_chart(history: dict[str, list[float]], metric: str) -> VegaLite:
    """The lab's "Model - Accuracy" / "Model - Loss" plot: train vs test per epoch."""
    series = {"train": history.get(metric, []), "test": history.get(f"val_{metric}", [])}
    return _series_chart(
        series, metric, "set", f"Model - {metric.capitalize()}", [TRAIN_COLOR, TEST_COLOR]
    )


def runs_overlay_chart(histories: dict[str, dict[str, list[float]]], metric: str) -> VegaLite:
    """Several runs' per-epoch curves on one chart, one colour per run."""
    series = {name: history.get(metric, []) for name, history in histories.items()}
    return _series_chart(series, metric, "run", metric.replace("_", " "))


# --- predictions ------------------------------------------------------------------------


def probability_bars(probabilities: Sequence[float]) -> str:
    """The ten probabilities as HTML bars for `st.html`, the predicted digit in colour.

    Plain HTML rather than a Vega chart: it is redrawn on every stroke by every student
    in the class, and a Vega chart costs the server ~10 ms (Altair) and each browser its
    ~20 lazily loaded chart modules (benchmarks/classroom.py).
    """
    probs = np.asarray(probabilities, dtype=float)
    if probs.shape != (10,):
        raise ValueError(f"expected ten probabilities, got shape {probs.shape}")
    top = int(probs.argmax())
    rows = []
    for digit, p in enumerate(probs):
        width = f"{100 * min(max(p, 0.0), 1.0):.1f}%"
        colour, weight = (TRAIN_COLOR, 700) if digit == top else ("#adb5bd", 400)
        rows.append(
            f'<div role="listitem" class="digit-lab-bar" data-digit="{digit}" '
            f'data-top="{str(digit == top).lower()}" '
            f'style="display:flex;align-items:center;gap:0.5rem;height:1.25rem;font-weight:{weight}">'
            f'<span style="width:1ch">{digit}</span>'
            f'<span style="flex:1;height:0.8rem;background:#f1f3f9;border-radius:2px">'
            f'<span style="display:block;height:100%;width:{width};background:{colour};'
            f'border-radius:2px"></span></span>'
            f'<span style="width:4.5em;text-align:right;font-variant-numeric:tabular-nums">'
            f"{p:.1%}</span></div>"
        )
    return (
        '<div role="list" aria-label="Probability of each digit" '
        'style="font-size:0.875rem;line-height:1.25rem">' + "".join(rows) + "</div>"
    )


EMPTY_CELL = "#f1f3f5"  # a pair nobody was read as: neither right nor wrong
RIGHT_SHADES = ("#d3f9d8", "#2b8a3e")  # light -> dark green: right answers (diagonal)
WRONG_SHADES = ("#ffe3e3", "#c92a2a")  # light -> dark red: mistakes (off the diagonal)


def _shade(light: str, dark: str, share: float) -> str:
    """A colour between `light` (share 0) and `dark` (share 1), as #rrggbb."""
    a = np.array([int(light[i : i + 2], 16) for i in (1, 3, 5)], float)
    b = np.array([int(dark[i : i + 2], 16) for i in (1, 3, 5)], float)
    r, g, bl = np.round(a + (b - a) * min(max(share, 0.0), 1.0)).astype(int)
    return f"#{r:02x}{g:02x}{bl:02x}"


def confusion_cell_colours(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's fill and text colour. Right answers (the diagonal) are green, shaded
    against the largest right count; mistakes red, shaded against the largest mistake,
    so one mistake among thousands of right answers still shows; an empty cell is grey.
    Two scales, not one: the diagonal would drown a single one, and a set with no
    mistakes must not read as a wall of red."""
    m = np.asarray(confusion)
    right_max = max(int(np.diag(m).max(initial=0)), 1)
    wrong = m - np.diag(np.diag(m))
    wrong_max = max(int(wrong.max(initial=0)), 1)
    fill = np.empty(m.shape, dtype=object)
    text = np.empty(m.shape, dtype=object)
    for (t, p), n in np.ndenumerate(m):
        colour: str
        if n == 0:
            colour = EMPTY_CELL
        elif t == p:
            colour = _shade(*RIGHT_SHADES, 0.25 + 0.75 * n / right_max)
        else:
            colour = _shade(*WRONG_SHADES, 0.25 + 0.75 * n / wrong_max)
        fill[t, p], text[t, p] = colour, _readable_on(colour)
    return fill, text


def _luminance(colour: str) -> float:
    """WCAG relative luminance of #rrggbb."""
    c = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])


def _readable_on(fill: str, dark: str = "#212529", light: str = "#ffffff") -> str:
    """Dark or white text, whichever contrasts more with `fill`."""
    f = _luminance(fill)
    on_dark = (_luminance(light) + 0.05) / (f + 0.05)
    on_light = (f + 0.05) / (_luminance(dark) + 0.05)
    return light if on_dark > on_light else dark


def confusion_chart(confusion: np.ndarray, selection_name: str = "cell") -> alt.LayerChart:
    """A heatmap of counts, true digit down, predicted across: right answers (the
    diagonal) in greens, mistakes in reds (`confusion_cell_colours`). Clicking a cell
    selects that (true, predicted) pair."""
    fill, text_colour = confusion_cell_colours(confusion)
    rows = [
        {
            "true": t,
            "predicted": p,
            "count": int(confusion[t, p]),
            "error": t != p,
            "fill": fill[t, p],
            "ink": text_colour[t, p],
        }
        for t in range(10)
        for p in range(10)
    ]
    df = pd.DataFrame(rows)
    pick = alt.selection_point(name=selection_name, fields=["true", "predicted"], on="click")
    base = alt.Chart(df).encode(
        x=alt.X("predicted:O", title="predicted", axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("true:O", title="true"),
    )
    cells = base.mark_rect(stroke="#ffffff", strokeWidth=1, cursor="pointer").encode(
        color=alt.Color("fill:N", scale=None, legend=None),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35)),
        tooltip=["true", "predicted", "count"],
    )
    text = base.mark_text(fontSize=11).encode(  # four digits fit a cell
        text="count:Q", color=alt.Color("ink:N", scale=None, legend=None)
    )
    return (cells.add_params(pick) + text).properties(
        width=380, height=380, usermeta={"embedOptions": {"actions": False}}
    )


# --- digit pictures ---------------------------------------------------------------------


def upscale(image28: np.ndarray, scale: int = 8) -> np.ndarray:
    """Nearest-neighbour enlargement so each MNIST pixel shows as a visible square."""
    a = to_byte_pixels(image28)  # uint8, or floats in [0, 1]: grey (28, 28) or colour
    return a.repeat(scale, axis=0).repeat(scale, axis=1)


def png_data_uri(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def lab_grid(images: np.ndarray, scale: int = 6) -> np.ndarray:
    """The lab's first script: the first four training images in a 2x2 grid."""
    tiles = [upscale(img, scale) for img in images[:4]]
    gap = np.full((28 * scale, 4), 255, np.uint8)
    rows = [np.hstack([tiles[0], gap, tiles[1]]), np.hstack([tiles[2], gap, tiles[3]])]
    hgap = np.full((4, rows[0].shape[1]), 255, np.uint8)
    return np.vstack([rows[0], hgap, rows[1]])


def digit_gallery_chart(
    images: np.ndarray,
    indices: Sequence[int] | np.ndarray,
    captions: Sequence[str],
    wrong: Sequence[bool] | np.ndarray,
    columns: int = 10,
    selection_name: str = "digit",
    noun: str = "test image",
) -> alt.LayerChart:
    """A clickable grid of digits: one Altair chart with an image mark per digit (small
    PNG data URIs, encoded here once per page) and a caption under each. Wrong answers
    get a coloured frame and caption. Clicking a digit selects its `index`."""
    n = len(indices)
    df = pd.DataFrame(
        {
            "index": [int(i) for i in indices],
            "col": [k % columns for k in range(n)],
            "row": [k // columns for k in range(n)],
            "url": [png_data_uri(upscale(img, 2)) for img in images],
            "caption": list(captions),
            "wrong": [bool(w) for w in wrong],
        }
    )
    # Captions at 13 px bold (10 px was unreadable on a projector) need a wider tile.
    cell = 92
    x = alt.X("col:O", axis=None, scale=alt.Scale(paddingInner=0.08))
    pick = alt.selection_point(name=selection_name, fields=["index"], on="click")
    y = alt.Y("row:O", axis=None, scale=alt.Scale(paddingInner=0.08))
    base = alt.Chart(df).encode(x=x, y=y)
    frame = base.mark_rect(cornerRadius=3, cursor="pointer").encode(
        color=alt.condition(alt.datum.wrong, alt.value(WRONG_COLOR), alt.value("#212529")),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.7)),
        # the number only: the caption is already written on the tile
        tooltip=[alt.Tooltip("index:Q", title=noun)],
    )
    pictures = base.mark_image(width=56, height=56, yOffset=-10, cursor="pointer").encode(
        url="url:N"
    )
    text = base.mark_text(yOffset=33, fontSize=13, fontWeight="bold").encode(
        text="caption:N", color=alt.value("#ffffff")
    )
    return (
        (frame.add_params(pick) + pictures + text)
        .properties(
            width=alt.Step(cell),
            height=alt.Step(cell + 4),
            # no "..." menu (save as SVG, view source) over the grid: a projector needs none
            usermeta={"embedOptions": {"actions": False}},
        )
        .configure_view(strokeWidth=0)
    )


def saliency_overlay(image28: np.ndarray, heat: np.ndarray, scale: int = 8) -> np.ndarray:
    """The digit in grey with the saliency in red on top: where the answer came from."""
    grey = np.clip(np.asarray(image28, dtype=np.float32), 0, 1) * 0.55
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
    rgb = np.stack([np.maximum(grey, heat), grey * (1 - heat), grey * (1 - heat)], axis=-1)
    return upscale(rgb, scale)


def wall_tiles(
    images: Sequence[np.ndarray],
    captions: Sequence[str],
    wrong: Sequence[bool],
    ids: Sequence[int],
    scale: int = 3,
    *,
    noun: str = "drawing",
    label: str = "The class's newest drawings",
) -> str:
    """Digits as tiles (the 28x28 the model saw, a caption such as "7 → 1", the item's
    number, a red frame when it was read wrong) as HTML for `st.html`: the class wall,
    and Home's preview of mistakes (`noun` "test image"). Plain HTML, not a chart: the
    projector polls the wall every second, and the captions are text a reader can copy."""
    attribute = f"data-{noun.replace(' ', '-')}-id"
    tiles = []
    for image, caption, is_wrong, item_id in zip(images, captions, wrong, ids, strict=True):
        colour = WRONG_COLOR if is_wrong else "#343a40"
        tiles.append(  # a list's items must be listitems (a figure cannot be one itself)
            '<div role="listitem">'
            f'<figure class="digit-lab-tile" {attribute}="{int(item_id)}" '
            f'data-correct="{str(not is_wrong).lower()}" style="margin:0;padding:4px;'
            f'background:{colour};border-radius:6px;text-align:center;width:{28 * scale + 8}px">'
            f'<img src="{png_data_uri(upscale(image, scale))}" alt="{noun} {int(item_id)}" '
            f'width="{28 * scale}" height="{28 * scale}" style="display:block;'
            'image-rendering:pixelated">'
            f'<figcaption style="color:#fff;font:600 0.85rem/1.3 sans-serif">{caption}'
            f'<span style="opacity:0.6;font-weight:400"> #{int(item_id)}</span>'
            "</figcaption></figure></div>"
        )
    return (
        f'<div role="list" aria-label="{html.escape(label)}" '
        'style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(tiles) + "</div>"
    )
