"""The progress line says what a run is doing, never a guess: no time left before this
run's own batches have measured the pace, each phase named, never "batch 0/0"."""

import re

import pytest

from mnist_demo import live, progress
from mnist_demo.recipe import TrainConfig
from mnist_demo.runs import Run

ESTIMATE = re.compile(r"\d+ s left|min .* left")


def run(**fields) -> Run:
    values = {"id": 3, "created_at": 0.0, "status": "running", "config": TrainConfig()}
    return Run(**{**values, **fields})


def test_a_queued_run_says_its_place_in_the_queue():
    text = progress.progress_text(run(status="queued", phase="queued"), queue_place=2)
    assert text == "Waiting for the training engine: #2 in the queue"


@pytest.mark.parametrize("phase", [None, "preparing"])
def test_a_claimed_run_before_its_first_batch_is_preparing_not_batch_0_of_0(phase):
    text = progress.progress_text(run(phase=phase), elapsed_s=4, eta_s=None)
    assert text.startswith("Preparing the data and building the model")
    assert "0/0" not in text and "batch" not in text and not ESTIMATE.search(text)


def test_training_before_the_pace_is_measured_shows_no_estimate():
    r = run(phase="training", epoch=1, batch=3, batches_per_epoch=469)
    text = progress.progress_text(r, elapsed_s=9, eta_s=None)
    assert text == "Epoch 1/12 · batch 3/469 · 9 s elapsed · measuring the pace…"


def test_training_with_a_measured_pace_shows_the_time_left():
    r = run(phase="training", epoch=2, batch=100, batches_per_epoch=469)
    text = progress.progress_text(r, elapsed_s=40, eta_s=125)
    assert text == "Epoch 2/12 · batch 100/469 · 40 s elapsed · about 2 min 05 s left"


@pytest.mark.parametrize("phase", [None, "scoring"])
def test_after_the_last_batch_the_scoring_on_the_test_set_is_named(phase):
    r = run(phase=phase, epoch=12, batch=469, batches_per_epoch=469)
    text = progress.progress_text(r, elapsed_s=200, eta_s=0.0)
    assert text == "Scoring the model on the 10,000 test images…"


def test_saving_is_named():
    r = run(phase="saving", epoch=12, batch=469, batches_per_epoch=469)
    assert progress.progress_text(r) == "Saving the model…"


def test_a_recorded_phase_wins_over_the_counters():
    # the trainer says it is preparing (a resumed run loading its checkpoint), though its
    # counters still hold the last epoch's
    r = run(phase="preparing", epoch=3, batch=469, batches_per_epoch=469)
    assert progress.phase(r) == "preparing"


def test_no_batch_count_without_batches_per_epoch():
    r = run(phase="training", epoch=1, batch=0, batches_per_epoch=0)
    assert progress.position(r) == "Epoch 1/12"


def test_an_ended_run_has_no_phase():
    assert progress.phase(run(status="finished", phase=None)) is None


# --- the measured pace (live.eta) ---------------------------------------------------------


def training(batch: int, epoch: int = 1) -> Run:
    return run(phase="training", epoch=epoch, batch=batch, batches_per_epoch=100)


def test_no_estimate_until_enough_of_this_runs_batches_are_measured():
    first_seen = (100.0, 1)  # batch 1 seen at t=100 s (after preparing, however long)
    assert live.eta(training(5), first_seen, now=110.0) is None  # 4 batches: too few
    assert live.eta(training(60), first_seen, now=100.5) is None  # 0.5 s: too short
    assert live.eta(training(5), None, now=200.0) is None  # never seen training


def test_the_estimate_comes_from_the_measured_pace_only():
    # 50 batches in 5 s: 0.1 s a batch; 12 epochs of 100 batches, 51 done
    left = live.eta(training(51), (100.0, 1), now=105.0)
    assert left == pytest.approx(0.1 * (1200 - 51))


def test_no_estimate_while_scoring():
    r = run(phase="scoring", epoch=12, batch=100, batches_per_epoch=100)
    assert live.eta(r, (0.0, 1), now=100.0) is None
