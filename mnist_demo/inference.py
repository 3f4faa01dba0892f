"""Fast single-image inference: the answer, what the network sees, and why.

A student lifts the mouse and waits. `model.predict` spends tens of milliseconds on
set-up (a data adapter, a step function, callbacks) before it touches one image, so
`Predictor` never calls it. Every path here is a `tf.function` with a fixed input
signature, traced once in the constructor: after that a call is one graph execution.
On this project's 2-core machine one image takes 1-2 ms that way, against 4-6 ms
for an eager `model(x, training=False)` and 35-45 ms for `model.predict`
(`benchmarks/drawing_latency.py` prints the current figures).

Concurrency: Streamlit runs each browser session's script in its own thread, and they
may all share one cached `Predictor`. A traced graph reads the model's variables and
keeps no state between calls, and every call builds its own NumPy buffers, so
concurrent calls need no lock. Tracing is the one step that is not re-entrant; it
happens in the constructor, before any other thread can see the object (and
`tf.function` serialises it anyway if warm-up is switched off).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from mnist_demo.data import IMAGE_SIZE, INPUT_SHAPE, NUM_CLASSES, PixelValueError, to_unit_pixels
from mnist_demo.errors import ModelShapeError
from mnist_demo.novelty import output_layer

# Occlusion: a 4x4 patch every 2 pixels gives 13 x 13 = 169 occluded copies, all sent
# through the network in one batch. Black, because MNIST's background is black: the
# patch asks "what if this bit of ink were not there?".
OCCLUSION_PATCH = 4
OCCLUSION_STRIDE = 2
OCCLUSION_FILL = 0.0
# What the patch is measured against. A trained Lab 7 model is sure of most digits
# (p = 0.99999...), and hiding one 4x4 patch rarely moves that probability: a map of
# probability drops is one bright dot. The target's log-odds, log(p / (1 - p)), keeps
# changing where the probability has saturated, so the map traces the strokes that
# matter. "probability" is there for comparing the two in class.
MEASURES = ("log-odds", "probability")
TINY = 1e-30  # floor for probabilities before a log: float32 softmax can underflow to 0

GRID_GAP = 255  # the 1-pixel lines between channels in feature_grid: white


# --- input checking ------------------------------------------------------------------


def as_image(image28: np.ndarray) -> np.ndarray:
    """One user's 28x28 image, (28, 28) or (28, 28, 1), as float32 (28, 28) in [0, 1];
    the pixels are checked and scaled by `data.to_unit_pixels`."""
    x = np.asarray(image28)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise PixelValueError(
            f"expected one {IMAGE_SIZE}x{IMAGE_SIZE} grey image (shape (28, 28) or "
            f"(28, 28, 1)), got shape {np.shape(image28)}"
        )
    return to_unit_pixels(x)


def _check_model(model: keras.Model) -> None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ModelShapeError(
            "the model has no defined input; build it with keras.Input(shape=(28, 28, 1)) "
            "as its first layer"
        )
    if len(inputs) != 1:
        raise ModelShapeError(f"the model takes {len(inputs)} inputs; Digit Lab feeds one image")
    shape = tuple(inputs[0].shape[1:])
    if shape != INPUT_SHAPE:
        raise ModelShapeError(
            f"the model expects input of shape {shape}; Digit Lab feeds 28x28 grey "
            f"images of shape {INPUT_SHAPE}"
        )
    out = tuple(model.outputs[0].shape[1:]) if model.outputs else None
    if out != (NUM_CLASSES,):
        raise ModelShapeError(
            f"the model's output has shape {out}; Digit Lab needs {NUM_CLASSES} class probabilities"
        )
    if not _conv_layers(model):
        raise ModelShapeError(
            "the model has no Conv2D layers, so there are no feature maps to show; "
            "Digit Lab expects a CNN such as build_model('lab7')"
        )


def _conv_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def _after_activation(model: keras.Model, conv: keras.layers.Layer) -> keras.KerasTensor:
    """The conv layer's output after its ReLU. Lab 7 puts the ReLU inside the Conv2D;
    a model written as Conv2D followed by a ReLU/Activation layer gets that layer's
    output instead, so students always see what the next layer sees."""
    if conv.activation is keras.activations.linear:
        layers = model.layers
        i = layers.index(conv)
        if i + 1 < len(layers) and isinstance(
            layers[i + 1], keras.layers.ReLU | keras.layers.Activation
        ):
            return layers[i + 1].output
    return conv.output


# --- the predictor -------------------------------------------------------------------


class Predictor:
    """One model, ready for single images: `predict`, `feature_maps`, `saliency`.

    Build it once per model (a Streamlit page keeps it in `st.cache_resource`): the
    constructor traces every graph (0.3-1 s on 2 cores), so no student pays for it.
    The model's weights are read at call time, so wrap a model that is not being
    trained at the same moment (one loaded from file, or a clone).
    """

    def __init__(
        self,
        model: keras.Model,
        *,
        patch: int = OCCLUSION_PATCH,
        stride: int = OCCLUSION_STRIDE,
        fill: float = OCCLUSION_FILL,
        warm_up: bool = True,
    ) -> None:
        _check_model(model)
        if not 1 <= stride <= patch <= IMAGE_SIZE:
            raise ValueError(f"need 1 <= stride <= patch <= 28, got {stride=}, {patch=}")
        self.model = model
        self.conv_names = [layer.name for layer in _conv_layers(model)]
        features = keras.Model(
            inputs=model.inputs,
            outputs=[_after_activation(model, model.get_layer(n)) for n in self.conv_names],
            name=f"{model.name}_features",
        )

        # Occlusion masks, computed once: `keep` multiplies the image, `cover` says which
        # pixels each patch hid (its row sums turn patch drops into per-pixel averages).
        starts = list(range(0, IMAGE_SIZE - patch + 1, stride))
        if starts[-1] != IMAGE_SIZE - patch:  # make sure the last rows/columns are covered
            starts.append(IMAGE_SIZE - patch)
        cover = np.zeros((len(starts) ** 2, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        for k, (r, c) in enumerate((r, c) for r in starts for c in starts):
            cover[k, r : r + patch, c : c + patch] = 1.0
        self._cover = cover.reshape(len(cover), -1)
        self._keep = 1.0 - cover
        self._fill = np.float32(fill) * cover
        self._cover_counts = self._cover.sum(axis=0)
        n_batch = len(cover) + 1  # the original image rides along as row 0

        # The answer and, for a model ending in a softmax Dense layer, the activations
        # entering it (what novelty's head reads) come out of ONE graph: one pass.
        last = output_layer(model)
        answer = model
        if last is not None:
            answer = keras.Model(
                model.inputs[0], [model.outputs[0], last.input], name=f"{model.name}_answer"
            )
        self.has_penultimate = last is not None
        one = tf.TensorSpec((1, *INPUT_SHAPE), tf.float32)
        self._forward_fn = tf.function(lambda x: answer(x, training=False), input_signature=[one])
        self._features_fn = tf.function(
            lambda x: features(x, training=False), input_signature=[one]
        )
        self._batch_fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((n_batch, *INPUT_SHAPE), tf.float32)],
        )

        @tf.function(input_signature=[one, tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.bool)])
        def grad_times_input(x: tf.Tensor, target: tf.Tensor, log_odds: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                probs = model(x, training=False)[0]
                is_target = tf.one_hot(target, NUM_CLASSES, dtype=probs.dtype)
                p = tf.reduce_sum(probs * is_target)
                rest = tf.reduce_sum(probs * (1 - is_target))  # not 1 - p: that rounds to 0
                odds = tf.math.log(tf.maximum(p, TINY)) - tf.math.log(tf.maximum(rest, TINY))
                score = tf.where(log_odds, odds, p)
            return tape.gradient(score, x) * x

        self._grad_fn = grad_times_input
        if warm_up:
            self.warm_up()

    def warm_up(self) -> None:
        """Trace every graph now (0.3-1 s on 2 cores) instead of on a student's first draw."""
        blank = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        self.predict(blank)
        self.feature_maps(blank)
        self.saliency(blank, target=0, method="occlusion")
        self.saliency(blank, target=0, method="gradient")  # measure is an argument: one trace

    # - the answer -

    def predict(self, image28: np.ndarray) -> np.ndarray:
        """Ten class probabilities (float32) for one 28x28 image, as `model.predict`
        would give them, in about a millisecond."""
        return self.forward(image28)[0]

    def forward(self, image28: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One pass through the network for one 28x28 image: (the ten probabilities,
        the activations entering the softmax layer), float32; the second is None for a
        model that does not end in a softmax Dense layer (`has_penultimate`)."""
        x = as_image(image28).reshape(1, *INPUT_SHAPE)
        out = self._forward_fn(x)
        if not self.has_penultimate:
            return _f32(out), None
        probabilities, penultimate = out
        return _f32(probabilities), _f32(penultimate)

    # - what the network sees -

    def feature_maps(self, image28: np.ndarray) -> dict[str, np.ndarray]:
        """Each conv layer's activations after ReLU, by layer name: for Lab 7 `conv1`
        (28, 28, 32) and `conv2` (14, 14, 64)."""
        x = as_image(image28).reshape(1, *INPUT_SHAPE)
        maps = self._features_fn(x)
        if not isinstance(maps, list | tuple):
            maps = [maps]
        return {name: m.numpy()[0] for name, m in zip(self.conv_names, maps, strict=True)}

    # - why -

    def saliency(
        self,
        image28: np.ndarray,
        target: int | None = None,
        method: str = "occlusion",
        measure: str = "log-odds",
    ) -> np.ndarray:
        """Which pixels drove the answer: a (28, 28) float32 map in [0, 1], 1 = most.

        `occlusion` (default) blacks out each 4x4 patch in turn and measures how much
        the target class's score drops; a pixel scores the average drop of the patches
        that covered it. All 169 occluded copies plus the original go through the network
        in one call. `gradient` is gradient x input: cheaper, noisier, and it only sees
        pixels that hold ink. The score is the target's log-odds by default (see
        MEASURES for why), or its plain probability. `target` defaults to the predicted
        class.
        """
        image = as_image(image28)
        if target is not None and not (
            isinstance(target, int | np.integer) and 0 <= target < NUM_CLASSES
        ):
            raise ValueError(f"target must be a class 0..{NUM_CLASSES - 1}, got {target!r}")
        if measure not in MEASURES:
            raise ValueError(f"unknown measure {measure!r}; use one of {', '.join(MEASURES)}")
        log_odds = measure == "log-odds"
        if method == "occlusion":
            return self._occlusion(image, target, log_odds)
        if method == "gradient":
            return self._gradient(image, target, log_odds)
        raise ValueError(f"unknown saliency method {method!r}; use 'occlusion' or 'gradient'")

    def _occlusion(self, image: np.ndarray, target: int | None, log_odds: bool) -> np.ndarray:
        batch = np.empty((len(self._keep) + 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        batch[0] = image
        np.multiply(self._keep, image, out=batch[1:])
        batch[1:] += self._fill
        probs = self._batch_fn(batch[..., None]).numpy().astype(np.float64)
        t = int(np.argmax(probs[0])) if target is None else int(target)
        score = probs[:, t]
        if log_odds:
            rest = np.delete(probs, t, axis=1).sum(axis=1)  # not 1 - p: that rounds to 0
            score = np.log(np.maximum(score, TINY)) - np.log(np.maximum(rest, TINY))
        drops = np.maximum(score[0] - score[1:], 0.0)  # only what lowered it
        heat = (drops @ self._cover) / self._cover_counts
        return _unit(heat.reshape(IMAGE_SIZE, IMAGE_SIZE))

    def _gradient(self, image: np.ndarray, target: int | None, log_odds: bool) -> np.ndarray:
        x = image.reshape(1, *INPUT_SHAPE)
        t = int(np.argmax(self.predict(image))) if target is None else int(target)
        g = self._grad_fn(x, tf.constant(t, tf.int32), tf.constant(log_odds)).numpy()
        return _unit(np.abs(g.reshape(IMAGE_SIZE, IMAGE_SIZE)))


def _f32(batch_of_one: tf.Tensor) -> np.ndarray:
    return np.asarray(batch_of_one)[0].astype(np.float32, copy=False)


def _unit(heat: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the maximum; a map with nothing in it stays all zeros."""
    top = float(heat.max())
    if top <= 0 or not math.isfinite(top):
        return np.zeros_like(heat, dtype=np.float32)
    return (heat / top).astype(np.float32)


# --- display -------------------------------------------------------------------------


def feature_grid(maps: np.ndarray, cols: int, gap: int = GRID_GAP) -> np.ndarray:
    """Tile (H, W, C) feature maps into one uint8 picture, channel by channel in rows of
    `cols`, 1-pixel `gap` lines between tiles (and in empty cells after the last one).

    Each channel is scaled by its own maximum: channels differ in scale by orders of
    magnitude, and on one shared scale most would look black. A channel that is all
    zero (a "dead" filter for this image) stays black. One image instead of one
    Matplotlib axes per channel keeps the Draw page fast.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"expected feature maps of shape (H, W, C), got {maps.shape}")
    if cols < 1:
        raise ValueError(f"cols must be at least 1, got {cols}")
    h, w, c = maps.shape
    cols = min(cols, c)
    rows = math.ceil(c / cols)
    top = maps.max(axis=(0, 1))
    scale = np.divide(255.0, top, out=np.zeros_like(top, dtype=np.float64), where=top > 0)
    tiles = np.clip(maps * scale, 0, 255).round().astype(np.uint8)

    grid = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), gap, dtype=np.uint8)
    for k in range(c):
        r, q = divmod(k, cols)
        grid[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = tiles[..., k]
    return grid
