"""Lab 7's training recipe, the presets (each with its own recipe), and the typed records
a run carries: its TrainConfig and, for a fine-tune, a FineTuneRecord.

Kept apart from model.py so the CLI can show them in `--help`, and the run registry can
read and write them, without importing TensorFlow (seconds); model.py builds each
preset's layers, this names them and says how they are trained.

A record is stored as JSON and must come back exactly as it went in: `to_dict` /
`from_dict` round-trip every field (tests/test_records.py), and an unknown or missing
field is an error, not a silent default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from mnist_demo.errors import DigitLabError

LAB_SEED = 7
LAB_EPOCHS = 12
LAB_BATCH_SIZE = 128
LAB_LEARNING_RATE = 1e-3  # Keras's Adam default, which the lab uses
TRAIN_SIZE = 60_000  # MNIST's (data.py has the same facts; this module imports no NumPy)
TEST_SIZE = 10_000
MAX_EPOCHS = 100


class InvalidConfigError(DigitLabError, ValueError):
    """A training setting is out of range; the message says which and why."""


@dataclass(frozen=True)
class Preset:
    """A network (model.py builds it) and the recipe it is meant to be trained with."""

    description: str
    epochs: int = LAB_EPOCHS
    batch_size: int = LAB_BATCH_SIZE
    learning_rate: float = LAB_LEARNING_RATE
    schedule: str = "constant"  # or "warm-up + cosine" (model.py builds it)


# Lab 7's text says the second convolution is 5x5, its code says (2, 2): `lab7` follows
# the code (the workbook's numbers came from it).
PRESETS: dict[str, Preset] = {
    "lab7": Preset("Lab 7 as coded: second conv 2x2"),
    "lab7-5x5": Preset("Lab 7 as written: second conv 5x5"),
    "robust": Preset(
        "for drawings: augmentation, batch norm, 3x3 convs, LR schedule",
        epochs=25,
        schedule="warm-up + cosine",
    ),
    # One pass over the 60,000 images. The learning rate is the peak of a warm-up +
    # cosine cycle over that epoch (a constant 0.01 would bounce around); chosen on
    # held-out training digits.
    "quick": Preset(
        "99 % in one epoch: small CNN, batch norm, one-cycle LR (seconds)",
        epochs=1,
        learning_rate=0.01,
        schedule="warm-up + cosine",
    ),
}
DEFAULT_PRESET = "lab7"
LAB_PRESETS = ("lab7", "lab7-5x5")  # the workbook's network, which an experiment changes


@dataclass(frozen=True)
class Network:
    """The lab's network with the values a student may change (its defaults are the
    workbook's code: Conv2D 32 5x5 -> pool -> Conv2D 64 2x2 -> pool -> dropout 0.25 ->
    flatten -> dense 1000 -> dropout 0.5 -> 10 softmax)."""

    conv1_filters: int = 32
    conv1_kernel: int = 5
    conv2_filters: int = 64
    conv2_kernel: int = 2
    dropout_conv: float = 0.25
    dense_units: int = 1000
    dropout_dense: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OPTIMIZERS = {"adam": "Adam", "sgd": "SGD with momentum 0.9"}


@dataclass(frozen=True)
class TrainConfig:
    """What a run trains: the lab's recipe by default (lab7, 12 epochs, batch 128, Adam
    1e-3, seed 7). `TrainConfig.for_preset` takes a preset's own recipe."""

    preset: str = DEFAULT_PRESET
    epochs: int = LAB_EPOCHS
    batch_size: int = LAB_BATCH_SIZE
    learning_rate: float = LAB_LEARNING_RATE
    train_size: int = TRAIN_SIZE
    test_size: int = TEST_SIZE
    seed: int = LAB_SEED
    # A student's experiment: the lab's network with their values (preset lab7), and the
    # optimizer; None and "adam" are the presets' own.
    network: Network | None = None
    optimizer: str = "adam"

    @classmethod
    def for_preset(cls, preset: str, **overrides: Any) -> TrainConfig:
        """The preset's recipe, with any of its values overridden (None: keep the
        preset's)."""
        if preset not in PRESETS:
            raise InvalidConfigError(
                f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
            )
        p = PRESETS[preset]
        base = cls(preset, epochs=p.epochs, batch_size=p.batch_size, learning_rate=p.learning_rate)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self, max_epochs: int = MAX_EPOCHS) -> TrainConfig:
        problems = []
        if self.preset not in PRESETS:
            problems.append(f"preset must be one of {', '.join(PRESETS)}")
        if not 1 <= self.epochs <= max_epochs:
            problems.append(f"epochs must be between 1 and {max_epochs}")
        if not 1 <= self.train_size <= TRAIN_SIZE:
            problems.append(f"training subset must be between 1 and {TRAIN_SIZE} images")
        if not 1 <= self.test_size <= TEST_SIZE:
            problems.append(f"test subset must be between 1 and {TEST_SIZE} images")
        if self.batch_size < 1:
            problems.append("batch size must be at least 1")
        elif self.batch_size > self.train_size:
            problems.append(
                f"batch size {self.batch_size} is larger than the training subset "
                f"({self.train_size} images)"
            )
        if not 0 < self.learning_rate <= 1:
            problems.append("learning rate must be in (0, 1]")
        if not 0 <= self.seed < 2**32:
            problems.append("seed must be between 0 and 4294967295")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.network is not None and self.preset not in LAB_PRESETS:
            problems.append("a changed network is the lab's own (preset lab7 or lab7-5x5)")
        if problems:
            raise InvalidConfigError("; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        network = data.get("network")
        data["network"] = None if network is None else _from_dict(Network, network)
        return _from_dict(cls, data)

    def changes_from(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Field -> (other's value, this one's) wherever they differ."""
        mine, theirs = self.flat(), other.flat()
        return {k: (theirs[k], v) for k, v in mine.items() if theirs[k] != v}

    def flat(self) -> dict[str, Any]:
        """Every value, the network's included (the lab's when there is none)."""
        d = self.to_dict()
        d.pop("network")
        return {**d, **(self.network or Network()).to_dict()}


# The Train page's one-click "Quick demo": the quick preset's own recipe on all 60,000.
QUICK_DEMO = TrainConfig.for_preset("quick")


@dataclass(frozen=True)
class Accuracies:
    class_held_out: float
    mnist: float


@dataclass(frozen=True)
class FineTuneRecord:
    """What a fine-tune run starts from and learns on (finetune.py): a base model, a
    snapshot of the class set taken when it was submitted (a file in the run folder), and
    the base model's accuracies before, measured by the worker when the run starts."""

    base: str  # the base model's name, for people
    base_path: str
    class_set: int
    version: int  # of the class set, when the snapshot was taken
    train_drawings: int
    held_out_drawings: int
    train_students: int
    held_out_students: int
    class_share: float
    augmentation: str = "DrawingAugmentation"
    schedule: str = "cosine decay to 0"
    before: Accuracies | None = None
    snapshot_file: str = ""  # the drawings to train on and hold out, an .npz in the run folder

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FineTuneRecord:
        data = dict(data)
        before = data.get("before")
        data["before"] = None if before is None else _from_dict(Accuracies, before)
        return _from_dict(cls, data)


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InvalidConfigError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    try:
        return cls(**data)
    except TypeError as e:
        raise InvalidConfigError(f"{cls.__name__}: {e}") from e
