"""Typed run records: every field of TrainConfig, FineTuneRecord and Run goes to JSON and
through the store (SQLite and PostgreSQL) and comes back exactly; an unknown field is
refused; presets carry their recipe."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mnist_demo.classroom import Role
from mnist_demo.recipe import (
    PRESETS,
    Accuracies,
    FineTuneRecord,
    InvalidConfigError,
    Network,
    TrainConfig,
)
from mnist_demo.runs import Run, RunRegistry

pytest_plugins = ["tests.conftest_pg"]  # `store_url`: the store test on SQLite and PostgreSQL

# Every field set to a value other than its default, so a field that is dropped or
# defaulted on the way back shows.
CONFIG = TrainConfig(
    preset="lab7-5x5",  # a changed network is one of the lab's two
    epochs=3,
    batch_size=64,
    learning_rate=0.0123456789,
    train_size=1234,
    test_size=567,
    seed=99,
    network=Network(
        conv1_filters=16,
        conv1_kernel=3,
        conv2_filters=48,
        conv2_kernel=5,
        dropout_conv=0.125,
        dense_units=333,
        dropout_dense=0.375,
    ),
    optimizer="sgd",
)
BEFORE = Accuracies(class_held_out=0.615, mnist=0.9931)
FINE_TUNE = FineTuneRecord(
    base="Run 4 · lab7",
    base_path="/data/runs/4/model.keras",
    class_set=2,
    version=17,
    train_drawings=41,
    held_out_drawings=9,
    train_students=8,
    held_out_students=2,
    class_share=0.3,
    augmentation="Something else",
    schedule="constant",
    before=BEFORE,
    snapshot_file="class_snapshot.npz",
)


def through_json(d: dict) -> dict:
    return json.loads(json.dumps(d))


def test_every_train_config_field_round_trips_through_json():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig()
    assert all(getattr(CONFIG, n) != getattr(defaults, n) for n in names)
    assert set(CONFIG.to_dict()) == names
    assert TrainConfig.from_dict(through_json(CONFIG.to_dict())) == CONFIG
    # the network's every field differs from the lab's, so each one is carried
    lab = Network()
    assert all(
        getattr(CONFIG.network, f.name) != getattr(lab, f.name) for f in dataclasses.fields(Network)
    )
    assert isinstance(TrainConfig.from_dict(through_json(CONFIG.to_dict())).network, Network)


@pytest.mark.parametrize("before", [BEFORE, None], ids=["measured", "not-yet"])
def test_every_fine_tune_field_round_trips_through_json(before):
    record = dataclasses.replace(FINE_TUNE, before=before)
    back = FineTuneRecord.from_dict(through_json(record.to_dict()))
    assert back == record
    assert isinstance(back.before, Accuracies) or before is None


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        (TrainConfig, {**CONFIG.to_dict(), "colour": "blue"}),
        (FineTuneRecord, {**FINE_TUNE.to_dict(), "extra": 1}),
        (FineTuneRecord, {**FINE_TUNE.to_dict(), "before": {"class_held_out": 1, "x": 2}}),
    ],
    ids=["config", "fine-tune", "before"],
)
def test_an_unknown_field_is_refused(cls, data):
    with pytest.raises(InvalidConfigError, match="has no field"):
        cls.from_dict(data)


def test_a_missing_required_field_is_refused():
    data = FINE_TUNE.to_dict()
    del data["base_path"]
    with pytest.raises(InvalidConfigError, match="base_path"):
        FineTuneRecord.from_dict(data)


def test_every_run_field_round_trips_through_the_store(store_url, tmp_path):
    registry = RunRegistry(store_url)
    created = registry.submit(CONFIG, role=Role.INSTRUCTOR, fine_tune=FINE_TUNE, lesson_cap=False)
    stored = registry.get(created.id)
    # Every field to a non-default value, written back through the registry's own
    # conversion, then read from the database again.
    values = {
        "status": "stopped",
        "history": {"loss": [0.5, 0.25], "accuracy": [0.75, 0.875]},
        "epochs_done": 2,
        "finished_at": 123.5,
        "test_loss": 0.125,
        "test_accuracy": 0.9875,
        "misclassified": 125,
        "test_n": 567,
        "model_path": str(tmp_path / "m.keras"),
        "error": "stopped by the instructor",
        "pid": 4321,
        "heartbeat": 120.25,
        "owner": "student-7",
        "priority": 3,
        "queued_at": 100.5,
        "started_at": 101.5,
        "resume": True,
        "host": "trainer-host",
        "worker": "worker-2",
        "stop_requested_at": 122.5,
        "epoch": 2,
        "batch": 17,
        "batches_per_epoch": 20,
        "class_accuracy": 0.8125,
        "class_n": 48,
        "phase": "scoring",
        "lease_token": 7,
        "network": "192.0.2.7",
        "budget_s": 90.0,
        "auto_resumes": 1,
    }
    run = dataclasses.replace(stored, **values)
    names = {f.name for f in dataclasses.fields(Run)}
    assert set(values) | {"id", "created_at", "config", "fine_tune"} == names  # all covered
    from mnist_demo import runs as runs_module
    from mnist_demo.store import runs as runs_table

    with registry.store.write() as con:
        con.execute(
            runs_table.update()
            .where(runs_table.c.id == run.id)
            .values(**runs_module._run_values(run))
        )
    back = registry.get(run.id)
    assert back == run
    assert back.to_dict() == through_json(run.to_dict())
    assert back.config == CONFIG and back.fine_tune == FINE_TUNE


def test_presets_carry_their_recipe_and_take_overrides():
    quick = TrainConfig.for_preset("quick")
    assert (quick.preset, quick.learning_rate, quick.epochs) == ("quick", 0.01, 1)
    for name, preset in PRESETS.items():
        config = TrainConfig.for_preset(name)
        assert (config.epochs, config.batch_size, config.learning_rate) == (
            preset.epochs,
            preset.batch_size,
            preset.learning_rate,
        )
    changed = TrainConfig.for_preset("quick", epochs=3, learning_rate=None, seed=5)
    assert (changed.epochs, changed.learning_rate, changed.seed) == (3, 0.01, 5)
    with pytest.raises(InvalidConfigError, match="unknown preset"):
        TrainConfig.for_preset("nonsense")
