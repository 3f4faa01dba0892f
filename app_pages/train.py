"""Train: the instructor trains the CNN live; every browser on the server sees the same
run and finds it in the history afterwards. Only the instructor starts, stops, deletes
and sets the active model (the core checks it again: a locked button is not the guard)."""

import pandas as pd
import streamlit as st

from mnist_demo import charts, finetune, ui
from mnist_demo.classroom import Action
from mnist_demo.data import TRAIN_SIZE
from mnist_demo.errors import DigitLabError
from mnist_demo.recipe import LAB_BATCH_SIZE, LAB_EPOCHS, LAB_LEARNING_RATE, LAB_SEED, PRESETS
from mnist_demo.runs import Run, available_models, usable
from mnist_demo.training import (
    LESSON_MAX_EPOCHS,
    MAX_EPOCHS,
    QUICK_DEMO,
    TrainConfig,
    current_job,
    resumable,
    resume_training,
    start_training,
)

SUBSET_SIZES = [500, 1000, 5000, 10000, 30000, TRAIN_SIZE]
POLL_RUNNING_S = 1.0  # live charts while a run trains
# ...and while a run of at most one epoch of MNIST trains (the quick demo: seconds), so
# its chart moves smoothly rather than in four or five jumps
POLL_SHORT_RUN_S = 0.2
POLL_IDLE_S = 3.0  # notice a run started from another browser
ACTIVATE_ERROR_KEY = "activate_error"

ui.page_setup(__file__)
st.title("Train the CNN")
registry = ui.registry()
job = current_job(registry)
running = job is not None and job.is_running


# --- settings ---------------------------------------------------------------------------

may_start = ui.locked_caption(Action.START_TRAINING)
demo_text, demo_button = st.columns([4, 1], vertical_alignment="center")
demo_text.write(
    "**Quick demo** — the `quick` preset: a small CNN with batch norm and a one-cycle "
    f"learning rate, one pass over the {TRAIN_SIZE:,} training images. It passes 99 % "
    "test accuracy in seconds, while the room watches."
)
quick = demo_button.button(
    "Quick demo",
    type="primary",
    icon=":material/bolt:",
    disabled=running or not may_start,
    width="stretch",
)

with st.form("settings", border=True):
    st.write("**Settings** — the defaults are the lab's recipe (about 3–4 minutes on 2 cores).")
    c1, c2, c3 = st.columns(3)
    preset = c1.selectbox("Preset", list(PRESETS), format_func=lambda p: f"{p} — {PRESETS[p]}")
    epochs = c2.number_input("Epochs", min_value=0, max_value=MAX_EPOCHS, value=LAB_EPOCHS, step=1)
    batch_size = c3.number_input(
        "Batch size", min_value=0, max_value=TRAIN_SIZE, value=LAB_BATCH_SIZE, step=32
    )
    c4, c5, c6 = st.columns(3)
    train_size = c4.select_slider(
        "Training images",
        options=SUBSET_SIZES,
        value=TRAIN_SIZE,
        format_func=lambda n: f"{n:,}",
        help="A subset trains faster: 10,000 images take about a sixth of the time.",
    )
    learning_rate = c5.number_input(
        "Learning rate (Adam)",
        min_value=0.0,
        max_value=1.0,
        value=LAB_LEARNING_RATE,
        step=0.0005,
        format="%.4f",
    )
    seed = c6.number_input("Seed", min_value=0, value=LAB_SEED, step=1)
    start = st.form_submit_button(
        "Start training",
        type="primary",
        disabled=running or not may_start,
        icon=":material/play_arrow:",
    )


def set_long_runs() -> None:
    try:
        registry.allow_long_runs(st.session_state.long_runs, role=ui.role())
    except DigitLabError as e:  # the session was locked meanwhile
        st.session_state.long_runs_error = str(e)


if ui.is_instructor():
    st.toggle(
        f"Allow long runs (more than {LESSON_MAX_EPOCHS} epochs)",
        value=registry.long_runs_allowed(),
        key="long_runs",
        on_change=set_long_runs,
        help="Off, a run ends within a lesson. On, up to 100 epochs hold the server's cores "
        "for an hour or more.",
    )


# --- fine-tune on the class's drawings --------------------------------------------------


def students(sessions: frozenset[str]) -> str:
    return f"{len(sessions)} student" + ("" if len(sessions) == 1 else "s")


with st.expander("Fine-tune on the class drawings", icon=":material/school:"):
    split = finetune.class_split(ui.class_store())
    st.write(
        "Start from a trained model and train a few more epochs on MNIST mixed with the "
        f"class's drawings ({finetune.CLASS_SHARE:.0%} of every epoch, tilted, shifted and "
        "re-sized as they are seen). About one student in five is held out: the model "
        "never trains on their drawings, so they show what it learnt. The result compares "
        "before and after, on those drawings and on the MNIST test set."
    )
    with st.form("fine_tune", border=False):
        models = {m.key: m for m in available_models(registry)}
        keys = list(models)
        chosen = st.session_state.get(ui.MODEL_KEY)
        f1, f2 = st.columns([3, 1])
        base_key = f1.selectbox(
            "Start from",
            keys,
            index=keys.index(chosen) if chosen in keys else 0,
            format_func=lambda k: models[k].label,
        )
        ft_epochs = f2.number_input(
            "Fine-tune epochs",
            min_value=1,
            max_value=LESSON_MAX_EPOCHS,
            value=finetune.FINE_TUNE_EPOCHS,
            step=1,
        )
        st.caption(
            f"Class set {split.set_id}: {split.n_train} drawings to train on "
            f"({students(split.train_sessions)}), {split.n_held_out} held out "
            f"({students(split.held_out_sessions)}). A snapshot is taken at start: "
            "drawings sent meanwhile wait for the next run."
        )
        problem = split.problem()
        if problem:
            st.caption(f":material/info: {problem}")
        may_fine_tune = ui.locked_caption(Action.START_TRAINING)
        start_fine_tune = st.form_submit_button(
            "Start fine-tuning",
            disabled=running or not may_fine_tune,
            icon=":material/play_arrow:",
        )

if running:
    s = job.snapshot()
    st.info(
        f"Run {s.run_id} ({s.config.preset}, {s.config.epochs} "
        f"epoch{'s' if s.config.epochs != 1 else ''} on "
        f"{s.config.train_size:,} images) is training. One run at a time: stop it below or "
        "wait for it to finish.",
        icon="⏳",
    )

if start or quick:
    config = (
        QUICK_DEMO
        if quick
        else TrainConfig(
            preset=preset,
            epochs=int(epochs),
            batch_size=int(batch_size),
            learning_rate=float(learning_rate),
            train_size=int(train_size),
            seed=int(seed),
        )
    )
    try:
        start_training(config, registry, ui.dataset(), role=ui.role())
    except DigitLabError as e:
        st.error(f"Not started: {e}", icon="⚠️")
    else:
        st.rerun()

if start_fine_tune:
    try:
        with st.spinner("Scoring the model before fine-tuning…"):
            finetune.start_fine_tune(
                models[base_key],
                registry,
                ui.class_store(),
                ui.dataset(),
                role=ui.role(),
                epochs=int(ft_epochs),
            )
    except DigitLabError as e:
        st.error(f"Not started: {e}", icon="⚠️")
    else:
        st.rerun()


# --- the live run -----------------------------------------------------------------------


def make_active(run_id: int) -> None:
    """Server-wide default for new sessions, and this session's model right away (a
    callback: it runs before the sidebar's model choice is drawn)."""
    try:
        registry.set_active(run_id, role=ui.role())
    except DigitLabError as e:
        st.session_state[ACTIVATE_ERROR_KEY] = str(e)
    else:
        st.session_state[ui.MODEL_KEY] = str(run_id)


def make_active_button(run_id: int, label: str, disabled: bool = False) -> None:
    may = ui.locked_caption(Action.SET_ACTIVE_MODEL)
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


def resume_button(run: Run, where: str) -> None:
    """Continue a stopped or interrupted run from its last finished epoch (instructor)."""
    if not resumable(run, registry):
        return
    may_resume = ui.locked_caption(Action.START_TRAINING)
    now = current_job(registry)
    if st.button(
        f"Resume run {run.id} from epoch {run.epochs_done + 1}",
        key=f"resume-{where}-{run.id}",
        disabled=not may_resume or (now is not None and now.is_running),
        icon=":material/play_arrow:",
    ):
        try:
            resume_training(run.id, registry, ui.dataset(), role=ui.role())
        except DigitLabError as e:
            st.error(f"Not resumed: {e}", icon="⚠️")
        else:
            st.rerun()


def show_result(run: Run) -> None:
    if run.status == "failed":
        st.error(f"Run {run.id} failed: {run.error}", icon="⚠️")
    elif run.status == "interrupted":
        st.warning(
            f"Run {run.id} was interrupted (the server stopped) after {run.epochs_done} "
            "finished epochs; the model of the last finished epoch is kept.",
        )
    resume_button(run, "latest")
    if run.test_accuracy is None:
        return
    a, b, c, d = st.columns(4)
    a.metric("Test accuracy", f"{run.test_accuracy:.2%}")
    b.metric("Test loss", f"{run.test_loss:.4f}")
    c.metric("Misclassified", f"{run.misclassified} of {run.test_n:,}")
    d.metric("Duration", ui.duration(run.duration_s))
    show_fine_tune(run)
    if usable(run):  # the same rule as the sidebar: never a run still training
        is_active = registry.active_run_id() == run.id
        label = "Active model" if is_active else "Make this the active model"
        make_active_button(run.id, label, disabled=is_active)


def poll_seconds() -> float:
    if not running:
        return POLL_IDLE_S
    cfg = job.config
    return POLL_SHORT_RUN_S if cfg.epochs * cfg.train_size <= TRAIN_SIZE else POLL_RUNNING_S


@st.fragment(run_every=poll_seconds())
def live_run(was_running: bool) -> None:
    job = current_job(registry)
    now_running = job is not None and job.is_running
    if now_running != was_running:
        st.rerun()  # a run started or ended (maybe from another browser): redraw all
    if job is None:
        # a run whose server died shortly before this one started still looked alive then
        # (its heartbeat was fresh): it shows up as interrupted, and resumable, once silent
        registry.mark_interrupted()
        latest = registry.list_runs()[:1]
        if latest:
            st.subheader(f"Latest run: {latest[0].id} · {latest[0].status}")
            show_result(latest[0])
            if latest[0].history.get("loss"):
                ui.epoch_charts(latest[0].history)
        else:
            st.info("No run yet. Choose settings and press **Start training**.")
        return

    s = job.snapshot()
    st.subheader(f"Run {s.run_id} · {s.config.preset} · {s.status}")
    if s.running:
        show_fine_tune(registry.get(s.run_id), s.history.get(finetune.HISTORY_KEY))
        eta = f" · about {ui.duration(s.eta_s)} left" if s.eta_s is not None else ""
        st.progress(
            s.progress,
            text=f"Epoch {s.epoch}/{s.config.epochs} · batch {s.batch}/{s.batches_per_epoch}"
            f" · {ui.duration(s.elapsed_s)} elapsed{eta}",
        )
        if s.stop_requested:
            st.caption("Stopping after this batch…")
        else:
            may_stop = ui.locked_caption(Action.STOP_TRAINING)
            if st.button("Stop", icon=":material/stop:", key="stop", disabled=not may_stop):
                with ui.user_errors():
                    job.stop(role=ui.role())
                st.rerun(scope="fragment")
    if s.batch_metrics:
        last = s.batch_metrics[-1]
        a, b, c = st.columns(3)
        a.metric("Batch loss", f"{last['loss']:.4f}")
        b.metric("Batch accuracy", f"{last['accuracy']:.2%}")
        if s.history["val_accuracy"]:
            c.metric("Test accuracy (last epoch)", f"{s.history['val_accuracy'][-1]:.2%}")
        ui.vega_lite(charts.batch_chart(s.batch_metrics))
    elif s.running:
        st.caption("Preparing the data and building the model…")
    if s.history["loss"]:
        ui.epoch_charts(s.history)
    if not s.running:
        show_result(registry.get(s.run_id))


live_run(running)


# --- history ----------------------------------------------------------------------------

st.header("Run history")
runs = registry.list_runs()
if not runs:
    st.caption("Finished, stopped and failed runs appear here.")
    st.stop()

active_id = registry.active_run_id()
table = pd.DataFrame(
    [
        {
            "run": r.id,
            "status": r.status + (" · active" if r.id == active_id else ""),
            "preset": r.config.get("preset"),
            "fine-tuned from": r.config.get(finetune.CONFIG_KEY, {}).get("base", ""),
            "epochs": f"{r.epochs_done}/{r.config.get('epochs')}",
            "batch": r.config.get("batch_size"),
            "learning rate": r.config.get("learning_rate"),
            "images": r.config.get("train_size"),
            "seed": r.config.get("seed"),
            "test accuracy": r.test_accuracy,
            "misclassified": r.misclassified,
            "duration": ui.duration(r.duration_s),
            "error": r.error or "",
        }
        for r in runs
    ]
)
picked = st.dataframe(
    table,
    hide_index=True,
    on_select="rerun",
    selection_mode="multi-row",
    key="history",
    column_config={
        "test accuracy": st.column_config.NumberColumn(format="percent"),
        "learning rate": st.column_config.NumberColumn(format="%.4f"),
    },
)
selected = [runs[i] for i in picked.selection.rows]
if not selected:
    st.caption("Select rows to compare their curves, make one the active model, or delete them.")
    st.stop()

metric = st.radio(
    "Compare",
    ["val_accuracy", "val_loss", "accuracy", "loss"],
    horizontal=True,
    format_func=lambda m: m.replace("val_", "test ").replace("_", " "),
)
ui.vega_lite(charts.runs_overlay_chart({f"run {r.id}": r.history for r in selected}, metric))
left, right = st.columns(2)
if len(selected) == 1 and usable(selected[0]):
    with left:
        make_active_button(selected[0].id, f"Make run {selected[0].id} the active model")
if len(selected) == 1:
    with left:
        resume_button(selected[0], "history")
with right.popover(f"Delete {len(selected)} run(s)", icon=":material/delete:"):
    st.write(
        "Deletes the records and model files of: " + ", ".join(f"run {r.id}" for r in selected)
    )
    may_delete = ui.locked_caption(Action.DELETE_RUNS)
    if st.button("Delete for good", type="primary", disabled=not may_delete):
        with ui.user_errors():
            for r in selected:
                registry.delete(r.id, role=ui.role())
        st.rerun()
