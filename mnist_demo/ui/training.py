"""The Train page's pieces: the engine's state, the live run, a run's result, the queue,
the run history and the fine-tune form. The page arranges them; the core decides.

Every start, stop, resume and delete goes through the run registry, which checks the
role where the action happens (a locked button is not the guard)."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from mnist_demo import charts, finetune, progress
from mnist_demo.classroom import Action
from mnist_demo.live import LiveFeed, LiveView
from mnist_demo.models import available_models, usable
from mnist_demo.recipe import TRAIN_SIZE, TrainConfig
from mnist_demo.runs import Run, resumable
from mnist_demo.serve import engine
from mnist_demo.ui.classroom import locked_caption, role
from mnist_demo.ui.resources import class_store, registry
from mnist_demo.ui.sidebar import MODEL_KEY
from mnist_demo.ui.widgets import duration, epoch_charts, shown, user_errors, vega_lite

POLL_RUNNING_S = 1.0  # live charts while a run trains
# ...and while a run of at most one epoch of MNIST trains (the quick demo: seconds), so
# its chart moves smoothly rather than in four or five jumps
POLL_SHORT_RUN_S = 0.2
POLL_IDLE_S = 2.0  # notice a run started from another browser or server


# --- the engine ---------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def live_feed(url: str) -> LiveFeed:
    """One reader of live runs per server process, shared by all its sessions."""
    return LiveFeed(registry())


def feed() -> LiveFeed:
    return live_feed(registry().store.url)


def engine_status() -> engine.EngineStatus:
    """The engine serving this store, as its lease says. Only reads: a web server never
    starts a process (a plain `streamlit run` has no engine until `make run` or
    `python -m mnist_demo engine` starts one; the page says so)."""
    return engine.status(registry().store)


def engine_line(status: engine.EngineStatus) -> None:
    """Nothing while the engine runs (how many runs it holds is a fact for the README,
    not the room; the queue is shown with the live run); a plain warning when it does
    not."""
    if not status.running:
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


METRIC_W = 150  # px: a live number's width
PROJECTOR_METRIC_W = 240  # ...in the projector view's larger type


def queue_place(run: Run) -> int | None:
    waiting = [r.id for r in feed().focus().queue]
    return waiting.index(run.id) + 1 if run.id in waiting else None


def live_run(view: LiveView) -> None:
    """The followed run, arranged for the projector: what it is doing in words and large
    numbers, the batch chart, then the lab's per-epoch charts. An ended run shows its
    result once, instead of the live numbers."""
    run = view.run
    st.subheader(f"Run {run.id} · {run.config.preset} · {run.status}")
    if run.ended:
        show_result(run)
    else:
        live_state(view)
    if view.batch_metrics:
        vega_lite(charts.batch_chart(view.batch_metrics))
    if run.history.get("loss"):
        epoch_charts(run.history)


def live_state(view: LiveView) -> None:
    """A queued or running run: the progress bar captioned with its phase (progress.py:
    no estimate before it is measured), stop, and its numbers in large type."""
    run = view.run
    text = progress.progress_text(
        run, elapsed_s=view.elapsed_s, eta_s=view.eta_s, queue_place=queue_place(run)
    )
    bar, stop = st.columns([5, 1], vertical_alignment="bottom")
    bar.progress(run.progress, text=text)
    with stop:
        if view.stop_requested:
            st.caption("Stopping after this batch…")
        else:
            stop_button(run, "Cancel" if run.status == "queued" else "Stop")
    if run.status == "queued":
        return
    show_fine_tune(run, run.history.get(finetune.HISTORY_KEY))
    # A row that wraps (two a line on a phone) rather than columns, which a phone stacks
    # one a line and pushes the chart out of sight.
    width = PROJECTOR_METRIC_W if projector_on() else METRIC_W
    with st.container(horizontal=True, gap="medium", key="live-numbers"):
        st.metric("Epoch", f"{max(run.epoch, 1)} of {run.config.epochs}", width=width)
        # MISSING until the trainer knows how many batches an epoch has: never "0 of 0"
        batches = f"{run.batch} of {run.batches_per_epoch}" if run.batches_per_epoch else None
        st.metric("Batch", shown(batches), width=width)
        last = view.batch_metrics[-1] if view.batch_metrics else {}
        st.metric(
            "Accuracy",
            shown(last.get("accuracy"), "{:.2%}"),
            help="On this epoch's training images so far (Keras's running mean).",
            width=width,
        )
        st.metric("Loss", shown(last.get("loss"), "{:.4f}"), width=width)
        if run.history.get("val_accuracy"):
            st.metric(
                f"Test accuracy after epoch {len(run.history['val_accuracy'])}",
                f"{run.history['val_accuracy'][-1]:.2%}",
                width=2 * width,
            )


def stop_button(run: Run, label: str) -> None:
    may_stop = locked_caption(Action.STOP_TRAINING)
    if st.button(label, icon=":material/stop:", key=f"stop-{run.id}", disabled=not may_stop):
        with user_errors():
            registry().request_stop(run.id, role=role())
        st.rerun()


def queue_text(queue: list[Run]) -> str:
    """'Waiting: #1 run 6 (quick), #2 run 7 (lab7)', or '' when nothing waits."""
    if not queue:
        return ""
    return "Waiting: " + ", ".join(
        f"#{i} run {r.id} ({r.config.preset})" for i, r in enumerate(queue, start=1)
    )


def queue_table() -> None:
    text = queue_text(feed().focus().queue)
    if text:
        st.markdown(f":material/hourglass_top: {text}")


# --- starting a run -------------------------------------------------------------------------

PENDING_KEY = "train-pending-run"  # a run asked for while another trains or waits

# The presets as a teacher reads them (their internals are in the README and `--help`).
PRESET_LABELS = {
    "lab7": "Lab 7 — the lab's network",
    "lab7-5x5": "Lab 7 with a 5×5 second convolution",
    "robust": "Robust — reads drawings better (25 epochs)",
    "quick": "Quick — 99 % in one epoch",
}


def preset_label(preset: str) -> str:
    return PRESET_LABELS.get(preset, preset)


RESULT_FIRST_S = 600  # a run's result stays on the first screen this long after it ends


def run_first(run: Run | None) -> bool:
    """Whether the page starts with the run (the room watches it) rather than the form:
    while it is queued or training, and for RESULT_FIRST_S after it ended (the room reads
    the result; the page does not flip to a form the moment the run ends)."""
    if run is None:
        return False
    return not run.ended or time.time() - (run.finished_at or 0) < RESULT_FIRST_S


def busy() -> Run | None:
    """The run training or waiting, if any: a new one would queue behind it."""
    followed = focus()
    return followed if followed is not None and not followed.ended else None


def request_run(config: TrainConfig) -> None:
    """Start `config` now when the engine is free. When a run is going, keep the request
    and ask first (`confirm_pending`): a second click on Quick demo used to queue another
    run with nothing but a small "Waiting" line to say so."""
    if busy() is not None:
        st.session_state[PENDING_KEY] = config
        return
    with user_errors(stop=False):
        registry().submit(config, role=role())
        st.rerun()


def confirm_pending() -> None:
    """The question for a run asked for while another is going: the queue, then queue it
    or not."""
    config: TrainConfig | None = st.session_state.get(PENDING_KEY)
    if config is None:
        return
    going = busy()
    with st.container(border=True, key="confirm-queue"):
        if going is None:
            st.markdown(f"The engine is free now. Start the **{preset_label(config.preset)}** run?")
        else:
            doing = "is training" if going.status == "running" else "is waiting to start"
            st.warning(
                f"Run {going.id} ({going.config.preset}) {doing}. A new run would wait until "
                "the runs before it end. Queue it?",
                icon=":material/hourglass_top:",
            )
            text = queue_text(feed().focus().queue)
            if text:
                st.markdown(text)
        yes, no, _ = st.columns([1.3, 1, 2])
        if yes.button("Queue it" if going else "Start it", type="primary", key="confirm-yes"):
            st.session_state.pop(PENDING_KEY, None)
            with user_errors(stop=False):
                registry().submit(config, role=role())
                st.rerun()
        if no.button("Don't queue", key="confirm-no"):
            st.session_state.pop(PENDING_KEY, None)
            st.rerun()


# --- the projector view ---------------------------------------------------------------------

PROJECTOR_PARAM = "projector"  # ?projector=1: the same page in larger type
# Larger numbers and words for the back of the room (the run already fits the first
# screen of a 1280x720 projector: .streamlit/config.toml's paddingTop).
PROJECTOR_CSS = """
.stMainBlockContainer { max-width: none !important; }
[data-testid="stMetricValue"], [data-testid="stMetricValue"] * {
  font-size: 3rem !important; line-height: 1.15 !important; }
[data-testid="stMetricLabel"] p { font-size: 1.35rem !important; }
[data-testid="stProgress"] p { font-size: 1.5rem !important; }
.stMainBlockContainer h3 { font-size: 2.1rem !important; }
.stMainBlockContainer p, .stMainBlockContainer li { font-size: 1.25rem; }
"""


def projector_on() -> bool:
    return st.query_params.get(PROJECTOR_PARAM) == "1"


def projector_view() -> bool:
    """A toggle (kept in the address as ?projector=1, so the projector's bookmark opens
    it) for larger type; returns whether it is on."""
    on = projector_on()

    def switch() -> None:
        if st.session_state["projector-toggle"]:
            st.query_params[PROJECTOR_PARAM] = "1"
        else:
            st.query_params.pop(PROJECTOR_PARAM, None)

    st.toggle(
        "Projector view",
        value=on,
        key="projector-toggle",
        on_change=switch,
        help="Larger numbers and words, for the back of the room.",
    )
    if on:
        st.html(f"<style>{PROJECTOR_CSS}</style>")
        # opened from the bookmark: the whole width for the run (the menu stays a click away)
        st.set_page_config(initial_sidebar_state="collapsed")
    return on


# --- a finished run -------------------------------------------------------------------------

ACTIVATE_ERROR_KEY = "activate_error"


def show_result(run: Run) -> None:
    if run.status == "failed":
        st.error(f"Run {run.id} failed: {run.error}", icon="⚠️")
    elif run.status == "interrupted":
        st.warning(
            f"Run {run.id} was interrupted (its training stopped unexpectedly) after "
            f"{run.epochs_done} finished epochs; the model of the last finished epoch is kept.",
        )
    elif run.status == "stopped" and run.error:
        st.caption(run.error)
    resume_button(run, "latest")
    if run.test_accuracy is None:
        return
    width = PROJECTOR_METRIC_W if projector_on() else METRIC_W
    with st.container(horizontal=True, gap="medium", key="result-numbers"):  # wraps on a phone
        st.metric("Test accuracy", f"{run.test_accuracy:.2%}", width=width)
        st.metric("Test loss", f"{run.test_loss:.4f}", width=width)
        st.metric("Misclassified", f"{run.misclassified} of {run.test_n:,}", width=width * 3 // 2)
        st.metric("Duration", duration(run.duration_s), width=width)
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
                "fine-tuned from": shown(r.fine_tune.base if r.fine_tune else None),
                "epochs": f"{r.epochs_done}/{r.config.epochs}",
                "batch": r.config.batch_size,
                "learning rate": r.config.learning_rate,
                "images": r.config.train_size,
                "seed": r.config.seed,
                "test accuracy": shown(r.test_accuracy, "{:.2%}"),
                "misclassified": shown(r.misclassified, "{:,}"),
                "duration": duration(r.duration_s),
                "error": shown(r.error or None),
            }
            for r in runs
        ]
    )


HISTORY_COLUMNS = {"learning rate": st.column_config.NumberColumn(format="%.4f")}
