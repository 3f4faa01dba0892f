"""Which labelled set a page shows: MNIST's 10,000 test images or the class's own
drawings, both scored by the page's model and cached per model (and class-set version)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from mnist_demo import experiments
from mnist_demo.data import TEST_SIZE
from mnist_demo.evaluation import Evaluation
from mnist_demo.models import ModelRef
from mnist_demo.ui.classroom import role
from mnist_demo.ui.resources import (
    class_evaluation,
    class_store,
    dataset,
    evaluation,
    registry,
)

MNIST_TEST = "mnist"
CLASS_DRAWINGS = "class"


@dataclass(frozen=True)
class Scored:
    """A labelled set and a model's answers on it."""

    kind: str  # MNIST_TEST or CLASS_DRAWINGS
    noun: str  # what one item is called in captions: "test image", "class drawing"
    images: np.ndarray  # (N, 28, 28) uint8
    result: Evaluation
    skipped: int = 0  # class drawings whose stored image was unreadable


def choose(ref: ModelRef, key: str) -> Scored:
    """A switch between the two sets, and the chosen one scored by `ref`'s model."""
    n_class = class_store().count()
    labels = {
        MNIST_TEST: f"MNIST test ({TEST_SIZE:,})",
        CLASS_DRAWINGS: f"Class drawings ({n_class:,})",
    }
    kind = st.segmented_control(
        "Dataset", list(labels), format_func=lambda kind: labels[kind], default=MNIST_TEST, key=key
    )
    return scored(ref, kind or MNIST_TEST)


def scored(ref: ModelRef, kind: str) -> Scored:
    """The set scored by `ref`'s model; the class's drawings only where the session may
    see that score (experiments.check_class_score: HiddenScoreError otherwise)."""
    if kind == CLASS_DRAWINGS:
        experiments.check_class_score(registry(), ref.owner, role())
        snapshot, result = class_evaluation(ref)
        return Scored(kind, "class drawing", snapshot.images, result, snapshot.skipped)
    _, (x_test, _) = dataset()
    return Scored(MNIST_TEST, "test image", x_test, evaluation(ref))
