"""The CLI as a user meets it: `python -m mnist_demo ...` in a subprocess.

Its contract: a user mistake (bad argument, missing or broken file, blank or non-image
picture, unreadable registry) ends with exit code 2 and ONE `error: ...` line on stderr,
never a traceback; argparse's own errors also exit 2. Every call gets a fresh, empty
MNIST_DEMO_HOME so no test sees another's runs (or an active model someone set), and
MNIST_DEMO_DATA stays the verified cache conftest points at; `train` goes to the
session's training engine (conftest.engine), on its own data home, so those tests find
their runs by the ids the CLI prints. Each call imports TensorFlow (3-5 s), so the calls
are few and each checks as much as it can.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from mnist_demo.classroom import OWNER
from mnist_demo.config import DEFAULT_MODEL_PATH
from mnist_demo.data import CACHE_NAME, SHA256
from mnist_demo.recipe import TrainConfig
from tests.conftest import wait_for
from tools.drawn_digits import on_the_draw_page
from tools.non_digits import non_digit_canvas

REPO = Path(__file__).resolve().parents[1]
SHIPPED = "the shipped default model"  # how the CLI names the model with no run active

# TensorFlow's C++ start-up logging reaches stderr however TF_CPP_MIN_LOG_LEVEL is set
# (TF 2.21: "WARNING: All log messages before absl::InitializeLog() ..." plus glog-style
# "I0000 00:00:... port.cc:153] oneDNN custom operations are on ..."). It is not the CLI's
# own output, so the one-line rule is checked on what remains. Only these exact shapes
# are dropped: an `error:` line or a traceback is never mistaken for them.
_TF_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.]+:\d+\] )"
)


def run_cli(*args: object, home: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, MNIST_DEMO_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "mnist_demo", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_stderr(result: subprocess.CompletedProcess) -> list[str]:
    """The CLI's own stderr lines (TensorFlow's start-up chatter and blank lines dropped)."""
    return [
        line for line in result.stderr.splitlines() if line.strip() and not _TF_NOISE.match(line)
    ]


def assert_user_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, nothing on stdout, one `error:` line on stderr naming every needle."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = cli_stderr(result)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle.lower() in line.lower(), (needle, line)
    return line


def assert_argparse_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """An argument mistake is one `error:` line pointing at --help, exit 2 (no usage
    block: that is what --help is for)."""
    line = assert_user_error(result, *needles)
    assert line.endswith("(see `python -m mnist_demo train --help`)"), line


def assert_clean_success(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr


def _dist_version(*names: str) -> str:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise AssertionError(f"none of {names} is installed")


# --- versions, fetch-data ---------------------------------------------------------------


def test_versions_are_the_running_interpreters(tmp_path):
    result = run_cli("versions", home=tmp_path / "home")
    assert_clean_success(result)
    lines = result.stdout.splitlines()
    assert f"Python: {platform.python_version()}" in lines
    assert f"TensorFlow: {_dist_version('tensorflow-cpu', 'tensorflow')}" in lines
    assert f"Keras: {_dist_version('keras')}" in lines


def test_fetch_data_verifies_the_cache_without_rewriting_it(tmp_path):
    cache = Path(os.environ["MNIST_DEMO_DATA"]) / CACHE_NAME
    assert cache.is_file(), "conftest points MNIST_DEMO_DATA at the verified cache"
    before = cache.stat().st_mtime_ns
    result = run_cli("fetch-data", home=tmp_path / "home")
    assert_clean_success(result)
    assert result.stdout.count("\n") == 1, result.stdout  # a quiet terminal: one line
    assert "60000 training and 10000 test images" in result.stdout
    assert "checksums verified" in result.stdout
    assert cache.stat().st_mtime_ns == before, "a verified cache is read, not written again"


# --- evaluate -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_eval(tmp_path_factory) -> dict:
    """`evaluate --json` once on the shipped model (an empty home has no active run)."""
    result = run_cli("evaluate", "--json", home=tmp_path_factory.mktemp("home"))
    assert_clean_success(result)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


@pytest.mark.slow
def test_evaluate_json_on_the_shipped_model(shipped_eval):
    assert set(shipped_eval) == {"test_loss", "test_accuracy", "misclassified", "n"}
    assert shipped_eval["n"] == 10000
    assert shipped_eval["misclassified"] == 68
    assert shipped_eval["test_accuracy"] >= 0.992
    assert shipped_eval["test_accuracy"] == pytest.approx(1 - 68 / 10000)
    assert 0 < shipped_eval["test_loss"] < 0.05


@pytest.mark.slow
def test_evaluate_plain_prints_the_same_numbers(tmp_path, shipped_eval):
    result = run_cli("evaluate", home=tmp_path / "home")
    assert_clean_success(result)
    e = shipped_eval
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert f"model: {SHIPPED}" in lines
    assert f"(a) test loss: {e['test_loss']:.4f}" in lines
    assert f"test accuracy: {e['test_accuracy']:.4f}" in lines
    share = 100 * e["misclassified"] / e["n"]
    assert f"(b) misclassified: {e['misclassified']} of {e['n']} ({share:.2f} %)" in lines


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(lambda p: None, "does not exist", id="missing"),
        pytest.param(lambda p: p.write_text("not a model\n"), "is damaged", id="text"),
    ],
)
def test_evaluate_a_bad_model_file_is_one_line(tmp_path, make, needle):
    model = tmp_path / "model.keras"
    make(model)
    result = run_cli("evaluate", "--model", model, home=tmp_path / "home")
    assert_user_error(result, str(model), needle)
    assert result.stdout == ""


def test_evaluate_an_unknown_run(tmp_path):
    result = run_cli("evaluate", "--run", 999, home=tmp_path / "home")
    assert_user_error(result, "no run with id 999")


# --- train, runs --------------------------------------------------------------------------


def run_id_of(stdout: str) -> int:
    """The id `train` prints first ("run 7: TrainConfig(...)" or "run 7 resumed ...")."""
    found = re.search(r"^run (\d+)[: ]", stdout, re.M)
    assert found, stdout
    return int(found[1])


def listing_row(home: Path, run_id: int) -> str:
    listing = run_cli("runs", home=home)
    assert_clean_success(listing)
    rows = [line for line in listing.stdout.splitlines() if re.match(rf"[* ]\s+{run_id}\s", line)]
    assert len(rows) == 1, listing.stdout
    return rows[0]


def test_train_activate_export_then_runs(engine, tmp_path):
    """Submitted to the session's engine, followed from the store until it ends."""
    out = tmp_path / "export" / "tiny.keras"  # a folder that does not exist yet
    result = run_cli(
        "train",
        *("--train-size", 300, "--test-size", 100, "--epochs", 1, "--batch-size", 32),
        *("--activate", "--output", out),
        home=engine.home,
        timeout=300,
    )
    assert_clean_success(result)
    run_id = run_id_of(result.stdout)
    assert f"run {run_id} finished" in result.stdout
    # the last epoch's line too, though the run ends well within one poll of it
    last_epoch = re.search(r"^epoch 1: loss [\d.]+ .* val_acc [\d.]+$", result.stdout, re.M)
    assert last_epoch, result.stdout
    found = re.search(r"test accuracy (\d\.\d{4}), misclassified (\d+) of 100", result.stdout)
    assert found, result.stdout
    accuracy, misclassified = float(found[1]), int(found[2])
    assert accuracy == pytest.approx(1 - misclassified / 100, abs=1e-4)
    assert f"run {run_id} is now the active model" in result.stdout
    run = engine.registry.get(run_id)
    assert run.pid is not None and run.worker.startswith("trainer-")  # trained by the engine

    assert zipfile.is_zipfile(out), "the export is a .keras (zip) file"
    assert "config.json" in zipfile.ZipFile(out).namelist()
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["run_id"] == run_id
    assert info["config"]["train_size"] == 300
    assert info["config"]["test_size"] == 100
    assert info["config"]["epochs"] == 1
    assert info["config"]["batch_size"] == 32
    assert len(info["history"]["loss"]) == 1
    assert len(info["history"]["val_accuracy"]) == 1
    assert info["test_accuracy"] == pytest.approx(accuracy, abs=5e-5)
    assert info["test_n"] == 100
    assert {"python", "tensorflow", "keras"} <= set(info["versions"])
    assert info["versions"]["keras"] == _dist_version("keras")
    assert info["data_sha256"] == SHA256

    row = listing_row(engine.home, run_id)
    assert row.startswith("*"), f"the --activate run is marked active: {row!r}"
    assert re.match(rf"\*\s+{run_id}\s+finished\s", row), row
    assert "epochs 1/1" in row
    assert f"acc {accuracy:.4f}" in row


def test_train_detach_queues_the_run_and_returns(engine):
    args = ("--train-size", 300, "--test-size", 100, "--epochs", 2, "--batch-size", 32)
    result = run_cli("train", *args, "--detach", home=engine.home)
    assert_clean_success(result)
    run_id = run_id_of(result.stdout)
    assert f"run {run_id} is queued; follow it with `python -m mnist_demo runs`" in result.stdout
    assert "epoch 1:" not in result.stdout and "finished" not in result.stdout
    registry = engine.registry
    run = wait_for(lambda: (r := registry.get(run_id)).ended and r, 180, "the detached run")
    assert run.status == "finished" and run.epochs_done == 2, run.error
    assert re.match(rf" \s*{run_id}\s+finished\s.*epochs 2/2", listing_row(engine.home, run_id))


def test_train_without_a_running_engine_is_one_line_naming_make_run(tmp_path):
    home = tmp_path / "home"
    for extra in ((), ("--detach",)):
        result = run_cli("train", "--train-size", 300, "--test-size", 100, *extra, home=home)
        assert_user_error(result, "the training engine is not running", "make run")
        assert result.stdout == ""
    assert not list(home.glob("runs/*")), "nothing was queued"


@pytest.mark.parametrize(
    ("args", "argparse_error", "needles"),
    [
        pytest.param(["--epochs", "0"], True, ["--epochs", "must be 1 or more"], id="epochs-0"),
        pytest.param(
            ["--batch-size", "1000", "--train-size", "500"],
            False,
            ["batch size 1000", "500"],
            id="batch-over-subset",
        ),
        pytest.param(["--preset", "nope"], True, ["--preset", "'nope'"], id="unknown-preset"),
        pytest.param(["--seed", str(2**32)], False, ["seed must be between"], id="seed-too-large"),
        pytest.param(["--output", "/tmp"], False, ["--output must end in .keras"], id="out-dir"),
    ],
)
def test_train_refuses_bad_settings(tmp_path, args, argparse_error, needles):
    home = tmp_path / "home"
    result = run_cli("train", *args, home=home)
    if argparse_error:
        assert_argparse_error(result, *needles)
    else:
        assert_user_error(result, *needles)
    assert not list(home.glob("runs/*")), "a refused configuration records no run"


def test_runs_with_a_corrupt_registry_names_the_file(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    registry = home / "runs.sqlite"
    garbage = bytes(range(256)) * 20
    registry.write_bytes(garbage)
    result = run_cli("runs", home=home)
    assert_user_error(result, str(registry))
    assert registry.read_bytes() == garbage, "the CLI never deletes or rewrites the user's file"
    assert "runs --recover" in result.stderr


# --- predict ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, mnist) -> Path:
    """Real MNIST test digits as a user would hand them over, and some that are not."""
    folder = tmp_path_factory.mktemp("pictures")
    _, (x_test, y_test) = mnist
    assert (int(y_test[0]), int(y_test[1])) == (7, 2)
    # x_test[0], a 7: MNIST's own light ink on black, scaled up to a 280x280 PNG.
    Image.fromarray(x_test[0]).resize((280, 280), Image.Resampling.BILINEAR).save(
        folder / "seven.png"
    )
    # x_test[1], a 2: dark ink on white paper, as a photo or scan would be, in JPEG.
    big = Image.fromarray(x_test[1]).resize((280, 280), Image.Resampling.BILINEAR)
    Image.fromarray(255 - np.asarray(big)).convert("RGB").save(folder / "two.jpg", quality=90)
    Image.new("L", (280, 280), 255).save(folder / "blank.png")
    # A smiley, drawn as on the Draw page: not a digit at all.
    face = non_digit_canvas("face", np.random.default_rng([7, 0]), x_test[:9])
    Image.fromarray(on_the_draw_page(face)).save(folder / "face.png")
    (folder / "text.png").write_text("this is not a picture\n")
    return folder


@pytest.mark.parametrize(("name", "digit"), [("seven.png", 7), ("two.jpg", 2)])
def test_predict_a_real_digit(tmp_path, pictures, name, digit):
    result = run_cli("predict", pictures / name, home=tmp_path / "home")
    assert_clean_success(result)
    first, *rest = result.stdout.splitlines()
    assert re.match(rf"{digit}, \d+% confident \({SHIPPED}\)$", first), first
    probs = {}
    for line in rest:
        found = re.match(r"\s+(\d): (\d\.\d{4})\b", line)
        assert found, line
        probs[int(found[1])] = float(found[2])
    assert list(probs) == list(range(10))  # printed 0 to 9, in order
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=2e-3)
    assert max(probs, key=probs.get) == digit


def test_predict_says_when_it_is_not_a_digit(tmp_path, pictures):
    result = run_cli("predict", pictures / "face.png", home=tmp_path / "home")
    assert_clean_success(result)
    first, *rest = result.stdout.splitlines()
    found = re.match(
        rf"That doesn't look like a digit to me — the closest is (\d), (\d+)% \({SHIPPED}\)$",
        first,
    )
    assert found, first
    probs = [float(re.match(r"\s+\d: (\d\.\d{4})\b", line)[1]) for line in rest]
    assert len(probs) == 10  # the probabilities still show
    assert int(found[1]) == int(np.argmax(probs))
    assert abs(int(found[2]) - 100 * max(probs)) <= 0.5 + 1e-4  # the same, rounded


def test_predict_with_a_damaged_rule_file_is_one_line(tmp_path, pictures):
    model = tmp_path / "lab7.keras"
    shutil.copy(DEFAULT_MODEL_PATH, model)
    (tmp_path / "lab7.novelty.json").write_text('{"version": 1')
    result = run_cli("predict", pictures / "seven.png", "--model", model, home=tmp_path / "home")
    line = assert_user_error(result, "lab7.novelty.json")
    assert "delete it" in line and "tools" not in line  # the core never sends users to tools/
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("blank.png", r"no ink|blank|empty"),
        ("text.png", r"not an image"),
        ("missing.png", r"is not a file|does not exist|not found"),
    ],
)
def test_predict_refuses_what_is_not_a_digit(tmp_path, pictures, name, pattern):
    path = pictures / name
    result = run_cli("predict", path, home=tmp_path / "home")
    line = assert_user_error(result, str(path))
    assert re.search(pattern, line, re.IGNORECASE), line
    assert result.stdout == ""


def _small_cnn(input_shape: tuple[int, ...], classes: int) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(lambda: _small_cnn((32, 32, 3), 10), "(32, 32, 3)", id="colour-32x32"),
        pytest.param(lambda: _small_cnn((28, 28, 1), 3), "10 class probabilities", id="3-classes"),
    ],
)
def test_predict_with_a_model_that_is_not_a_digit_classifier_is_one_line(
    tmp_path, pictures, make, needle
):
    path = tmp_path / "other.keras"
    make().save(path)
    result = run_cli("predict", pictures / "seven.png", "--model", path, home=tmp_path / "home")
    assert_user_error(result, needle)
    assert result.stdout == ""


# --- start-up -------------------------------------------------------------------------------

_IMPORTS_AFTER = """
import sys
from mnist_demo.__main__ import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras"})
print("heavy imports:", heavy)
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["train", "--help"], ["train", "--epochs", "0"], ["nope"]]
)
def test_help_and_argument_errors_answer_without_importing_tensorflow(args):
    """`--help` must come back at once: importing TensorFlow takes seconds (the CLI
    imports it only for a command that needs it, after parsing)."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_AFTER, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "heavy imports: []" in result.stdout, result.stdout
    if "--help" in args:
        assert "usage: python -m mnist_demo" in result.stdout
    else:  # a mistake: one line, no usage block
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_ctrl_c_stops_the_run_cleanly_and_keeps_activate_and_output(engine, tmp_path):
    """Ctrl+C asks the engine's run to stop after its batch (as the page's Stop): the run
    is stopped with its last finished epoch, and --activate / --output still happen."""
    out = tmp_path / "kept.keras"
    args = ("--epochs", 30, "--train-size", 1000, "--test-size", 200, "--batch-size", 50)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_demo", "train", *map(str, args), "--activate",
         "--output", str(out)],
        cwd=REPO,
        env=engine.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`make test &`) inherits SIGINT ignored, and
        # Python then never raises KeyboardInterrupt: give the CLI the terminal's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 1:"):
            proc.send_signal(signal.SIGINT)
            break
    rest, stderr = proc.communicate(timeout=120)
    stdout = "".join(lines) + rest
    assert proc.returncode == 0, (stdout, stderr)
    assert "Traceback" not in stderr, stderr
    run_id = run_id_of(stdout)
    assert "stopping after this batch" in stdout
    assert f"run {run_id} stopped" in stdout, stdout
    assert f"run {run_id} is now the active model" in stdout
    assert out.exists() and out.with_suffix(".json").exists()
    run = engine.registry.get(run_id)
    assert run.status == "stopped" and run.error is None, run.error
    assert 1 <= run.epochs_done < 30 and run.has_model
    assert re.match(rf"\*\s+{run_id}\s+stopped\s", listing_row(engine.home, run_id))


def test_the_cli_resumes_a_stopped_run(engine):
    registry = engine.registry
    cfg = TrainConfig(epochs=4, batch_size=32, train_size=600, test_size=200, seed=7)
    run = registry.submit(cfg, role=OWNER)
    wait_for(lambda: registry.get(run.id).epochs_done >= 2, 180, "two epochs", every=0.01)
    registry.request_stop(run.id, role=OWNER)
    stopped = wait_for(lambda: (r := registry.get(run.id)).ended and r, 60, "the stop")
    kept = stopped.epochs_done
    if stopped.status == "finished":  # the machine outran the stop: nothing to test
        pytest.skip("the run finished before the stop reached it")
    assert stopped.status == "stopped" and 2 <= kept < 4

    result = run_cli("train", "--resume", run.id, home=engine.home, timeout=300)
    assert_clean_success(result)
    assert f"run {run.id} resumed after epoch {kept}" in result.stdout
    epoch_lines = re.findall(r"^epoch (\d+):", result.stdout, re.M)
    assert epoch_lines == [str(e) for e in range(kept + 1, cfg.epochs + 1)], result.stdout
    assert f"run {run.id} finished" in result.stdout
    run = registry.get(run.id)
    assert run.status == "finished" and run.epochs_done == cfg.epochs
    assert not registry.resume_path(run.id).exists()

    again = run_cli("train", "--resume", run.id, home=engine.home)
    assert_user_error(again, "has finished")
