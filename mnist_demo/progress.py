"""What a run is doing, in words a room can trust: its phase (queued, preparing,
training, scoring, saving) and where it is in its epochs, with a time estimate only once
this run's own batches have measured its pace.

Pure functions of a `runs.Run` (no Streamlit), shared by the Train page, a student's
experiment and the CLI, so each says the same thing and a test can check every phase.
"""

from __future__ import annotations

from mnist_demo.runs import Run

QUEUED, PREPARING, TRAINING, SCORING, SAVING = (
    "queued",
    "preparing",
    "training",
    "scoring",
    "saving",
)
PHASES = (QUEUED, PREPARING, TRAINING, SCORING, SAVING)


MISSING = "—"  # a value not known (yet): every table and figure shows this, never "None"


def duration(seconds: float | None) -> str:
    """'2 min 05 s', or MISSING for a time not known (a run still going)."""
    if seconds is None:
        return MISSING
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def phase(run: Run) -> str | None:
    """The phase the trainer recorded, or (before it records one, or an older trainer
    that never does) the one its status and counters imply. None: the run has ended."""
    if run.ended:
        return None
    if run.phase in PHASES:
        return run.phase
    if run.status == "queued":
        return QUEUED
    if not run.batches_per_epoch or run.epoch < 1:
        return PREPARING  # claimed, no batch yet: data and model are being made
    if run.epoch >= run.config.epochs and run.batch >= run.batches_per_epoch:
        return SCORING  # every batch is done: what is left is the test set
    return TRAINING


def position(run: Run) -> str:
    """'Epoch 2/12 · batch 130/469', leaving out what is not known yet (never 0/0)."""
    epoch = f"Epoch {max(run.epoch, 1)}/{run.config.epochs}"
    if run.batches_per_epoch <= 0:
        return epoch
    return f"{epoch} · batch {min(run.batch, run.batches_per_epoch)}/{run.batches_per_epoch}"


def progress_text(
    run: Run,
    *,
    elapsed_s: float = 0.0,
    eta_s: float | None = None,
    queue_place: int | None = None,
) -> str:
    """One line for the progress bar: the phase in words, where the run is, and the time
    left only when `eta_s` was measured (see `live.LiveFeed`); never a guess."""
    now = phase(run)
    if now == QUEUED:
        place = f": #{queue_place} in the queue" if queue_place else ""
        return f"Waiting for the training engine{place}"
    if now == PREPARING:
        return f"Preparing the data and building the model · {duration(elapsed_s)} elapsed"
    if now == SCORING:
        return f"Scoring the model on the {run.config.test_size:,} test images…"
    if now == SAVING:
        return "Saving the model…"
    if now == TRAINING:
        left = f"about {duration(eta_s)} left" if eta_s is not None else "measuring the pace…"
        return f"{position(run)} · {duration(elapsed_s)} elapsed · {left}"
    return f"{position(run)} · {run.status}"  # ended: the result says the rest
