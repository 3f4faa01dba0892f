"""Train: the instructor trains the CNN for the room. A run is a job for the training
engine (never this server): every browser on every server sees it live, and finds it in
the history afterwards. Only the instructor starts, stops, resumes, deletes and sets the
active model (the core checks it again: a locked button is not the guard)."""

import streamlit as st

from mnist_demo import charts, ui
from mnist_demo.classroom import Action
from mnist_demo.models import usable
from mnist_demo.recipe import MAX_EPOCHS, PRESETS, QUICK_DEMO, TRAIN_SIZE, TrainConfig
from mnist_demo.runs import LESSON_MAX_EPOCHS
from mnist_demo.ui import training

SUBSET_SIZES = [500, 1000, 5000, 10000, 30000, TRAIN_SIZE]

ui.page_setup(__file__)
title, view_toggle = st.columns([3, 1], vertical_alignment="center")
title.title("Train the CNN")
with view_toggle:
    training.projector_view()
registry = ui.registry()
training.engine_line(training.engine_status())


# --- start a run ------------------------------------------------------------------------


def start_controls() -> None:
    """Quick demo, the settings form and long runs. While a run is going this sits folded
    under the live run (the room sees the run, not a form)."""
    may_start = ui.locked_caption(Action.START_TRAINING)
    demo_text, demo_button = st.columns([4, 1], vertical_alignment="center")
    demo_text.write(
        "**Quick demo**: a small network trained once over the "
        f"{TRAIN_SIZE:,} training images. It passes 99 % test accuracy in about half a "
        "minute, while the room watches."
    )
    quick = demo_button.button(
        "Quick demo",
        type="primary",
        icon=":material/bolt:",
        disabled=not may_start,
        width="stretch",
    )

    with st.form("settings", border=True):
        st.write(
            "**Settings**: each preset brings its own recipe (Lab 7: 12 epochs, batch size "
            "128, learning rate 0.001, a few minutes); leave a box empty to keep it."
        )
        c1, c2, c3 = st.columns(3)
        preset = c1.selectbox("Preset", list(PRESETS), format_func=training.preset_label)
        # from 0: a value out of range reaches the core, whose message says what is allowed
        epochs = c2.number_input("Epochs", 0, MAX_EPOCHS, value=None, placeholder="the preset's")
        batch_size = c3.number_input(
            "Batch size", 0, TRAIN_SIZE, value=None, step=32, placeholder="the preset's"
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
            "Learning rate",
            0.0,
            1.0,
            value=None,
            step=0.0005,
            format="%.4f",
            placeholder="the preset's",
        )
        seed = c6.number_input("Seed", min_value=0, value=TrainConfig().seed, step=1)
        start = st.form_submit_button(
            "Start training", type="primary", disabled=not may_start, icon=":material/play_arrow:"
        )

    if start or quick:
        with ui.user_errors(stop=False):
            config = (
                QUICK_DEMO
                if quick
                else TrainConfig.for_preset(
                    preset,
                    epochs=epochs,
                    batch_size=batch_size,
                    learning_rate=learning_rate,
                    train_size=train_size,
                    seed=seed,
                )
            )
            training.request_run(config)  # asks first when a run is going
    training.confirm_pending()

    if ui.is_instructor():
        ui.setting_toggle(
            f"Allow long runs (more than {LESSON_MAX_EPOCHS} epochs)",
            value=registry.long_runs_allowed(),
            change=lambda allowed: registry.allow_long_runs(allowed, role=ui.role()),
            help="Off, a run ends within a lesson. On, up to 100 epochs, which can take an "
            "hour or more.",
        )


def fine_tune() -> None:
    with st.expander("Fine-tune on the class drawings", icon=":material/school:"):
        training.fine_tune_form(LESSON_MAX_EPOCHS)


# --- the live run -----------------------------------------------------------------------

followed = training.focus()


@st.fragment(run_every=training.poll_seconds(followed, projector=ui.is_instructor()))
def live_run(followed_id: int | None, was: str | None) -> None:
    now = training.focus()
    if now is None:
        st.info(
            "No run yet. Press **Quick demo**, or choose settings and press **Start training**."
        )
        return
    if now.id != followed_id or now.status != was:
        st.rerun()  # a run queued, started or ended (maybe elsewhere): redraw the page
    training.live_run(training.feed().view(now.id))
    training.queue_table()


# While a run trains or waits, and for a while after it ends, it takes the first screen
# and the settings fold away below it; otherwise the page starts with what starts a run.
if training.run_first(followed):
    live_run(followed.id, followed.status)
    with st.expander(
        "Start another run",
        icon=":material/add_circle:",
        expanded=st.session_state.get(training.PENDING_KEY) is not None,
    ):
        start_controls()
    fine_tune()
else:
    start_controls()
    fine_tune()
    live_run(followed.id if followed else None, followed.status if followed else None)


# --- history ----------------------------------------------------------------------------

st.header("Run history")
runs = registry.list_runs()
if not runs:
    st.caption("Finished, stopped and failed runs appear here.")
    st.stop()

picked = st.dataframe(
    training.history_frame(runs, registry.active_run_id()),
    column_config=training.HISTORY_COLUMNS,
    hide_index=True,
    on_select="rerun",
    selection_mode="multi-row",
    key="history",
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
        training.make_active_button(selected[0].id, f"Make run {selected[0].id} the active model")
if len(selected) == 1:
    with left:
        training.resume_button(selected[0], "history")
runs_word = "run" if len(selected) == 1 else "runs"
with right.popover(f"Delete {len(selected)} {runs_word}", icon=":material/delete:"):
    st.write(
        "Deletes the records and model files of: " + ", ".join(f"run {r.id}" for r in selected)
    )
    may_delete = ui.locked_caption(Action.DELETE_RUNS)
    if st.button("Delete for good", type="primary", disabled=not may_delete):
        with ui.user_errors():
            for r in selected:
                registry.delete(r.id, role=ui.role())
        st.rerun()
