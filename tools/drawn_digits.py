"""A drawn-digit test set: real MNIST handwriting re-drawn as canvas drawings.

To know whether `preprocess.to_mnist` really turns what people draw into what the model
expects, we need drawings with known labels. Real handwriting is the hard part, so we
borrow it: each MNIST test digit is thinned to its pen path (skeleton) and stroked
again with a round brush on a 280x280 RGBA canvas, as streamlit-drawable-canvas returns
it, with what varies between people: brush width (8-40 px), digit size and place (a
small digit in a corner, or one filling the canvas) and colours (dark on light, light on
dark, coloured pens, a transparent background with strokes only in alpha).

Comparing the model on the drawing with the model on the original digit then measures
the preprocessing alone; `naive_resize` (squash the whole canvas to 28x28) is the
baseline that shows why the MNIST steps matter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import keras
import numpy as np
from PIL import Image, ImageDraw

from mnist_demo.data import load_mnist
from mnist_demo.evaluation import predict_proba
from mnist_demo.preprocess import BlankImageError, ink_map, squash_to_28, to_mnist

CANVAS = 280
SUPERSAMPLE = 2  # brush disks are drawn at 2x and averaged down: anti-aliased edges
UPSAMPLE = 4  # the 28x28 digit is thinned at 112x112, where its pen path is smooth
BRUSH_MIN, BRUSH_MAX = 8.0, 40.0  # brush diameter in canvas pixels
MIN_DIGIT_PER_BRUSH = 4.5  # a digit at least 4.5 brush widths tall stays legible
MIN_DIGIT, MAX_DIGIT = 70, 270  # painted digit's longest side, canvas pixels
CORE_DEPTH = 1.75  # 28x28 pixels: deeper inside than this is a filled blob, not a stroke
MIN_COLOUR_DISTANCE = 0.45  # stroke and background must differ this much (RGB in 0..1)
CENTRED_SIZE = (170, 240)  # canvas pixels: about MNIST's 20 of 28
CENTRED_OFFSET = 30  # canvas pixels from the centre

# name -> probability; every scheme a student could pick in the Draw page
SCHEMES = {
    "black on white": 0.30,
    "white on black": 0.15,
    "colour on white": 0.15,
    "colour on colour": 0.10,
    "black on transparent": 0.15,
    "colour on transparent": 0.15,
}


# --- the pen path ----------------------------------------------------------------------


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel-wide centre line of a binary shape.

    Each pass peels boundary pixels whose removal keeps the shape connected (exactly
    one 0->1 transition around them) and is not the end of a line (2-6 neighbours).
    """
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for first in (True, False):
            p = img  # padded with zeros, so np.roll wraps only zeros around
            n = [
                np.roll(p, 1, 0),  # p2 north
                np.roll(np.roll(p, 1, 0), -1, 1),  # p3 north-east
                np.roll(p, -1, 1),  # p4 east
                np.roll(np.roll(p, -1, 0), -1, 1),  # p5 south-east
                np.roll(p, -1, 0),  # p6 south
                np.roll(np.roll(p, -1, 0), 1, 1),  # p7 south-west
                np.roll(p, 1, 1),  # p8 west
                np.roll(np.roll(p, 1, 0), 1, 1),  # p9 north-west
            ]
            neighbours = sum(n)
            transitions = sum(
                ((n[i] == 0) & (n[(i + 1) % 8] == 1)).astype(np.uint8) for i in range(8)
            )
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if first:
                side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (p == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary erosion by `steps` pixels (3x3 crosses and squares alternating)."""
    out = mask
    for i in range(steps):
        p = np.pad(out, 1)
        out = out & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        if i % 2 == 1:
            out = out & p[:-2, :-2] & p[:-2, 2:] & p[2:, :-2] & p[2:, 2:]
    return out


def pen_path(digit: np.ndarray) -> np.ndarray:
    """(K, 2) float (row, col) points a brush follows to re-draw the digit, in 28x28
    pixel units: its centre line, plus the inside of blobs.

    A thinned shape keeps its loops but not its filled areas: an 8 whose small loop
    the pen filled in would come back as a 9. So the parts much thicker than a stroke
    (what survives eroding by CORE_DEPTH) are dabbed too, every other pixel.
    """
    big = Image.fromarray(digit.astype(np.float32) / 255.0).resize(
        (28 * UPSAMPLE, 28 * UPSAMPLE), Image.Resampling.BILINEAR
    )
    mask = np.asarray(big) > 0.5
    line = np.argwhere(skeleton(mask))
    core = np.argwhere(_erode(mask, round(CORE_DEPTH * UPSAMPLE)))
    core = core[(core[:, 0] % 2 == 0) & (core[:, 1] % 2 == 0)]
    points = np.concatenate([line, core])
    if len(points) == 0:  # a digit too faint to threshold: keep its brightest pixel
        points = np.argwhere(digit == digit.max())[:1] * UPSAMPLE
    return (points + 0.5) / UPSAMPLE


# --- the pen's strokes -----------------------------------------------------------------

MIN_STROKE = 1.0  # 28x28 pixels: a skeleton spur shorter than this is thinning noise
_STEPS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
_HEADING_SPAN = 4  # pixels back along the path that give its heading at a junction

Pixel = tuple[int, int]


def _skeleton_graph(skel: np.ndarray) -> dict[Pixel, list[Pixel]]:
    """Each skeleton pixel's neighbours (8-connected). A diagonal step that a 4-connected
    detour also makes is left out: it is a staircase corner, not a branch."""
    pixels = {(int(r), int(c)) for r, c in np.argwhere(skel)}
    graph: dict[Pixel, list[Pixel]] = {}
    for r, c in sorted(pixels):
        graph[(r, c)] = [
            (r + dr, c + dc)
            for dr, dc in _STEPS
            if (r + dr, c + dc) in pixels
            and not (dr and dc and ((r + dr, c) in pixels or (r, c + dc) in pixels))
        ]
    return graph


def _trace(
    graph: dict[Pixel, list[Pixel]], used: set[frozenset[Pixel]], path: list[Pixel]
) -> list[Pixel]:
    """Extend `path` along unused edges, at each junction the way that bends least."""
    while True:
        here = path[-1]
        ways = [q for q in graph[here] if frozenset((here, q)) not in used]
        if not ways:
            return path
        back = path[max(0, len(path) - 1 - _HEADING_SPAN)]
        heading = np.array(here) - np.array(back)

        def straightness(q: Pixel, heading: np.ndarray = heading, here: Pixel = here) -> float:
            step = np.array(q) - np.array(here)
            return float(heading @ step / (np.linalg.norm(heading) * np.linalg.norm(step) + 1e-9))

        nxt = max(ways, key=straightness)
        used.add(frozenset((here, nxt)))
        path.append(nxt)


def pen_strokes(digit: np.ndarray) -> list[np.ndarray]:
    """The digit as a pen would write it: ordered polylines, each a (K, 2) float array of
    (row, col) points in 28x28 pixel units (as `pen_path`), the pen down along each.

    The centre line (the skeleton at 112x112) is traced edge by edge: every stroke starts
    at the topmost free end (an odd junction or a line's end, so that few strokes cover
    it; a loop starts at its top), and at a junction goes on the way that bends least,
    so a 4 comes out in two or three strokes and a 0 in one closed one. Every skeleton
    pixel lies on a stroke but for pieces shorter than MIN_STROKE (thinning noise at a
    line's end, which the brush covers anyway, and specks), which are dropped. Filled
    blobs are not scribbled in (`pen_path` dabs them): a digit is written, not painted.
    """
    big = Image.fromarray(digit.astype(np.float32) / 255.0).resize(
        (28 * UPSAMPLE, 28 * UPSAMPLE), Image.Resampling.BILINEAR
    )
    graph = _skeleton_graph(skeleton(np.asarray(big) > 0.5))
    used: set[frozenset[Pixel]] = set()
    paths: list[list[Pixel]] = []

    def free(p: Pixel) -> int:
        return sum(frozenset((p, q)) not in used for q in graph[p])

    while True:
        open_ends = [p for p in graph if free(p) % 2 == 1]
        starts = open_ends or [p for p in graph if free(p) > 0]
        if not starts:
            break
        start = min(starts)  # topmost, then leftmost
        first = min(q for q in graph[start] if frozenset((start, q)) not in used)
        used.add(frozenset((start, first)))
        paths.append(_trace(graph, used, [start, first]))
    paths += [[p] for p in graph if not graph[p]]  # lone pixels: dots

    strokes = [(np.array(path, np.float64) + 0.5) / UPSAMPLE for path in paths]
    if not strokes:  # a digit too faint to threshold: a dot at its brightest pixel
        r, c = np.argwhere(digit == digit.max())[0]
        return [np.array([[r + 0.5, c + 0.5]])]
    lengths = [float(np.linalg.norm(np.diff(s, axis=0), axis=1).sum()) for s in strokes]
    kept = [s for s, n in zip(strokes, lengths, strict=True) if n >= MIN_STROKE]
    return kept or [strokes[int(np.argmax(lengths))]]


def place_strokes(
    strokes: list[np.ndarray], size: float, top: float, left: float, step: float = 6.0
) -> list[np.ndarray]:
    """`pen_strokes` on the 280x280 canvas: (K, 2) float (x, y) canvas pixels, the pen
    path's bounding box scaled so its longer side is `size` px, its top-left corner at
    (left, top), each stroke resampled every `step` px along its length (both ends kept).

    The box is the pen's centre line: a brush of width w inks w/2 beyond it, so a digit
    placed at top=4 starts its strokes 4 px below the canvas's top edge.
    """
    points = np.concatenate(strokes)
    low = points.min(axis=0)
    extent = max(float(np.ptp(points, axis=0).max()), 1e-6)
    scale = size / extent
    placed = []
    for stroke in strokes:
        yx = (stroke - low) * scale + (top, left)
        if len(yx) > 1:
            along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(yx, axis=0), axis=1))])
            at = np.linspace(0.0, along[-1], max(2, int(np.ceil(along[-1] / step)) + 1))
            yx = np.stack([np.interp(at, along, yx[:, 0]), np.interp(at, along, yx[:, 1])], 1)
        placed.append(yx[:, ::-1].copy())
    return placed


def render_strokes(placed: list[np.ndarray], brush: float) -> np.ndarray:
    """(280, 280, 4) uint8: `place_strokes` output drawn as the Draw page's canvas would
    return it (a white round brush of width `brush` px on black, opaque)."""
    size = CANVAS * SUPERSAMPLE
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    radius = brush * SUPERSAMPLE / 2
    for stroke in placed:
        xy = [(float(x) * SUPERSAMPLE, float(y) * SUPERSAMPLE) for x, y in stroke]
        if len(xy) > 1:
            draw.line(xy, fill=255, width=round(brush * SUPERSAMPLE), joint="curve")
        for x, y in (xy[0], xy[-1]):  # round caps
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    grey = np.asarray(layer.reduce(SUPERSAMPLE))
    return np.dstack([grey, grey, grey, np.full_like(grey, 255)])


# --- one drawing ---------------------------------------------------------------------


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32) / 255


def _colours(scheme: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """(stroke RGB, background RGB or None for transparent), in 0..1."""
    black, white = np.zeros(3, np.float32), np.ones(3, np.float32)
    fixed = {
        "black on white": (black, white),
        "white on black": (white, black),
        "black on transparent": (black, None),
    }
    if scheme in fixed:
        return fixed[scheme]
    background = {"colour on white": white, "colour on transparent": None}.get(scheme)
    if scheme == "colour on colour":
        background = _random_colour(rng)
    while True:  # on a transparent background any colour shows: alpha carries it
        stroke = _random_colour(rng)
        if background is None or np.linalg.norm(stroke - background) >= MIN_COLOUR_DISTANCE:
            return stroke, background


def _coverage(
    points: np.ndarray, brush: float, top: float, left: float, scale: float
) -> np.ndarray:
    """(280, 280) float in [0, 1]: a round brush dabbed along the path, anti-aliased."""
    size = CANVAS * SUPERSAMPLE
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    radius = brush * SUPERSAMPLE / 2
    for row, col in points:
        y = (top + row * scale) * SUPERSAMPLE
        x = (left + col * scale) * SUPERSAMPLE
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    small = layer.reduce(SUPERSAMPLE)
    return np.asarray(small, dtype=np.float32) / 255


def _brush(rng: np.random.Generator) -> float:
    """The brush diameter, canvas pixels: the first draw of a drawing's generator."""
    return float(np.exp(rng.uniform(np.log(BRUSH_MIN), np.log(BRUSH_MAX))))


def draw_canvas(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-draw one 28x28 uint8 MNIST digit as a (280, 280, 4) uint8 RGBA canvas."""
    points = pen_path(digit)
    brush = _brush(rng)
    painted = rng.uniform(max(MIN_DIGIT, MIN_DIGIT_PER_BRUSH * brush), MAX_DIGIT)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = max(float((high - low).max()), 1.0)
    scale = (painted - brush) / extent
    span = (high - low) * scale + brush  # painted height, width
    top = rng.uniform(0, CANVAS - span[0]) + brush / 2 - low[0] * scale
    left = rng.uniform(0, CANVAS - span[1]) + brush / 2 - low[1] * scale
    alpha = _coverage(points, brush, top, left, scale)[..., None]

    scheme = rng.choice(list(SCHEMES), p=list(SCHEMES.values()))
    stroke, background = _colours(str(scheme), rng)
    if background is None:  # transparent: colour where painted, coverage in alpha
        rgb = np.where(alpha > 0, stroke, 0.0)
        rgba = np.concatenate([rgb, alpha], axis=2)
    else:
        rgb = background + alpha * (stroke - background)
        rgba = np.concatenate([rgb, np.ones_like(alpha)], axis=2)
    return (rgba * 255 + 0.5).astype(np.uint8)


# --- the set ---------------------------------------------------------------------------


def _sample_indices(count: int, n: int, seed: int) -> np.ndarray:
    """The first n of one fixed permutation: a larger n extends a smaller set."""
    return np.random.default_rng(seed).permutation(count)[: min(n, count)]


def iter_drawn(images: np.ndarray, n: int, seed: int) -> Iterator[tuple[int, np.ndarray]]:
    """(source index, canvas) pairs, one canvas in memory at a time (2000 canvases would
    hold 630 MB). Each drawing has its own generator seeded by (seed, position), so it
    does not depend on how many come before it."""
    for position, index in enumerate(_sample_indices(len(images), n, seed)):
        rng = np.random.default_rng([seed, position])
        yield int(index), draw_canvas(images[index], rng)


def brush_of(seed: int, position: int) -> float:
    """The brush the `position`-th drawing of `iter_drawn(..., seed)` was drawn with."""
    return _brush(np.random.default_rng([seed, position]))


# brush diameters, canvas pixels: a fine pen, a marker, a finger, a fat finger
BRUSH_BINS = ((8, 13), (13, 20), (20, 28), (28, 40))


def make_drawn_set(
    images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(canvases (n, 280, 280, 4) uint8, labels (n,), source indices (n,)), the same
    for the same seed."""
    pairs = list(iter_drawn(images, n, seed))
    indices = np.array([i for i, _ in pairs], dtype=np.int64)
    canvases = (
        np.stack([c for _, c in pairs]) if pairs else np.zeros((0, CANVAS, CANVAS, 4), np.uint8)
    )
    return canvases, np.asarray(labels)[indices], indices


def naive_resize(canvas: np.ndarray) -> np.ndarray:
    """The baseline: the canvas's ink squashed whole to 28x28, no crop, no centring.

    It gets the colours right (same ink map as to_mnist) so the comparison isolates the
    geometry: size normalisation, centring and stroke width.
    """
    return squash_to_28(ink_map(canvas))


def is_centred(canvas: np.ndarray) -> bool:
    """Drawn the way MNIST would have it: centred, and as big as the 20/28 box, the
    one case where squashing the whole canvas happens to work."""
    ink = ink_map(canvas) > 0.5
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    size = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    centre = np.array([rows[0] + rows[-1], cols[0] + cols[-1]]) / 2
    return bool(
        CENTRED_SIZE[0] <= size <= CENTRED_SIZE[1]
        and np.hypot(*(centre - CANVAS / 2)) <= CENTRED_OFFSET
    )


def _correct(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return predict_proba(model, images).argmax(axis=1) == labels


@dataclass(frozen=True)
class DrawnInputs:
    """n MNIST test digits re-drawn (seed), as each model is shown them: the originals,
    through `to_mnist`, squashed whole (`naive_resize`); made once, scored per model."""

    n: int
    seed: int
    originals: np.ndarray  # (n, 28, 28) uint8
    labels: np.ndarray
    normalised: np.ndarray  # to_mnist; a drawing it loses is blank (a mistake)
    naive: np.ndarray
    centred: np.ndarray  # bool: centred and MNIST-sized (see is_centred)
    brush: np.ndarray  # brush diameter of each drawing, canvas pixels


def drawn_inputs(n: int = 2000, seed: int = 0) -> DrawnInputs:
    _, (x_test, y_test) = load_mnist()
    indices, normalised, naive, centred, brushes = [], [], [], [], []
    blank = np.zeros((28, 28), np.float32)
    for position, (index, canvas) in enumerate(iter_drawn(x_test, n, seed)):
        indices.append(index)
        brushes.append(brush_of(seed, position))
        try:
            normalised.append(to_mnist(canvas))
            naive.append(naive_resize(canvas))
            centred.append(is_centred(canvas))
        except BlankImageError:  # counts as a mistake: the drawing lost the digit
            normalised.append(blank)
            naive.append(blank)
            centred.append(False)
    return DrawnInputs(
        n=len(indices),
        seed=seed,
        originals=x_test[indices],
        labels=y_test[indices],
        normalised=np.stack(normalised),
        naive=np.stack(naive),
        centred=np.array(centred, dtype=bool),
        brush=np.array(brushes),
    )


def drawn_accuracy(
    model: keras.Model, n: int = 2000, seed: int = 0, inputs: DrawnInputs | None = None
) -> dict[str, float | int]:
    """The model on n MNIST test digits: as written, re-drawn then `to_mnist`, and
    re-drawn then `naive_resize`. Gaps are in percentage points, original - drawn.
    `inputs` (drawn_inputs) saves re-drawing the set for every model compared.

    The `centred_*` figures repeat the naive gap on the drawings that happen to be
    centred and MNIST-sized: the best case for squashing the canvas.
    """
    d = inputs if inputs is not None else drawn_inputs(n, seed)
    original = _correct(model, d.originals, d.labels)
    through = _correct(model, d.normalised, d.labels)
    squashed = _correct(model, d.naive, d.labels)
    centred, brush = d.centred, d.brush
    by_brush = {
        f"{low}-{high} px": float(through[(brush >= low) & (brush < high)].mean())
        for low, high in BRUSH_BINS
        if ((brush >= low) & (brush < high)).any()
    }
    return {
        "n": d.n,
        "seed": d.seed,
        "original_accuracy": float(original.mean()),
        "to_mnist_accuracy": float(through.mean()),
        "naive_accuracy": float(squashed.mean()),
        "to_mnist_by_brush": by_brush,
        "gap_points": 100 * float(original.mean() - through.mean()),
        "naive_gap_points": 100 * float(original.mean() - squashed.mean()),
        "centred_n": int(centred.sum()),
        "centred_naive_gap_points": 100 * float(original[centred].mean() - squashed[centred].mean())
        if centred.any()
        else float("nan"),
    }


def on_the_draw_page(canvas: np.ndarray) -> np.ndarray:
    """A drawn canvas (any colour scheme) as the Draw page's canvas returns it: white
    strokes on opaque black (its background), same ink, for page tests that stand in
    for the browser component."""
    ink = (np.round(ink_map(canvas) * 255)).astype(np.uint8)
    rgba = np.empty((*ink.shape, 4), np.uint8)
    rgba[..., :3] = ink[..., None]
    rgba[..., 3] = 255
    return rgba
