"""CLI: python -m mnist_demo fetch-data | train | evaluate | predict | versions | runs | serve

User mistakes (bad arguments, missing or broken files) end with one line on stderr and
exit code 2; only real bugs produce tracebacks. TensorFlow is imported only by the
commands that need it, after the arguments are parsed: `--help` and a mistyped option
answer at once instead of after seconds of start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from math import nan
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

# TensorFlow's C++ start-up chatter is noise on a terminal a class is watching.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from mnist_demo.errors import DigitLabError

if TYPE_CHECKING:  # for annotations only: importing these at start-up costs seconds
    import keras

    from mnist_demo.data import Arrays
    from mnist_demo.live import LiveView
    from mnist_demo.runs import Run

EXIT_USER_ERROR = 2


def _import_tensorflow_quietly() -> None:
    """TensorFlow logs a few lines from C++ before its log settings apply (so
    TF_CPP_MIN_LOG_LEVEL can't stop them); they would bury a one-line error. Send file
    descriptor 2 to a temporary file while it imports, and replay it if the import fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras  # noqa: F401  (the import is the point)
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class UserError(DigitLabError):
    """A problem with the command line itself (not a file or setting the core checks)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def _load_data(verbose: bool = False) -> Arrays:
    from mnist_demo.data import load_mnist

    return load_mnist(progress=print if verbose else None)


def _resolve_model(args: argparse.Namespace) -> tuple[Path, str]:
    """--model PATH, --run ID, or the model the app's lab pages start on."""
    from mnist_demo.models import SHIPPED_KEY, default_model
    from mnist_demo.runs import RunRegistry

    if getattr(args, "model", None):
        return Path(args.model), str(args.model)
    registry = RunRegistry()
    if getattr(args, "run", None):
        return registry.model_path(args.run), f"run {args.run}"
    ref = default_model(registry)
    return ref.path, "the shipped default model" if ref.key == SHIPPED_KEY else f"run {ref.key}"


def _load_model(args: argparse.Namespace) -> tuple[keras.Model, str]:
    from mnist_demo.model import load_model

    path, label = _resolve_model(args)
    return load_model(path), label


# --- commands -------------------------------------------------------------------------


def cmd_fetch_data(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    from mnist_demo.data import load_mnist

    (x_train, _), (x_test, _) = load_mnist(progress=print, verbose=args.verbose)
    print(
        f"MNIST ready: {len(x_train)} training and {len(x_test)} test images, "
        f"checksums verified ({time.perf_counter() - start:.1f} s)"
    )


def cmd_versions(args: argparse.Namespace) -> None:
    import platform

    import keras
    import tensorflow as tf

    print(f"Python: {platform.python_version()}")
    print(f"TensorFlow: {tf.__version__}")
    print(f"Keras: {keras.__version__}")


def _progress_line(view: LiveView) -> str:
    run, width = view.run, 30
    filled = int(width * run.progress)
    eta = f"ETA {view.eta_s:4.0f}s" if view.eta_s is not None else ""
    last = view.batch_metrics[-1] if view.batch_metrics else {"loss": nan, "accuracy": nan}
    return (
        f"\repoch {run.epoch}/{run.config.epochs} batch {run.batch}/{run.batches_per_epoch} "
        f"[{'#' * filled}{'.' * (width - filled)}] loss {last['loss']:.4f} "
        f"acc {last['accuracy']:.4f} {eta}   "
    )


def _print_epochs(history: dict[str, list[float]], shown: int) -> int:
    """Print the epochs of `history` after the first `shown`; returns how many are shown."""
    for i in range(shown, len(history.get("loss", []))):
        h = history
        print(
            f"\nepoch {i + 1}: loss {h['loss'][i]:.4f} acc {h['accuracy'][i]:.4f} "
            f"val_loss {h['val_loss'][i]:.4f} val_acc {h['val_accuracy'][i]:.4f}",
            flush=True,  # a pipe (a log, a test) gets each epoch as it ends
        )
    return len(history.get("loss", []))


def cmd_train(args: argparse.Namespace) -> None:
    """Submit a run to the training engine and follow it from the store (or leave it
    running with --detach). Ctrl+C asks it to stop after its batch, as the page's Stop."""
    from mnist_demo.classroom import OWNER
    from mnist_demo.live import LiveFeed
    from mnist_demo.recipe import TrainConfig
    from mnist_demo.runs import RunRegistry
    from mnist_demo.serve import engine

    cfg = TrainConfig.for_preset(
        args.preset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        train_size=args.train_size,
        test_size=args.test_size,
        seed=args.seed,
    ).validate()
    output = Path(args.output) if args.output else None
    if output is not None:
        _check_output(output)  # before minutes of training, not after
    registry = RunRegistry()
    engine.require_engine(registry.store)
    if args.resume is not None:  # the run's own settings; the options above don't apply
        run = registry.resume(args.resume, role=OWNER, lesson_cap=False)
        shown_epochs = run.epochs_done
        print(f"run {run.id} resumed after epoch {shown_epochs}: {run.config}")
    else:
        run = registry.submit(cfg, role=OWNER, lesson_cap=False)
        print(f"run {run.id}: {cfg}")
        shown_epochs = 0
    if args.detach:
        print(f"run {run.id} is queued; follow it with `python -m mnist_demo runs`")
        return
    feed, live = LiveFeed(registry), sys.stdout.isatty()  # a log gets per-epoch lines only
    stopping = False
    while True:
        try:
            view = feed.view(run.id)
            if view.run.ended:
                break
            if live and view.run.status == "running":
                sys.stdout.write(_progress_line(view))
                sys.stdout.flush()
            shown_epochs = _print_epochs(view.run.history, shown_epochs)
            time.sleep(0.3)
        except KeyboardInterrupt:
            if not stopping:
                print("\nstopping after this batch (the last finished epoch is kept)...")
                registry.request_stop(run.id, role=OWNER)
                stopping = True
    run = registry.get(run.id)
    _print_epochs(run.history, shown_epochs)
    took = f" in {run.duration_s:.1f} s" if run.duration_s is not None else ""
    print(f"\nrun {run.id} {run.status}{took}")
    if run.status == "failed" or run.status == "interrupted":
        raise UserError(f"training {run.status}: {run.error}")
    if run.test_accuracy is not None:
        print(
            f"test loss {run.test_loss:.4f}, test accuracy {run.test_accuracy:.4f}, "
            f"misclassified {run.misclassified} of {run.test_n}"
        )
    if args.activate and run.has_model:
        registry.set_active(run.id, role=OWNER)
        print(f"run {run.id} is now the active model")
    if output is not None:
        export_run(run, output)


def _check_output(output: Path) -> None:
    if output.suffix != ".keras":
        raise UserError(f"--output must end in .keras (got {output})")
    if output.is_dir():
        raise UserError(f"--output {output} is a folder; give a file name ending in .keras")
    existing = next((p for p in output.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"--output {output}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK):
        raise UserError(f"--output {output}: cannot write in {existing}")


def export_run(run: Run, output: Path, trained_by: str = "python -m mnist_demo train") -> None:
    """Copy a run's model to OUTPUT and write OUTPUT.json beside it (what the shipped
    default model carries: settings, history, test metrics, data hash, versions);
    `trained_by` is the command that trained it (tools/train_robust.py exports too)."""
    import platform

    _import_tensorflow_quietly()
    import keras
    import numpy as np
    import tensorflow as tf

    from mnist_demo.data import SHA256
    from mnist_demo.model import load_model, save_model

    if not run.model_path or not run.has_model:
        raise UserError(f"{run.name} has no model to export")
    # Load and save again rather than copy: whatever the run's file holds, the export is
    # the inference model (no training-only layers), loadable by plain Keras.
    save_model(load_model(Path(run.model_path)), output)
    info = {
        "name": f"{run.config.preset} model, trained by `{trained_by}`",
        "run_id": run.id,
        "status": run.status,
        "config": run.config.to_dict(),
        "history": run.history,
        "test_loss": run.test_loss,
        "test_accuracy": run.test_accuracy,
        "misclassified": run.misclassified,
        "test_n": run.test_n,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.finished_at)),
        "training_seconds": round(run.duration_s or 0, 1),
        "data_sha256": SHA256,
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "machine": f"{os.cpu_count()} CPU cores",
    }
    info_path = output.with_suffix(".json")
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    print(f"exported {output} ({output.stat().st_size / 1e6:.1f} MB) and {info_path.name}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from mnist_demo.evaluation import evaluate

    model, label = _load_model(args)
    _, (x_test, y_test) = _load_data()
    result = evaluate(model, x_test, y_test).summary()
    if args.json:
        print(json.dumps(result))
        return
    print(f"model: {label}")
    print(f"(a) test loss: {result['test_loss']:.4f}")
    print(f"    test accuracy: {result['test_accuracy']:.4f}")
    print(
        f"(b) misclassified: {result['misclassified']} of {result['n']} "
        f"({100 * result['misclassified'] / result['n']:.2f} %)"
    )


def cmd_predict(args: argparse.Namespace) -> None:
    path = Path(args.image)
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    _import_tensorflow_quietly()  # after the checks that need none: their answer is instant
    from mnist_demo.preprocess import BlankImageError, DrawingTooSmallError, ImageFileError
    from mnist_demo.reader import Reader

    model_path, label = _resolve_model(args)  # the path too: the model's rule is beside it
    reader = Reader.load(model_path)
    try:
        reading = reader.read(path)  # a photo: decoded, the steps, one pass, the verdict
    except (ImageFileError, BlankImageError, DrawingTooSmallError) as e:  # name the file
        raise UserError(f"{path}: {e}") from e
    print(f"{reading.sentence} ({label})")
    for d, p in enumerate(reading.probabilities):
        print(f"  {d}: {p:.4f} {'#' * round(p * 40)}".rstrip())


def cmd_runs(args: argparse.Namespace) -> None:
    from mnist_demo import queue
    from mnist_demo.runs import RunRegistry

    if args.recover:
        registry, aside = RunRegistry.recover()
        if aside is not None:
            print(f"moved the old registry to {aside}; rebuilt it from the run folders")
        else:
            print("no registry file: rebuilt it from the run folders")
    else:
        registry = RunRegistry()
    registry.mark_interrupted()
    active = registry.active_run_id()
    runs = registry.list_runs()
    if not runs:
        print("no runs yet; train one with: python -m mnist_demo train")
    places = {run.id: place for place, run in enumerate(queue.waiting(registry), start=1)}
    for run in runs:
        acc = f"{run.test_accuracy:.4f}" if run.test_accuracy is not None else "-"
        mark = "*" if run.id == active else " "
        line = (
            f"{mark} {run.id:4d} {run.status:11s} {run.config.preset:9s} "
            f"epochs {run.epochs_done}/{run.config.epochs} acc {acc}"
        )
        if run.status == "running":
            done = f"batch {run.batch}/{run.batches_per_epoch} ({run.progress:.0%})"
            line += f"  epoch {run.epoch}, {done}"
        elif run.id in places:
            line += f"  #{places[run.id]} in the queue"
        print(line)


def cmd_engine(args: argparse.Namespace) -> None:
    """The training engine for this data home: a local Ray head (or the cluster at
    RAY_ADDRESS) and its warm trainers, until Ctrl+C."""
    from mnist_demo.serve import engine
    from mnist_demo.store import Store

    store = Store(lock_wait_s=engine.STORE_LOCK_WAIT_S)
    sys.exit(engine.run_supervisor(store, address=args.address, cpus=args.cpus))


def cmd_serve(args: argparse.Namespace) -> None:
    """Start the app (`make run`, `make class`): one supervisor (serve/hall.py) starts the
    training engine and one web server, solo on this machine (every browser is the
    instructor), or with --class for a room (every interface, students by default, the
    instructor's link printed here the way Jupyter prints its token link); it restarts a
    piece that dies, and Ctrl+C stops both in order."""
    from mnist_demo import config
    from mnist_demo.serve import hall

    sys.exit(
        hall.run(
            hall.Hall(
                config.home(),
                port=args.port,
                listen="0.0.0.0" if args.classroom else "127.0.0.1",
                solo=not args.classroom,
                instructor_code=_instructor_code() if args.classroom else "",
            ),
            students_line=args.classroom,
        )
    )


def cmd_hall(args: argparse.Namespace) -> None:
    """A lecture hall on this machine (`make hall`): PostgreSQL, the training engine,
    --replicas Streamlit servers and nginx in front with sticky sessions, until Ctrl+C,
    which stops them all in order (mnist_demo/serve/hall.py)."""
    from mnist_demo import config
    from mnist_demo.serve import hall

    sys.exit(
        hall.run(
            hall.Hall(
                config.home(),
                replicas=args.replicas,
                port=args.port,
                listen=args.listen,
                postgres=True,
                nginx=True,
                postgres_port=args.postgres_port,
                instructor_code=_instructor_code(),
            ),
            students_line=True,
        )
    )


def _instructor_code() -> str:
    """MNIST_DEMO_INSTRUCTOR_CODE, or a new random one (the printed link carries it)."""
    from mnist_demo import classroom

    code = os.environ.get(classroom.CODE_ENV, "").strip() or classroom.new_code()
    os.environ[classroom.CODE_ENV] = code  # instructor_link reads it
    return code


# --- parser ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Argument mistakes as one line, like every other user error (the usage block
    stays under --help, where it was asked for)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from mnist_demo import recipe
    from mnist_demo.data import TEST_SIZE, TRAIN_SIZE

    parser = _Parser(prog="python -m mnist_demo", description="Digit Lab: the Lab 7 MNIST CNN.")
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser("fetch-data", help="download, verify and cache MNIST")
    fetch.add_argument(
        "--verbose", action="store_true", help="also say which sources were tried and failed"
    )
    fetch.set_defaults(func=cmd_fetch_data, tensorflow=False)
    sub.add_parser("versions", help="Python, TensorFlow and Keras versions").set_defaults(
        func=cmd_versions, tensorflow=True
    )
    runs = sub.add_parser("runs", help="list training runs (* marks the active model)")
    runs.add_argument(
        "--recover",
        action="store_true",
        help="move an unreadable registry aside and rebuild it from the run folders",
    )
    runs.set_defaults(func=cmd_runs, tensorflow=False)

    serve = sub.add_parser("serve", help="start the app (solo, or --class for a room)")
    serve.add_argument(
        "--class",
        dest="classroom",
        action="store_true",
        help="serve the local network with instructor and student roles",
    )
    serve.add_argument("--port", type=_positive_int, default=8501)
    serve.set_defaults(func=cmd_serve, tensorflow=False)

    hall = sub.add_parser(
        "hall",
        help="a lecture hall: PostgreSQL, the engine, N app servers behind nginx (Ctrl+C stops)",
    )
    hall.add_argument("--replicas", type=_positive_int, default=2, help="app servers (2)")
    hall.add_argument("--port", type=_positive_int, default=8500, help="nginx's port (8500)")
    hall.add_argument("--listen", default="0.0.0.0", help="nginx's address (every interface)")
    hall.add_argument(
        "--postgres-port", type=_positive_int, default=5433, help="PostgreSQL's (5433 or free)"
    )
    hall.set_defaults(func=cmd_hall, tensorflow=False)

    engine = sub.add_parser(
        "engine", help="the training engine: a local Ray head and warm trainers (Ctrl+C stops)"
    )
    engine.add_argument(
        "--address", help="join this Ray cluster instead of starting one (or set RAY_ADDRESS)"
    )
    engine.add_argument("--cpus", type=_positive_int, help="CPUs the local head offers (all)")
    engine.set_defaults(func=cmd_engine, tensorflow=False)

    train = sub.add_parser("train", help="train a model and record the run")
    train.add_argument(
        "--preset",
        choices=list(recipe.PRESETS),
        default=recipe.DEFAULT_PRESET,
        help="the network, with its own recipe (epochs, batch size, learning rate) unless "
        "overridden below",
    )
    train.add_argument("--epochs", type=_positive_int, help="default: the preset's")
    train.add_argument("--batch-size", type=_positive_int, help="default: the preset's")
    train.add_argument("--learning-rate", type=_positive_float, help="default: the preset's")
    train.add_argument("--train-size", type=_positive_int, default=TRAIN_SIZE)
    train.add_argument("--test-size", type=_positive_int, default=TEST_SIZE)
    train.add_argument("--seed", type=int, default=recipe.LAB_SEED)
    train.add_argument("--activate", action="store_true", help="make it the active model")
    train.add_argument(
        "--detach", action="store_true", help="queue the run and return; it trains on"
    )
    train.add_argument("--output", help="also export the model to this .keras path")
    train.add_argument(
        "--resume",
        type=_positive_int,
        metavar="RUN",
        help="continue a stopped or interrupted run from its last finished epoch, with its "
        "own settings (the options above are ignored)",
    )
    # train only submits and follows (the engine trains): TensorFlow loads for --output
    train.set_defaults(func=cmd_train, tensorflow=False)

    for name, func, text in (
        ("evaluate", cmd_evaluate, "test loss, accuracy and misclassified count"),
        ("predict", cmd_predict, "classify one image file"),
    ):
        p = sub.add_parser(name, help=text)
        if name == "predict":
            p.add_argument("image", help="PNG, JPEG or WebP of one handwritten digit")
        which = p.add_mutually_exclusive_group()
        which.add_argument("--model", help="a .keras file (default: the active model)")
        which.add_argument("--run", type=_positive_int, help="a run id from `runs`")
        if name == "evaluate":
            p.add_argument("--json", action="store_true", help="one JSON object")
        p.set_defaults(func=func, tensorflow=name == "evaluate")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.tensorflow:
        _import_tensorflow_quietly()
    try:
        args.func(args)
    except DigitLabError as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
