"""A non-digit set: what students draw that is not one digit, as Draw page canvases.

Students draw letters, smileys, scribbles, two digits at once, a digit crossed out; the
model answers each with a digit. To measure how often `mnist_demo.novelty` says "that
doesn't look like a digit" to them, and to fit it, we need such drawings by the
thousand. Each is first sketched as a 112x112 grey picture (the resolution at which
`tools.drawn_digits` thins a digit to its pen path), jittered (turned, slanted,
squashed), then handed to `drawn_digits.draw_canvas`, which strokes it again with a
random brush (8-40 px), size, place and colours. The pen is the drawn-digit set's, so
the two sets differ in what is drawn, not in how.

Kinds (equally many, in turn):
  letter     a letter from an installed TrueType font (Debian's DejaVu and Liberation;
             Pillow's built-in font where there is none), leaving out those a digit is
             written like (O, I, l, S, Z, B, b, g, q, ...)
  symbol     + = # % & @ ? * ~ { } and, where the font has them, ♥ ★ ☺ ✓ ∞ § € ...
  scribble   a smooth random line through 5-12 points, or a looping tangle
  shape      triangle, square, star, asterisk, grid, heart, spiral, house, arrow,
             zigzag (never one circle or one line: those are 0 and 1)
  face       a smiley (or a frown)
  two digits two MNIST digits side by side, touching or nearly
  crossed    an MNIST digit with a big X through it, or scratched out

Generated, never shipped. Each drawing has its own generator seeded by (seed, position),
so one seed range fits and another reports. Where a kind borrows MNIST digits, they come
from the `digits` array the caller passes (benchmarks and the fit use held-out training
digits, never the test set).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnist_demo.errors import DigitLabError
from mnist_demo.preprocess import to_mnist
from tools.drawn_digits import CANVAS, UPSAMPLE, draw_canvas, skeleton

SKETCH = 28 * UPSAMPLE  # 112: sketches are drawn where draw_canvas thins
LINE = 5  # sketch line width, px (odd: a MaxFilter size): a stroke, not a blob
MARGIN = 14  # sketch content stays inside [MARGIN, SKETCH - MARGIN] before jitter
FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
FONT_SIZE = 72
MAX_TURN = 15.0  # degrees either way
MAX_SLANT = 0.25
MAX_SQUASH = 0.15  # each axis scaled by 1 -/+ this

# Written like a digit, so left out: O o Q D (0), I l i j J | (1), Z z (2), S s (5),
# B (8), b G (6), g q (9).
LETTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxy" + "αγλμπφψωΓΔΛΞΠΣΦΨΩ"
SYMBOLS = "+=#%&@?*~{}" + "♥★☺✓✗∞§¶€£¥©®♪☀✿⌘☂"

Sketch = np.ndarray  # (SKETCH, SKETCH) uint8, ink bright
Key = TypeVar("Key")


# --- fonts -------------------------------------------------------------------------------


@cache
def font_files() -> tuple[Path, ...]:
    """Installed TrueType/OpenType fonts, sorted (so a seed means the same letters on a
    machine with the same fonts)."""
    found: list[Path] = []
    for folder in FONT_DIRS:
        if folder.is_dir():
            found += [p for p in folder.rglob("*") if p.suffix.lower() in (".ttf", ".otf")]
    return tuple(sorted(found))


@cache
def _font(path: Path | None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is None:  # no fonts installed: Pillow's own scalable font
        return ImageFont.load_default(size=FONT_SIZE)
    return ImageFont.truetype(str(path), FONT_SIZE)


def _glyph(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> np.ndarray:
    layer = Image.new("L", (SKETCH, SKETCH), 0)
    ImageDraw.Draw(layer).text((SKETCH / 2, SKETCH / 2), text, font=font, fill=255, anchor="mm")
    return np.asarray(layer)


@cache
def _has_glyph(path: Path | None, char: str) -> bool:
    """The font draws `char` as itself: some ink, and not the box it draws for a
    character it lacks (U+FFFF is in no font)."""
    font = _font(path)
    drawn = _glyph(font, char)
    return bool(drawn.any()) and not np.array_equal(drawn, _glyph(font, "\uffff"))


def _text_sketch(chars: str, rng: np.random.Generator) -> Sketch:
    files: list[Path | None] = list(font_files()) or [None]
    while True:  # a symbol this font lacks: try another symbol or font
        path = files[rng.integers(len(files))]
        char = chars[rng.integers(len(chars))]
        if _has_glyph(path, char):
            return _pen_line(_glyph(_font(path), char) > 127)


def _pen_line(mask: np.ndarray) -> Sketch:
    """A glyph's centre line, LINE px wide: a bold font's thick stems would otherwise be
    dabbed as filled blobs, not written."""
    line = Image.fromarray(skeleton(mask).astype(np.uint8) * 255)
    return np.asarray(line.filter(ImageFilter.MaxFilter(LINE)))


def letter(rng: np.random.Generator, digits: np.ndarray) -> Sketch:
    return _text_sketch(LETTERS, rng)


def symbol(rng: np.random.Generator, digits: np.ndarray) -> Sketch:
    return _text_sketch(SYMBOLS, rng)


# --- lines -------------------------------------------------------------------------------


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    layer = Image.new("L", (SKETCH, SKETCH), 0)
    return layer, ImageDraw.Draw(layer)


def _line(draw: ImageDraw.ImageDraw, points: np.ndarray, closed: bool = False) -> None:
    """A polyline of (x, y) points with round joints and caps."""
    xy = [(float(x), float(y)) for x, y in points]
    if closed:
        xy.append(xy[0])
    draw.line(xy, fill=255, width=LINE, joint="curve")
    for x, y in (xy[0], xy[-1]):
        r = LINE / 2
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def _dot(draw: ImageDraw.ImageDraw, x: float, y: float, r: float) -> None:
    draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def _smooth(points: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Chaikin's corner cutting: a smooth curve near the points, ends kept."""
    for _ in range(rounds):
        a, b = points[:-1], points[1:]
        cut = np.empty((2 * len(a), 2))
        cut[0::2] = 0.75 * a + 0.25 * b
        cut[1::2] = 0.25 * a + 0.75 * b
        points = np.concatenate([points[:1], cut, points[-1:]])
    return points


def _circle(cx: float, cy: float, r: float, turns: float = 1.0, n: int = 60) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi * turns, max(8, int(n * turns)))
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _inside(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(MARGIN, SKETCH - MARGIN, size=(n, 2))


def scribble(rng: np.random.Generator, digits: np.ndarray) -> Sketch:
    layer, draw = _canvas()
    if rng.random() < 0.5:  # a wandering line
        _line(draw, _smooth(_inside(rng, int(rng.integers(5, 13)))))
    else:  # a tangle: loops around a drifting centre
        turns = rng.uniform(3, 7)
        t = np.linspace(0, 2 * math.pi * turns, int(60 * turns))
        centre = SKETCH / 2 + np.cumsum(rng.normal(0, 1.2, size=(len(t), 2)), axis=0)
        radius = rng.uniform(14, 30) * (1 + 0.3 * np.sin(t * rng.uniform(0.2, 0.6)))
        ring = np.stack([np.cos(t), np.sin(t) * rng.uniform(0.5, 1.0)], axis=1)
        points = np.clip(centre + radius[:, None] * ring, MARGIN, SKETCH - MARGIN)
        _line(draw, points)
    return np.asarray(layer)


def _star(cx: float, cy: float, r: float, spin: float) -> np.ndarray:
    angles = spin + np.arange(5) * 4 * math.pi / 5  # every second corner of a pentagon
    return np.stack([cx + r * np.sin(angles), cy - r * np.cos(angles)], axis=1)


def shape(rng: np.random.Generator, digits: np.ndarray) -> Sketch:
    layer, draw = _canvas()
    c, r = SKETCH / 2, SKETCH / 2 - MARGIN
    which = int(rng.integers(10))
    if which == 0:  # triangle
        a = np.radians([-90.0, 30.0, 150.0])
        _line(draw, np.stack([c + r * np.cos(a), c + r * 0.15 + r * np.sin(a)], 1), closed=True)
    elif which == 1:  # square
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]])
        _line(draw, c + r * corners, closed=True)
    elif which == 2:  # five-pointed star
        _line(draw, _star(c, c, r, rng.uniform(-0.3, 0.3)), closed=True)
    elif which == 3:  # asterisk: 3 or 4 lines through the centre
        k = int(rng.integers(3, 5))
        for a in np.arange(k) * math.pi / k + rng.uniform(0, math.pi):
            d = r * np.array([math.cos(a), math.sin(a)])
            _line(draw, np.array([c - d, c + d]))
    elif which == 4:  # grid: #
        for f in (1 / 3, 2 / 3):
            at = MARGIN + f * 2 * r
            _line(draw, np.array([[at, MARGIN], [at, SKETCH - MARGIN]]))
            _line(draw, np.array([[MARGIN, at], [SKETCH - MARGIN, at]]))
    elif which == 5:  # heart (not concentric circles: a thick brush merges them into a 0)
        t = np.linspace(0, 2 * math.pi, 80)
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        _line(draw, np.stack([c + r * x / 17, c - r * (y + 2) / 17], 1), closed=True)
    elif which == 6:  # spiral
        t = np.linspace(0, 1, 240)
        turns = rng.uniform(2.5, 4)
        pts = np.stack([np.cos(2 * math.pi * turns * t), np.sin(2 * math.pi * turns * t)], 1)
        _line(draw, c + r * t[:, None] * pts)
    elif which == 7:  # house: a square with a roof
        left, right, eaves, floor = c - r * 0.8, c + r * 0.8, c - r * 0.2, c + r
        _line(draw, np.array([[left, eaves], [right, eaves], [right, floor], [left, floor]]), True)
        _line(draw, np.array([[left, eaves], [c, c - r], [right, eaves]]))
    elif which == 8:  # arrow
        _line(draw, np.array([[c - r, c], [c + r, c]]))
        _line(draw, np.array([[c + r * 0.4, c - r * 0.5], [c + r, c], [c + r * 0.4, c + r * 0.5]]))
    else:  # zigzag with 3-5 peaks
        peaks = int(rng.integers(3, 6))
        x = np.linspace(c - r, c + r, 2 * peaks + 1)
        y = c + np.where(np.arange(len(x)) % 2 == 0, r * 0.4, -r * 0.4)
        _line(draw, np.stack([x, y], 1))
    return np.asarray(layer)


def face(rng: np.random.Generator, digits: np.ndarray) -> Sketch:
    layer, draw = _canvas()
    c, r = SKETCH / 2, SKETCH / 2 - MARGIN
    _line(draw, _circle(c, c, r), closed=True)
    eye = rng.uniform(3.5, 6)
    _dot(draw, c - r * 0.38, c - r * 0.3, eye)
    _dot(draw, c + r * 0.38, c - r * 0.3, eye)
    t = np.linspace(math.pi * 0.2, math.pi * 0.8, 20)
    mouth = np.stack([c + r * 0.55 * np.cos(t), c + r * 0.1 + r * 0.35 * np.sin(t)], 1)
    if rng.random() < 0.3:  # a frown
        mouth[:, 1] = 2 * (c + r * 0.3) - mouth[:, 1]
    _line(draw, mouth)
    return np.asarray(layer)


# --- MNIST digits, misused ---------------------------------------------------------------


def _digit(digits: np.ndarray, rng: np.random.Generator, side: int) -> np.ndarray:
    picked = digits[rng.integers(len(digits))]
    return np.asarray(Image.fromarray(picked).resize((side, side), Image.Resampling.BILINEAR))


def two_digits(rng: np.random.Generator, digits: np.ndarray) -> Sketch:
    """Two digits of MNIST's 20-in-28 size, 0-8 px apart (at 28x28 scale the box is 8 px
    inside each side, so the strokes nearly touch)."""
    side = SKETCH // 2 + 8
    out = np.zeros((SKETCH, SKETCH), np.uint8)
    gap = int(rng.integers(-10, 6))
    for k in range(2):
        left = max(0, min(SKETCH - side, k * (side + gap) - (side + gap - SKETCH // 2) // 2 - 4))
        top = (SKETCH - side) // 2 + int(rng.integers(-8, 9))
        box = out[top : top + side, left : left + side]
        np.maximum(box, _digit(digits, rng, side), out=box)
    return out


def crossed(rng: np.random.Generator, digits: np.ndarray) -> Sketch:
    out = _digit(digits, rng, SKETCH)
    layer, draw = _canvas()
    lo, hi = MARGIN, SKETCH - MARGIN
    if rng.random() < 0.5:  # a big X
        _line(draw, np.array([[lo, lo], [hi, hi]]))
        _line(draw, np.array([[hi, lo], [lo, hi]]))
    else:  # scratched out: a tight zigzag over it
        rows = int(rng.integers(5, 9))
        y = np.linspace(lo + 8, hi - 8, rows)
        x = np.where(np.arange(rows) % 2 == 0, lo, hi)
        _line(draw, np.stack([x, y], 1) + rng.normal(0, 3, size=(rows, 2)))
    return np.maximum(out, np.asarray(layer))


KINDS: dict[str, Callable[[np.random.Generator, np.ndarray], Sketch]] = {
    "letter": letter,
    "symbol": symbol,
    "scribble": scribble,
    "shape": shape,
    "face": face,
    "two digits": two_digits,
    "crossed": crossed,
}


# --- one drawing, and the set ---------------------------------------------------------------


def jitter(sketch: Sketch, rng: np.random.Generator) -> Sketch:
    """Turned by up to MAX_TURN degrees, slanted, squashed: no two students draw the
    same star. The transform is about the centre, so the content stays in the square."""
    turn = math.radians(rng.uniform(-MAX_TURN, MAX_TURN))
    slant = rng.uniform(-MAX_SLANT, MAX_SLANT)
    sx, sy = rng.uniform(1 - MAX_SQUASH, 1 + MAX_SQUASH, size=2)
    forward = np.array(
        [[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]]
    ) @ np.array([[sx, slant], [0.0, sy]])
    back = np.linalg.inv(forward)  # PIL maps output pixels to input pixels
    c = np.array([SKETCH / 2, SKETCH / 2])
    offset = c - back @ c
    coeffs = (back[0, 0], back[0, 1], offset[0], back[1, 0], back[1, 1], offset[1])
    out = Image.fromarray(sketch).transform(
        (SKETCH, SKETCH), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
    )
    return np.asarray(out)


def non_digit_canvas(kind: str, rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
    """One non-digit of `kind` as a (280, 280, 4) uint8 RGBA canvas (as draw_canvas)."""
    return draw_canvas(jitter(KINDS[kind](rng, digits), rng), rng)


def iter_non_digits(n: int, seed: int, digits: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """(kind, canvas) pairs, the kinds in turn, one canvas in memory at a time. Each
    drawing has its own generator seeded by (seed, position), so it does not depend on
    how many come before it; `digits` is (N, 28, 28) uint8 MNIST digits to borrow."""
    if len(digits) == 0:
        raise ValueError("non-digits borrow MNIST digits: pass at least one")
    names = list(KINDS)
    for position in range(n):
        rng = np.random.default_rng([seed, position])
        kind = names[position % len(names)]
        yield kind, non_digit_canvas(kind, rng, digits)


def make_non_digit_set(n: int, seed: int, digits: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(canvases (n, 280, 280, 4) uint8, kinds), the same for the same seed (and fonts)."""
    pairs = list(iter_non_digits(n, seed, digits))
    canvases = (
        np.stack([c for _, c in pairs]) if pairs else np.zeros((0, CANVAS, CANVAS, 4), np.uint8)
    )
    return canvases, [k for k, _ in pairs]


def through_to_mnist(
    pairs: Iterable[tuple[Key, np.ndarray]],
) -> tuple[list[Key], np.ndarray, np.ndarray]:
    """What the Draw page makes of each canvas of (key, canvas) pairs (`iter_non_digits`,
    `drawn_digits.iter_drawn`), one canvas in memory at a time: the keys, (N, 28, 28)
    float32 `to_mnist` images, and a (N,) bool mask of the canvases it refuses with a
    message instead (a dot, a blank, a painted-over canvas), whose images are left black."""
    keys, images, refused = [], [], []
    for key, canvas in pairs:
        keys.append(key)
        try:
            images.append(to_mnist(canvas))
            refused.append(False)
        except DigitLabError:
            images.append(np.zeros((28, 28), np.float32))
            refused.append(True)
    stacked = np.stack(images) if images else np.zeros((0, 28, 28), np.float32)
    return keys, stacked, np.array(refused, dtype=bool)
