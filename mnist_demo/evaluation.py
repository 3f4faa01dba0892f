"""A model on the test set: probabilities, predictions, confusion, mistakes.

Everything is derived from one (N, 10) probability matrix, computed once per model with
batched direct calls; `model.predict` adds per-call overhead we don't need.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import keras
import numpy as np

from mnist_demo.data import NUM_CLASSES, to_model_input
from mnist_demo.errors import DigitLabError

# Activations of a batch dominate memory: 1,000 robust-model images hold ~800 MB at
# once, 256 about 200 MB, for a few percent more time.
BATCH_SIZE = 256
_EPS = 1e-7  # Keras clips probabilities the same way in categorical cross-entropy


def predict_proba(
    model: keras.Model, images: np.ndarray, batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """(N, 10) float32 probabilities for uint8 (N, 28, 28) images or model inputs."""
    x = to_model_input(images)
    out = [
        np.asarray(model(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, NUM_CLASSES), np.float32)


class ImageIndexError(DigitLabError, IndexError):
    """A number that names no image of the set (the lab's question d asks for image n)."""


@dataclass(frozen=True)
class Evaluation:
    """The answers to the lab's questions for one model and one labelled set."""

    probabilities: np.ndarray  # (N, 10)
    labels: np.ndarray  # (N,) int

    @cached_property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @cached_property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class."""
        return self.probabilities.max(axis=1)

    @cached_property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels

    @cached_property
    def per_image_loss(self) -> np.ndarray:
        """Cross-entropy of each image: -log p(true class)."""
        p_true = self.probabilities[np.arange(len(self.labels)), self.labels]
        return -np.log(np.clip(p_true, _EPS, 1.0))

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def loss(self) -> float:
        return float(self.per_image_loss.mean()) if self.n else float("nan")

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.n else float("nan")

    @property
    def misclassified_count(self) -> int:
        return int((~self.correct).sum())

    def check_index(self, index: int) -> int:
        """`index` itself if the set has an image with that number, else ImageIndexError."""
        if not 0 <= index < self.n:
            numbered = (
                f"the {self.n:,} images are numbered 0 to {self.n - 1:,}; choose one of those"
                if self.n
                else "the set is empty"
            )
            raise ImageIndexError(f"there is no image {index}: {numbered}")
        return index

    def misclassified_indices(self, most_confident_first: bool = True) -> np.ndarray:
        """Indices of the errors; by default the model's most confident mistakes first."""
        order = "wrong_confidence" if most_confident_first else "index"
        return select(self, outcome="wrong", order=order)

    @cached_property
    def confusion(self) -> np.ndarray:
        """confusion[true, predicted] = count."""
        m = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
        np.add.at(m, (self.labels, self.predictions), 1)
        return m

    def per_class(self) -> list[dict[str, float | int]]:
        """Precision, recall and error count per digit (NaN where undefined)."""
        m = self.confusion
        rows = []
        for d in range(NUM_CLASSES):
            tp, support, predicted = m[d, d], m[d].sum(), m[:, d].sum()
            rows.append(
                {
                    "digit": d,
                    "support": int(support),
                    "precision": float(tp / predicted) if predicted else float("nan"),
                    "recall": float(tp / support) if support else float("nan"),
                    "errors": int(support - tp),
                }
            )
        return rows

    def summary(self) -> dict[str, float | int]:
        """The `evaluate --json` contract."""
        return {
            "test_loss": self.loss,
            "test_accuracy": self.accuracy,
            "misclassified": self.misclassified_count,
            "n": self.n,
        }


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    return Evaluation(predict_proba(model, images), np.asarray(labels).astype(np.int64))


def compare(a: Evaluation, b: Evaluation) -> dict[str, np.ndarray]:
    """Which errors of model `a` model `b` fixed, which it introduced, which both make."""
    return {
        "fixed": np.flatnonzero(~a.correct & b.correct),
        "introduced": np.flatnonzero(a.correct & ~b.correct),
        "both_wrong": np.flatnonzero(~a.correct & ~b.correct),
    }


ORDERS = {
    "index": "test-set order",
    "confidence": "least confident first",
    "loss": "highest loss first",
    "wrong_confidence": "most confident mistakes first",
}


def select(
    result: Evaluation,
    *,
    true_digit: int | None = None,
    predicted_digit: int | None = None,
    outcome: str = "all",
    confidence: tuple[float, float] = (0.0, 1.0),
    order: str = "index",
) -> np.ndarray:
    """Indices of the images that pass every filter, in the order asked for. This is the
    Test set page's whole query, kept here so it is checked without a browser."""
    if outcome not in ("all", "right", "wrong"):
        raise ValueError(f"outcome must be all, right or wrong, not {outcome!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    keep = np.ones(result.n, dtype=bool)
    if true_digit is not None:
        keep &= result.labels == true_digit
    if predicted_digit is not None:
        keep &= result.predictions == predicted_digit
    if outcome != "all":
        keep &= result.correct == (outcome == "right")
    low, high = confidence
    keep &= (result.confidence >= low) & (result.confidence <= high)
    chosen = np.flatnonzero(keep)
    key = {
        "index": None,
        "confidence": result.confidence[chosen],
        "loss": -result.per_image_loss[chosen],
        "wrong_confidence": -result.confidence[chosen],
    }[order]
    return chosen if key is None else chosen[np.argsort(key, kind="stable")]


def top_k(probabilities: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
    """The k most probable digits with their probabilities, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(d), float(probabilities[d])) for d in order]
