"""Experiment: every student runs the lab. The card holds the lab's network with what a
student may change (the lab's values first, each with its range and the workbook's
words); the model summary and an estimated training time follow every change, before
anything is submitted. Below: the student's own experiment (its place in the queue, its
curves batch by batch, cancel), their past experiments, and the instructor's class
controls (limits, pause, clear a student's experiments). The core checks every rule."""

import streamlit as st

from mnist_demo import experiments, ui
from mnist_demo.ui import experiments as card
from mnist_demo.ui import training

ui.page_setup(__file__)
st.title("My experiment")
st.write(
    "The lab's network and recipe, with your choices. The workbook says its values "
    '"are chosen via trial and error": change one, see what it does to the model, '
    "submit it, and compare on the **Leaderboard**."
)
registry = ui.registry()
training.engine_line(training.engine_status())

# --- the card ----------------------------------------------------------------------------

with st.container(border=True):
    values = card.card()
    config, problems = card.check(values)
    if config is not None:
        card.summary(config)
    card.submit_button(config, problems)

# --- my experiment, live -------------------------------------------------------------------

me = card.student()
mine = experiments.current(registry, me)


@st.fragment(run_every=training.poll_seconds(mine))
def live(run_id: int | None, was: str | None) -> None:
    now = experiments.current(registry, me)
    if now is None:
        st.info("No experiment yet: set the card and press **Submit my experiment**.")
        return
    if now.id != run_id or now.status != was:
        st.rerun()  # queued, started or ended: redraw the page (and its poll rate)
    registry.mark_interrupted()  # a worker that died shows as interrupted
    card.my_experiment(now)
    card.class_queue()


live(mine.id if mine else None, mine.status if mine else None)

past = [r for r in experiments.experiments_of(registry, me) if r.ended]
if past:
    st.header("My past experiments")
    card.past_experiments(past)

# --- the instructor ----------------------------------------------------------------------------

if ui.is_instructor():
    st.header("The class's experiments")
    card.instructor_panel()
