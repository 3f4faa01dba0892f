"""One reading path: a picture -> the preprocessing steps -> the probabilities -> the
verdict -> the words. The Draw page, the CLI's `predict`, the tests and the latency
benchmark all read a drawing with `Reader.read`; nothing else assembles an answer.

    reader = Reader.load(Path("models/lab7.keras"))   # or Reader(model, path)
    reading = reader.read(canvas_rgba)                # or a photo, or a 28x28
    reading.headline, reading.note, reading.sentence  # "7", "93% confident", ...

What `read` takes decides how it is read:

- a canvas, an (H, W, 3|4) array from the Draw page (white strokes on black): refused
  when painted nearly all over (`preprocess.check_canvas`), then `preprocessing_steps`;
- a photo: a PIL image (already decoded), or the file itself as bytes or a path
  (`preprocess.load_image`, which refuses huge and broken files); then the same steps;
- a 28x28 array (or 28x28x1): already an MNIST-style input, read as it is (no steps).

The network runs ONCE per reading: `Predictor.forward` gives the probabilities and the
activations entering the softmax layer from one traced call, and the "not a digit" head
(`novelty.Rule`) reads those; no `model.predict`, no second pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import keras
import numpy as np
from PIL import Image

from mnist_demo import novelty, preprocess
from mnist_demo.inference import Predictor, as_image
from mnist_demo.model import load_model
from mnist_demo.novelty import Rule, Verdict
from mnist_demo.preprocess import BlankImageError, Step

CANVAS_BACKGROUND = (0, 0, 0)  # the Draw page's canvas: white strokes on black, as MNIST
DRAWING, PHOTO, INPUT = "drawing", "photo", "28×28 image"
PHOTO_BLANK = (
    "No digit found in this photo: it looks blank, one flat colour. Try a photo with the "
    "digit large and in focus."
)

Picture = np.ndarray | Image.Image | bytes | Path | BinaryIO


@dataclass(frozen=True, eq=False)
class Reading:
    """One picture read: what it was (`source`: DRAWING, PHOTO or INPUT), the picture as
    read (a photo decoded), `steps` (preprocess.Step, in order; none for a 28x28), the
    28x28 the model saw, its ten probabilities and the verdict, with the words for it."""

    source: str
    picture: np.ndarray | Image.Image
    steps: tuple[Step, ...]
    image28: np.ndarray
    probabilities: np.ndarray
    verdict: Verdict

    @property
    def digit(self) -> int:
        """The most probable digit, whatever the verdict."""
        return self.verdict.digit

    @property
    def confidence(self) -> float:
        """The probability of `digit`: the one the probability bars show."""
        return self.verdict.confidence

    # The words, from one place (novelty.Verdict): the page's metric and the CLI's line.
    @property
    def headline(self) -> str:
        return self.verdict.headline

    @property
    def note(self) -> str:
        return self.verdict.note

    @property
    def sentence(self) -> str:
        return self.verdict.text


class Reader:
    """A model ready to read pictures: its `Predictor` (traced once), the file it came
    from, and the novelty rule fitted for that file (`novelty.load_rule`: from the
    X.novelty.json beside it, or the fallback). Immutable, so one Reader serves every
    session of a server at once (the Predictor's calls need no lock)."""

    def __init__(
        self, model: keras.Model | Predictor, model_path: Path | None, rule: Rule | None = None
    ) -> None:
        self.predictor = model if isinstance(model, Predictor) else Predictor(model)
        self.model = self.predictor.model
        self.model_path = None if model_path is None else Path(model_path)
        self.rule = novelty.load_rule(self.model, self.model_path) if rule is None else rule
        if self.rule.fitted and not self.predictor.has_penultimate:
            raise ValueError("a fitted rule needs a model that ends in a softmax Dense layer")

    @classmethod
    def load(cls, model_path: Path) -> Reader:
        """A Reader for a model file (ModelFileError if it is missing or damaged)."""
        return cls(load_model(Path(model_path)), Path(model_path))

    def read(self, picture: Picture) -> Reading:
        """Read one picture (see the module docstring for what it may be). Errors a
        user can fix are DigitLabErrors with a message to show as it is: a blank or
        painted-over canvas, a speck, a file that is not an image, too large, damaged."""
        if isinstance(picture, bytes | bytearray | str | Path) or hasattr(picture, "read"):
            picture = preprocess.load_image(picture)  # type: ignore[arg-type]
        if isinstance(picture, Image.Image):
            source = PHOTO
            try:
                steps = tuple(preprocess.preprocessing_steps(picture))
            except BlankImageError:
                raise BlankImageError(PHOTO_BLANK) from None
            image28 = steps[-1].image
        else:
            picture = np.asarray(picture)
            if picture.shape in ((28, 28), (28, 28, 1)):
                source, steps, image28 = INPUT, (), as_image(picture)
            else:
                source = DRAWING
                preprocess.check_canvas(picture, background=CANVAS_BACKGROUND)
                steps = tuple(preprocess.preprocessing_steps(picture))
                image28 = steps[-1].image
        probabilities, penultimate = self.predictor.forward(image28)  # the one pass
        inputs = None
        if self.rule.fitted and penultimate is not None:
            inputs = novelty.head_inputs_from(self.model, penultimate)
        verdict = self.rule.verdict(probabilities, inputs)
        return Reading(source, picture, steps, image28, probabilities, verdict)
