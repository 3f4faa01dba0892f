"""The Experiment and Leaderboard pages' pieces: a student's experiment card, its model
summary and time estimate, their own experiment live, the class's leaderboard and a
run's answers to the workbook. The rules (ranges, limits, quotas, who may cancel, what a
student may see) are experiments.py's; these only draw them.

The student is `ui.session_tag()`, the session's signed identity."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
import streamlit as st

from mnist_demo import charts, experiments, models, progress, queue
from mnist_demo.errors import DigitLabError
from mnist_demo.experiments import RANGES, Row
from mnist_demo.model import build_model, summary_rows
from mnist_demo.models import usable
from mnist_demo.recipe import OPTIMIZERS, Network, TrainConfig
from mnist_demo.runs import Run
from mnist_demo.ui.classroom import is_instructor, network, role, session_tag
from mnist_demo.ui.resources import registry
from mnist_demo.ui.training import feed
from mnist_demo.ui.widgets import duration, epoch_charts, setting_toggle, user_errors, vega_lite

LEADERBOARD_PAGE_SIZE = 25
LEADERBOARD_POLL_S = 3.0
SORTS = {
    "test_accuracy": "MNIST test accuracy",
    "class_accuracy": "class drawings",
    "parameters": "fewest parameters",
    "seconds": "fastest",
}
MISSING = "—"  # a value not measured (yet): never "None" or a blank


def student() -> str:
    return session_tag()


def names() -> dict[str, str]:
    return experiments.names(registry())


# --- the card ------------------------------------------------------------------------------


def _number(column: Any, name: str, default: float, step: float, fmt: str | None = None) -> Any:
    knob = RANGES[name]
    return column.number_input(
        f"{knob.label} ({knob.low:g}–{knob.high:g})",
        value=default,
        step=step,
        format=fmt,
        key=f"card-{name}",
        help=knob.words,
    )


def _kernel(column: Any, name: str, default: int) -> Any:
    knob = RANGES[name]
    return column.radio(
        knob.label,
        knob.choices,
        index=knob.choices.index(default),
        # the lab's own choice is named on the button itself, not only in the help
        format_func=lambda k: f"{k}x{k} (the lab)" if k == default else f"{k}x{k}",
        key=f"card-{name}",
        help=knob.words,
        horizontal=True,
    )


def card() -> dict[str, Any]:
    """The card's controls, each starting on the lab's value (the class's default size
    for epochs and images); returns the values as the student set them."""
    lab, net = experiments.LAB_EXPERIMENT, Network()
    rules = experiments.limits(registry())
    st.markdown("**The network** — Conv → pool → Conv → pool → dropout → dense → dropout → 10")
    a, b, c = st.columns(3)
    values: dict[str, Any] = {
        "conv1_filters": _number(a, "conv1_filters", net.conv1_filters, 1),
        "conv1_kernel": _kernel(a, "conv1_kernel", net.conv1_kernel),
        "conv2_filters": _number(b, "conv2_filters", net.conv2_filters, 1),
        "conv2_kernel": _kernel(b, "conv2_kernel", net.conv2_kernel),
        "dropout_conv": _number(c, "dropout_conv", net.dropout_conv, 0.05, "%.2f"),
        "dense_units": _number(c, "dense_units", net.dense_units, 10),
        "dropout_dense": _number(c, "dropout_dense", net.dropout_dense, 0.05, "%.2f"),
    }
    st.markdown(
        f"**Training** — the class's limits: at most {rules.max_epochs} epochs, "
        f"{rules.max_train_images:,} images and about "
        f"{experiments.minutes(rules.budget_minutes * 60)} of training an experiment "
        "(the instructor sets them)"
    )
    d, e, f, g, h = st.columns(5)
    values["optimizer"] = d.radio(
        "Optimizer",
        list(OPTIMIZERS),
        format_func=OPTIMIZERS.__getitem__,
        key="card-optimizer",
        help="the lab: Adam",
    )
    values["learning_rate"] = _number(e, "learning_rate", lab.learning_rate, 0.0005, "%.5f")
    values["batch_size"] = _number(f, "batch_size", lab.batch_size, 32)
    values["epochs"] = _number(g, "epochs", lab.epochs, 1)
    values["train_size"] = _number(h, "train_size", lab.train_size, 500)
    return values


def check(values: dict[str, Any]) -> tuple[TrainConfig | None, list[str]]:
    """The card's config and what is wrong with it (the core's words, with ranges)."""
    try:
        cfg = experiments.card_config(values)
    except DigitLabError as e:
        return None, str(e).split("; ")
    return cfg, experiments.limit_problems(registry(), cfg)


@st.cache_data(show_spinner=False, max_entries=64)
def model_summary(network: Network, optimizer: str) -> list[dict[str, Any]]:
    """The summary of the network the card describes, from the model build_model makes
    (the one the worker will train), built once per setting."""
    return summary_rows(
        build_model("lab7", seed=None, network=network, optimizer=optimizer, compile=False)
    )


def summary(cfg: TrainConfig) -> None:
    """The model summary, parameters and estimated time, before anything is submitted."""
    rows = model_summary(cfg.network or Network(), cfg.optimizer)
    seconds = experiments.estimate_seconds(cfg, registry().list_runs())
    budget = experiments.limits(registry()).budget_minutes * 60
    a, b = st.columns(2)
    a.metric("Parameters", f"{sum(r['parameters'] for r in rows):,}")
    b.metric(
        "Estimated training time",
        f"about {experiments.minutes(seconds)}",
        delta=f"budget {experiments.minutes(budget)}"
        + (" · over it" if seconds > budget else f" · {seconds / budget:.0%} of it"),
        delta_color="inverse" if seconds > budget else "off",
        delta_arrow="off",
        help="On this engine, scaled by how long this class's finished runs took. The "
        "engine stops an experiment that runs well past the budget (its last finished "
        "epoch is kept).",
    )
    st.caption(f"What I changed: {experiments.changes(cfg)}")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="card-summary")


def submit_button(cfg: TrainConfig | None, problems: list[str]) -> None:
    for problem in problems:
        st.error(problem, icon="⚠️")
    if st.button(
        "Submit my experiment",
        type="primary",
        icon=":material/send:",
        disabled=cfg is None or bool(problems),
    ):
        assert cfg is not None
        with user_errors(stop=False):
            experiments.submit(registry(), student(), cfg, network=network())
            st.rerun()


# --- my experiment ---------------------------------------------------------------------------


def my_experiment(run: Run) -> None:
    """The student's own experiment: where it is in the queue, then its curves batch by
    batch, then its result; cancel while it waits or trains."""
    view = feed().view(run.id)
    run = view.run
    st.subheader(f"My experiment · run {run.id} · {run.status}")
    st.caption(f"What I changed: {experiments.changes(run.config)}")
    if run.status == "queued":
        place = queue.position(registry(), run.id)
        paused = " The instructor has paused the class's queue." if queue.paused(registry()) else ""
        st.info(f"Waiting for the training engine: #{place} in the queue.{paused}", icon="⏳")
    if run.status == "running":  # the Train page's words: each phase named, never 0/0
        text = progress.progress_text(run, elapsed_s=view.elapsed_s, eta_s=view.eta_s)
        st.progress(run.progress, text=text)
    if not run.ended and not view.stop_requested:
        if st.button("Cancel my experiment", icon=":material/stop:", key=f"cancel-{run.id}"):
            with user_errors(stop=False):
                experiments.cancel(registry(), run.id, student=student(), role=role())
                st.rerun()
    elif view.stop_requested and not run.ended:
        st.caption("Stopping after this batch…")
    if view.batch_metrics:
        vega_lite(charts.batch_chart(view.batch_metrics))
    if run.history.get("loss"):
        epoch_charts(run.history)
    if run.ended:
        answers(run)


def answers(run: Run) -> None:
    """The workbook's (a) test loss and accuracy and (b) the misclassified count."""
    if run.status == "interrupted":
        st.warning(f"Run {run.id} was interrupted: its training stopped unexpectedly.", icon="⚠️")
    elif run.status == "failed":
        st.error(f"Run {run.id} failed: {run.error}", icon="⚠️")
    elif run.status == "stopped" and run.error:  # stopped by the engine, with its reason
        st.warning(f"Run {run.id} was {run.error}.", icon="⏱️")
    if run.test_accuracy is None:
        st.caption("No finished epoch: nothing was scored.")
        return
    a, b, c = st.columns(3)
    a.metric("(a) Test loss", f"{run.test_loss:.4f}")
    b.metric("(a) Test accuracy", f"{run.test_accuracy:.2%}")
    c.metric("(b) Misclassified", f"{run.misclassified} of {run.test_n:,}")
    if usable(run):
        st.caption("Open it on Home, Test set, Misclassified or Draw: the sidebar's model list.")


def past_experiments(runs: list[Run]) -> None:
    if not runs:
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "run": r.id,
                    "status": r.status,
                    "what I changed": experiments.changes(r.config),
                    "test accuracy": r.test_accuracy,
                    "misclassified": r.misclassified,
                    "training time": duration(r.duration_s),
                }
                for r in runs
            ]
        ),
        hide_index=True,
        column_config={"test accuracy": st.column_config.NumberColumn(format="percent")},
    )


def class_queue() -> None:
    known = names()
    waiting = queue.waiting(registry())
    if waiting:
        st.caption(
            "Class queue: "
            + ", ".join(
                f"#{i} {'instructor' if r.priority == 0 else experiments.name_of(r.owner, known)}"
                for i, r in enumerate(waiting, start=1)
            )
        )


# --- the instructor -----------------------------------------------------------------------------


def instructor_panel() -> None:
    reg = registry()
    rules = experiments.limits(reg)
    with st.form("class-limits", border=False):
        a, b, c = st.columns(3)
        epochs = a.number_input("Maximum epochs", 1, int(RANGES["epochs"].high), rules.max_epochs)
        images = b.number_input(
            "Maximum training images",
            int(RANGES["train_size"].low),
            int(RANGES["train_size"].high),
            rules.max_train_images,
            step=500,
        )
        low, high = experiments.BUDGET_MINUTES_RANGE
        budget = c.number_input(
            "Budget per experiment (estimated minutes)",
            low,
            high,
            float(rules.budget_minutes),
            step=0.25,
            help="A card estimated above it is refused; the engine stops an experiment "
            f"past {experiments.OVERRUN_FACTOR:g}x its budget, keeping its last epoch. "
            "The default experiment takes about 20 s on a quiet 2-core laptop.",
        )
        if st.form_submit_button("Set the class's limits"):
            with user_errors(stop=False):
                new = replace(
                    rules,
                    max_epochs=int(epochs),
                    max_train_images=int(images),
                    budget_minutes=float(budget),
                )
                experiments.set_limits(reg, new, role=role())
                st.rerun()
    setting_toggle(
        "Pause the students' queue",
        value=queue.paused(reg),
        change=lambda on: queue.pause(reg, on, role=role()),
        help="Students' experiments wait; the instructor's runs go on.",
    )
    known = names()
    owners = sorted({r.owner for r in reg.list_runs() if r.owner != "instructor"})
    if owners:
        c, d = st.columns([3, 1], vertical_alignment="bottom")
        who = c.selectbox(
            "Clear a student's experiments",
            owners,
            format_func=lambda s: experiments.name_of(s, known),
        )
        if d.button("Clear", icon=":material/delete:"):
            with user_errors(stop=False):
                n = experiments.clear_student(reg, who, role=role())
                st.toast(f"Removed {n} experiment(s) of {experiments.name_of(who, known)}.")


# --- the leaderboard ----------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2%}"


def _count(value: int | None) -> str:
    return MISSING if value is None else f"{value:,}"


def _time(seconds: float | None) -> str:
    return MISSING if seconds is None else duration(seconds)


def _class_score(row: Row) -> str:
    if row.class_accuracy is None or not row.class_n:
        return MISSING
    drawings = f"{row.class_n:,} drawing{'s' if row.class_n != 1 else ''}"
    return f"{row.class_accuracy:.1%} of {drawings}"


def leaderboard_frame(rows: list[Row], show_class: bool, with_reference: bool) -> pd.DataFrame:
    """The table as shown: text cells, so a missing value reads "—", a class score says
    how many drawings it is on, and the reference rows sit on top, unranked."""
    known = names()
    records = []
    if with_reference:
        for i, ref in enumerate(experiments.references(registry())):
            records.append(
                {
                    "rank": "ref",
                    "run": -(i + 1),  # a reference row's key for run_detail
                    "nickname": ref.label,
                    "MNIST test accuracy": _percent(ref.test_accuracy),
                    "class drawings": MISSING,
                    "what I changed": experiments.changes(ref.config),
                    "misclassified": _count(ref.misclassified),
                    "parameters": _count(ref.parameters),
                    "training time": _time(ref.seconds),
                    "status": "reference",
                }
            )
    for r in rows:
        records.append(
            {
                "rank": str(r.rank),
                "run": r.run.id,
                "nickname": experiments.name_of(r.owner, known),
                "MNIST test accuracy": _percent(r.test_accuracy),
                "class drawings": _class_score(r),
                "what I changed": r.changes,
                "misclassified": _count(r.misclassified),
                "parameters": _count(r.parameters),
                "training time": _time(r.seconds),
                "status": r.run.status,
            }
        )
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    # rank, who, the two scores and what changed first: the grid draws only the columns
    # in view, and "what I changed" is the one people read; the run id (a row's key) last
    order = ["rank", "nickname", "MNIST test accuracy", "class drawings", "what I changed"]
    frame = frame[order + [c for c in frame.columns if c not in order and c != "run"] + ["run"]]
    return frame if show_class else frame.drop(columns="class drawings")


LEADERBOARD_COLUMNS = {
    "rank": st.column_config.TextColumn("rank", width="small"),
    "run": st.column_config.NumberColumn("run", width="small"),
    "what I changed": st.column_config.TextColumn(
        "what I changed",
        width=440,  # px: most cards' differences whole; the longest read in the detail
        help="Every difference from the lab's own recipe (12 epochs on all 60,000 "
        "images); click a row to read it whole.",
    ),
}
LEADERBOARD_ROW_HEIGHT = 48  # two lines: a long "what I changed" wraps


def run_detail(run_id: int) -> None:
    """A run's test curves over the lab's (the shipped Lab 7's record), and its answers
    to (a) and (b); a reference row's own curves and recipe."""
    refs = experiments.references(registry())
    if run_id < 0:
        ref = refs[-run_id - 1]
        st.subheader(f"Reference: {ref.label}")
        st.caption(f"Its recipe, against the lab's: {experiments.changes(ref.config)}")
        if ref.history:
            epoch_charts(ref.history)
        else:
            st.caption("Not trained in this class yet: its figures appear once it is.")
            if is_instructor() and st.button("Train it now", icon=":material/play_arrow:"):
                with user_errors(stop=False):
                    run = experiments.train_reference(registry(), role=role())
                    st.toast(f"Run {run.id} queued: the lab within the class's limits")
        return
    shipped = refs[-1]
    run = registry().get(run_id)
    who = experiments.name_of(run.owner, names())
    st.subheader(f"{who} · run {run.id} · {run.status}")
    st.caption(f"What they changed: {experiments.changes(run.config)}")
    histories = {f"run {run.id}": run.history, "Lab 7 as shipped": shipped.history}
    left, right = st.columns(2)
    vega_lite(charts.runs_overlay_chart(histories, "val_accuracy"), left)
    vega_lite(charts.runs_overlay_chart(histories, "val_loss"), right)
    answers(run)
    if is_instructor():
        instructor_run_actions(run)


def instructor_run_actions(run: Run) -> None:
    reg = registry()
    a, b = st.columns(2)
    on_projector = models.projector(reg) == run.id
    if a.button(
        "Take it off the projector" if on_projector else "Put on the projector",
        icon=":material/cast:",
        key=f"projector-{run.id}",
    ):
        with user_errors(stop=False):
            experiments.set_projector(reg, None if on_projector else run.id, role=role())
            st.rerun()
    on_draw = models.draw_model(reg) == run.id
    if b.button(
        "The class's model for Draw" if on_draw else "Make it the class's model for Draw",
        icon=":material/draw:",
        key=f"draw-{run.id}",
        disabled=on_draw or not usable(run),
    ):
        with user_errors(stop=False):
            experiments.set_draw_model(reg, run.id, role=role())
            st.rerun()


def projector_banner() -> None:
    """The run the instructor put on the projector, large, at the top of the page."""
    run_id = models.projector(registry())
    if run_id is None:
        return
    with user_errors(stop=False), st.container(border=True):
        run = registry().get(run_id)
        who = experiments.name_of(run.owner, names())
        acc = f"{run.test_accuracy:.2%}" if run.test_accuracy is not None else "not scored"
        st.markdown(f"## :material/cast: On the projector: {who} · run {run.id} · {acc}")
        st.caption(f"What they changed: {experiments.changes(run.config)}")
