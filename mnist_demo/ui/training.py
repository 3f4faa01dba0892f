"""The Train page's pieces: the engine's state, the live run, a run's result, the queue,
the run history and the fine-tune form. The page arranges them; the core decides.

Every start, stop, resume and delete goes through the run registry, which checks the
role where the action happens (a locked button is not the guard)."""

from __future__ import annotations

import os
import time

import pandas as pd
import streamlit as st

from mnist_demo import charts, engine, finetune
from mnist_demo.classroom import Action
from mnist_demo.live import LiveFeed, LiveView
from mnist_demo.recipe import TRAIN_SIZE
from mnist_demo.models import available_models, usable
from mnist_demo.runs import Run, resumable
from mnist_demo.ui.classroom import locked_caption, role
from mnist_demo.ui.resources import class_store, registry
from mnist_demo.ui.sidebar import MODEL_KEY
from mnist_demo.ui.widgets import duration, epoch_charts, user_errors, vega_lite

POLL_RUNNING_S = 1.0  # live charts while a run trains
# ...and while a run of at most one epoch of MNIST trains (the quick demo: seconds), so
# its chart moves smoothly rather than in four or five jumps
POLL_SHORT_RUN_S = 0.2
POLL_IDLE_S = 2.0  # notice a run started from another browser or server
MANAGED_ENV = "MNIST_DEMO_ENGINE_MANAGED"  # set by `serve`: it started the engine itself


# --- the engine ---------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def live_feed(url: str) -> LiveFeed:
    """One reader of live runs per server process, shared by all its sessions."""
    return LiveFeed(registry())


def feed() -> LiveFeed:
    return live_feed(registry().store.url)


@st.cache_resource(show_spinner=False)
def _engine_started_by(url: str) -> list[float]:
    return []  # when this process last started an engine for this store


def engine_status() -> engine.EngineStatus:
    """The engine serving this store. A server started on its own (`streamlit run`,
    not `make run`) starts one the first time it finds none, in the background."""
    store = registry().store
    status = engine.status(store)
    started = _engine_started_by(store.url)
    recently = started and time.time() - started[-1] < 90
    if not status.running and not recently and not os.environ.get(MANAGED_ENV):
        engine.start_in_background(store.home)
        started.append(time.time())
    return status


def engine_line(status: engine.EngineStatus) -> None:
    if status.running:
        queued = len(feed().focus().queue)  # the process's shared read, not one per page run
        st.caption(
            f":material/memory: Training engine: {status.capacity} "
            + ("run" if status.capacity == 1 else "runs")
            + " at a time"
            + (f" · {queued} waiting" if queued else "")
        )
    else:
        st.error(
            f"{engine.not_running_message()[0].upper()}{engine.not_running_message()[1:]}. "
            "Runs can be queued; they start once it runs. Nothing recorded is lost.",
            icon="⚠️",
        )


# --- the live run -------------------------------------------------------------------------


def focus() -> Run | None:
    """The run the page follows (see LiveFeed.focus: one read per process, not per
    session)."""
    return feed().focus().followed


def poll_seconds(run: Run | None, projector: bool = False) -> float:
    """How often a session's live view reruns. The projector (the instructor) follows a
    short run five times a second; students once a second: thirty students at five a
    second cost the server more than it has on two cores, and the room watches the
    projector."""
    if run is None or run.ended:
        return POLL_IDLE_S
    cfg = run.config
    short = cfg.epochs * cfg.train_size <= TRAIN_SIZE
    return POLL_SHORT_RUN_S if short and projector else POLL_RUNNING_S


def live_run(view: LiveView) -> None:
    """The followed run: progress, stop, the batch chart and the lab's epoch charts."""
    run = view.run
    st.subheader(f"Run {run.id} · {run.config.preset} · {run.status}")
    if run.status == "queued":
        waiting = [r.id for r in feed().focus().queue]
        place = waiting.index(run.id) + 1 if run.id in waiting else 1
        st.info(f"Waiting for the training engine: #{place} in the queue.", icon="⏳")
        stop_button(run, "Cancel")
        return
    if run.status == "running":
        show_fine_tune(run, run.history.get(finetune.HISTORY_KEY))
        eta = f" · about {duration(view.eta_s)} left" if view.eta_s is not None else ""
        st.progress(
            run.progress,
            text=f"Epoch {max(run.epoch, 1)}/{run.config.epochs} · batch {run.batch}/"
            f"{run.batches_per_epoch} · {duration(view.elapsed_s)} elapsed{eta}",
        )
        if view.stop_requested:
            st.caption("Stopping after this batch…")
        else:
            stop_button(run, "Stop")
    if view.batch_metrics:
        last = view.batch_metrics[-1]
        a, b, c = st.columns(3)
        a.metric("Batch loss", f"{last['loss']:.4f}")
        b.metric("Batch accuracy", f"{last['accuracy']:.2%}")
        if run.history.get("val_accuracy"):
            c.metric("Test accuracy (last epoch)", f"{run.history['val_accuracy'][-1]:.2%}")
        vega_lite(charts.batch_chart(view.batch_metrics))
    elif run.status == "running":
        st.caption("Preparing the data and building the model…")
    if run.history.get("loss"):
        epoch_charts(run.history)
    if run.ended:
        show_result(run)


def stop_button(run: Run, label: str) -> None:
    may_stop = locked_caption(Action.STOP_TRAINING)
    if st.button(label, icon=":material/stop:", key=f"stop-{run.id}", disabled=not may_stop):
        with user_errors():
            registry().request_stop(run.id, role=role())
        st.rerun()


def queue_table() -> None:
    queue = feed().focus().queue
    if queue:
        st.caption(
            "Waiting: "
            + ", ".join(
                f"#{i} run {r.id} ({r.config.preset})" for i, r in enumerate(queue, start=1)
            )
        )


# --- a finished run -------------------------------------------------------------------------

ACTIVATE_ERROR_KEY = "activate_error"


def show_result(run: Run) -> None:
    if run.status == "failed":
        st.error(f"Run {run.id} failed: {run.error}", icon="⚠️")
    elif run.status == "interrupted":
        st.warning(
            f"Run {run.id} was interrupted (its worker stopped) after {run.epochs_done} "
            "finished epochs; the model of the last finished epoch is kept.",
        )
    elif run.status == "stopped" and run.error:
        st.caption(run.error)
    resume_button(run, "latest")
    if run.test_accuracy is None:
        return
    a, b, c, d = st.columns(4)
    a.metric("Test accuracy", f"{run.test_accuracy:.2%}")
    b.metric("Test loss", f"{run.test_loss:.4f}")
    c.metric("Misclassified", f"{run.misclassified} of {run.test_n:,}")
    d.metric("Duration", duration(run.duration_s))
    show_fine_tune(run)
    if usable(run):  # the same rule as the sidebar: never a run still training
        is_active = registry().active_run_id() == run.id
        label = "Active model" if is_active else "Make this the active model"
        make_active_button(run.id, label, disabled=is_active)


def make_active(run_id: int) -> None:
    """Server-wide default for new sessions, and this session's model right away (a
    callback: it runs before the sidebar's model choice is drawn)."""
    try:
        registry().set_active(run_id, role=role())
    except Exception as e:  # shown under the button on the rerun
        st.session_state[ACTIVATE_ERROR_KEY] = str(e)
    else:
        st.session_state[MODEL_KEY] = str(run_id)


def make_active_button(run_id: int, label: str, disabled: bool = False) -> None:
    may = locked_caption(Action.SET_ACTIVE_MODEL)
    st.button(
        label,
        key=f"activate-{label}",
        disabled=disabled or not may,
        on_click=make_active,
        args=(run_id,),
        icon=":material/check_circle:",
    )
    error = st.session_state.pop(ACTIVATE_ERROR_KEY, None)
    if error:
        st.error(error, icon="⚠️")


def resume_button(run: Run, where: str) -> None:
    """Queue a stopped or interrupted run to continue from its last finished epoch."""
    if not resumable(run, registry()):
        return
    may_resume = locked_caption(Action.START_TRAINING)
    if st.button(
        f"Resume run {run.id} from epoch {run.epochs_done + 1}",
        key=f"resume-{where}-{run.id}",
        disabled=not may_resume,
        icon=":material/play_arrow:",
    ):
        with user_errors():
            registry().resume(run.id, role=role())
        st.rerun()


def show_fine_tune(run: Run, class_by_epoch: list[float] | None = None) -> None:
    """Before -> after for a fine-tune run: what it learnt, and whether it forgot."""
    result = finetune.result(run)
    if result is None:
        return
    st.caption(
        f"Fine-tuned from {result.base} on {result.train_drawings} class drawings; "
        f"{result.held_out_drawings} held out to measure the gain."
    )
    before, after = result.before, result.after
    if after is None:
        line = f"Held-out class drawings before: {before.class_held_out:.1%}"
        if class_by_epoch:
            line += " · after each epoch: " + ", ".join(f"{a:.1%}" for a in class_by_epoch)
        st.write(line)
        return
    st.write(f"**{result.summary()}**")
    a, b = st.columns(2)
    a.metric(
        "Held-out class drawings",
        f"{after.class_held_out:.1%}",
        delta=f"{100 * (after.class_held_out - before.class_held_out):+.1f} points",
    )
    b.metric(
        "MNIST test",
        f"{after.mnist:.2%}",
        delta=f"{100 * (after.mnist - before.mnist):+.2f} points",
    )


# --- fine-tuning ----------------------------------------------------------------------------


def _students(sessions: frozenset[str]) -> str:
    return f"{len(sessions)} student" + ("" if len(sessions) == 1 else "s")


def fine_tune_form(lesson_max_epochs: int) -> None:
    split = finetune.class_split(class_store())
    st.write(
        "Start from a trained model and train a few more epochs on MNIST mixed with the "
        f"class's drawings ({finetune.CLASS_SHARE:.0%} of every epoch, tilted, shifted and "
        "re-sized as they are seen). About one student in five is held out: the model "
        "never trains on their drawings, so they show what it learnt. The result compares "
        "before and after, on those drawings and on the MNIST test set."
    )
    with st.form("fine_tune", border=False):
        models = {m.key: m for m in available_models(registry(), role=role())}
        keys = list(models)
        chosen = st.session_state.get(MODEL_KEY)
        f1, f2 = st.columns([3, 1])
        base_key = f1.selectbox(
            "Start from",
            keys,
            index=keys.index(chosen) if chosen in keys else 0,
            format_func=lambda k: models[k].label,
        )
        epochs = f2.number_input(
            "Fine-tune epochs",
            min_value=1,
            max_value=lesson_max_epochs,
            value=finetune.FINE_TUNE_EPOCHS,
            step=1,
        )
        st.caption(
            f"Class set {split.set_id}: {split.n_train} drawings to train on "
            f"({_students(split.train_sessions)}), {split.n_held_out} held out "
            f"({_students(split.held_out_sessions)}). A snapshot is taken at start: "
            "drawings sent meanwhile wait for the next run."
        )
        problem = split.problem()
        if problem:
            st.caption(f":material/info: {problem}")
        may = locked_caption(Action.START_TRAINING)
        if st.form_submit_button(
            "Start fine-tuning", disabled=not may, icon=":material/play_arrow:"
        ):
            with user_errors():
                finetune.submit_fine_tune(
                    models[base_key], registry(), class_store(), role=role(), epochs=int(epochs)
                )
            st.rerun()


# --- history ------------------------------------------------------------------------------


def history_frame(runs: list[Run], active_id: int | None) -> pd.DataFrame:
    """The run history as the page's table shows it."""
    return pd.DataFrame(
        [
            {
                "run": r.id,
                "status": r.status + (" · active" if r.id == active_id else ""),
                "preset": r.config.preset,
                "fine-tuned from": r.fine_tune.base if r.fine_tune else "",
                "epochs": f"{r.epochs_done}/{r.config.epochs}",
                "batch": r.config.batch_size,
                "learning rate": r.config.learning_rate,
                "images": r.config.train_size,
                "seed": r.config.seed,
                "test accuracy": r.test_accuracy,
                "misclassified": r.misclassified,
                "duration": duration(r.duration_s),
                "error": r.error or "",
            }
            for r in runs
        ]
    )


HISTORY_COLUMNS = {
    "test accuracy": st.column_config.NumberColumn(format="percent"),
    "learning rate": st.column_config.NumberColumn(format="%.4f"),
}
