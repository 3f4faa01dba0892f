"""Class: the students' drawings live on the projector. How well a model that reads MNIST
reads *this* class, where it fails (the confusion matrix to click into), which digits
the class writes unlike MNIST; and the instructor's tools for the class set, the class's
send cap, and the roster: every seat with its nickname, address group, last visit and
experiments, to rename, hide or remove. A student's experiment's score on the class's
drawings is hidden from students until the instructor reveals it
(experiments.class_score_hidden), here as on every page.

A drawing Draw called "not a digit" when it was sent is on the wall with a badge and is
left out of the class's accuracy, the per-digit table and the confusion matrix (reported
apart), so a scribble never counts as a right answer."""

import html
import time

import numpy as np
import pandas as pd
import streamlit as st

from mnist_demo import charts, class_set, classroom, experiments, students, ui
from mnist_demo.class_set import NOT_A_DIGIT, Snapshot
from mnist_demo.classroom import Action
from mnist_demo.evaluation import Evaluation
from mnist_demo.ui.widgets import ANY

WALL_POLL_S = 1.0  # a sent drawing is on the projector within about a second
WALL_SIZE = 48  # newest drawings on the wall
ROSTER_MESSAGE = "class-roster-message"

ref = ui.page_setup(__file__, for_drawings=True)
st.title("The class's drawings")
store = ui.class_store()
registry = ui.registry()
HIDDEN = (
    f"How {ref.name} reads the class's drawings is hidden until the instructor reveals "
    "the class-drawings score (it is a student's experiment): choose a shipped model or "
    "the instructor's in the sidebar to see a score here."
)


NOT_A_DIGIT_BADGE = (
    '<br><span class="digit-lab-badge" style="display:inline-block;margin-top:2px;'
    "padding:0 4px;border-radius:4px;background:#ffc107;color:#212529;"
    'font:600 0.7rem/1.4 sans-serif">not a digit</span>'
)


def tile_caption(d: class_set.Drawing) -> str:
    read = "?" if d.predicted is None else str(d.predicted)
    return f"{d.label} → {read}" + ("" if d.counted else NOT_A_DIGIT_BADGE)


@st.cache_data(max_entries=32, show_spinner=False)
def wall_html(
    store_url: str, set_id: int, version: int, label: int | None, outcome: str
) -> tuple[str, int]:
    """The wall's HTML, built once per store, class-set version and filter (the projector
    and any student watching poll it every second; the store in the key: the cache is
    the process's, and tests open several stores in one). A "not a digit" drawing has a
    badge, and is neither right nor wrong (not red: it is not counted)."""
    drawings = store.newest(WALL_SIZE, set_id=set_id, label=label, outcome=outcome)
    wall = charts.wall_tiles(
        [d.image for d in drawings],
        [tile_caption(d) for d in drawings],
        [d.counted and not d.correct for d in drawings],
        [d.id for d in drawings],
    )
    for d in drawings:
        if not d.counted:
            attribute = f'data-drawing-id="{d.id}"'
            wall = wall.replace(attribute, f'{attribute} data-verdict="not-a-digit"', 1)
    return wall, len(drawings)


def counted_only(snapshot: Snapshot, result: Evaluation) -> tuple[Evaluation, np.ndarray]:
    """The answers and images the class's accuracy counts (no "not a digit" drawings)."""
    keep = snapshot.counted
    if keep.all():
        return result, snapshot.images
    return Evaluation(result.probabilities[keep], result.labels[keep]), snapshot.images[keep]


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' if n != 1 else ''}"


def accuracy_line(name: str, mnist_accuracy: float, scored: Evaluation, not_digits: int) -> str:
    apart = f", {plural(not_digits, 'not-a-digit drawing')} not counted" if not_digits else ""
    if scored.n == 0:
        return f"**{name}** reads MNIST at **{mnist_accuracy:.1%}**; no drawing counted yet{apart}"
    return (
        f"**{name}** reads MNIST at **{mnist_accuracy:.1%}**, this class at "
        f"**{scored.accuracy:.1%}** — {plural(scored.n, 'drawing')}{apart}"
    )


def score_hidden() -> bool:
    return experiments.class_score_hidden(registry, ref.owner, ui.role())


@st.fragment(run_every=WALL_POLL_S)
def live_wall() -> None:
    if score_hidden():  # the wall only: each tile's answer is the sender's, as sent
        set_id, version = store.current_set(), store.version()
        if store.count() == 0:
            st.info("No drawings yet.", icon="✍️")
            return
        st.caption(HIDDEN)
        wall, shown = wall_html(store.store.url, set_id, version, None, "all")
        st.caption(f"The newest {shown} (meant → read, at the time it was sent)")
        st.html(wall)
        return
    with ui.user_errors():
        snapshot, result = ui.class_evaluation(ref)  # cached per class-set version
        mnist = ui.evaluation(ref)
    set_id, version = snapshot.set_id, snapshot.version
    if result.n == 0:
        st.info(
            "No drawings yet. On the Draw page, students draw a digit and press "
            "**Send to the class**; they appear here within a second.",
            icon="✍️",
        )
        return
    scored, _ = counted_only(snapshot, result)
    st.markdown(accuracy_line(ref.name, mnist.accuracy, scored, snapshot.not_digits))
    if snapshot.skipped:
        st.warning(f"{snapshot.skipped} drawing(s) could not be read and are left out.")
    c1, c2, _spacer = st.columns([1, 1.4, 2])
    label = c1.selectbox("Digit meant", [ANY, *range(10)], key="wall_digit")
    outcome = c2.segmented_control(
        "Read", list(class_set.OUTCOMES), default="all", key="wall_outcome"
    )
    wall, shown = wall_html(
        store.store.url, set_id, version, None if label == ANY else label, outcome or "all"
    )
    st.caption(
        f"The newest {shown} (meant → read, at the time it was sent; red: read wrong; "
        f"“{NOT_A_DIGIT}”: Draw said so when it was sent, not counted)"
    )
    st.html(wall)
    st.subheader("Per digit")
    st.caption("Digits read right least often are the ones this class writes unlike MNIST.")
    rows = scored.per_class()
    table = pd.DataFrame(
        {
            str(r["digit"]): {
                "drawings": str(r["support"]),  # one type per column: text
                "read right": str(r["support"] - r["errors"]),
                "share right": f"{r['recall']:.0%}" if r["support"] else "–",
            }
            for r in rows
        }
    )
    st.table(table)


live_wall()

st.header("Where it fails")
if score_hidden():
    st.caption(HIDDEN)
    st.stop()
with ui.user_errors():
    snapshot, result = ui.class_evaluation(ref)
scored, scored_images = counted_only(snapshot, result)
if scored.n:
    ui.confusion_explorer(scored, scored_images, key="class", noun="class drawing")
    if snapshot.not_digits:
        st.caption(f"Without the {plural(snapshot.not_digits, 'not-a-digit drawing')}.")
else:
    st.caption("The confusion matrix appears with the first drawings.")

st.header("Instructor tools")
if ui.locked_caption(Action.MANAGE_CLASS_SET):
    left, middle, right = st.columns(3)
    with left:
        st.markdown("**Hide or delete a drawing**")
        drawing_id = st.number_input("Drawing # (under each tile)", min_value=1, step=1)
        hide, show, delete = st.columns(3)
        for column, label, action in (
            (hide, "Hide", lambda i: store.set_hidden(i, True, role=ui.role())),
            (show, "Show", lambda i: store.set_hidden(i, False, role=ui.role())),
            (delete, "Delete", lambda i: store.delete(i, role=ui.role())),
        ):
            if column.button(label, key=f"drawing-{label}"):
                with ui.user_errors():
                    action(int(drawing_id))
                st.toast(f"Drawing #{int(drawing_id)}: {label.lower()} done")
    with middle:
        st.markdown("**Export**")
        st.download_button(
            f"Download the class set ({store.count()} drawings, .npz)",
            data=store.export_npz(),
            file_name=f"class-drawings-{time.strftime('%Y-%m-%d')}.npz",
            mime="application/octet-stream",
            icon=":material/download:",
            help="MNIST-shaped: x uint8 (N, 28, 28), y uint8 (N,). np.load() reads it.",
        )
    with right:
        st.markdown("**A new class set**")
        with st.popover("Start a new class set", icon=":material/archive:"):
            st.write("The current drawings are archived (kept, exportable); the wall starts empty.")
            if st.button("Archive and start new", type="primary"):
                with ui.user_errors():
                    store.start_new_set(role=ui.role())
                st.rerun()

    st.subheader("Sends per minute")
    cap_col, now_col = st.columns([1, 2], vertical_alignment="bottom")
    cap = cap_col.number_input(
        "The whole class may send, per minute",
        min_value=class_set.CLASS_SENDS_RANGE[0],
        max_value=class_set.CLASS_SENDS_RANGE[1],
        value=store.sends_cap(),
        step=10,
        help=f"Each student may send {class_set.SENDS_PER_MINUTE} a minute; this caps the "
        "class together, so the wall and the server keep up.",
    )
    if cap_col.button("Set the class's cap", key="set-sends-cap"):
        with ui.user_errors(stop=False):
            store.set_sends_cap(int(cap), role=ui.role())
            st.toast(f"The class may now send {int(cap)} drawings a minute")
    now_col.caption(f"Sent in the last minute: {store.sent_last_minute()}")

st.header("Students")
st.caption(
    "A student gets a seat when they first pick a nickname, submit an experiment or "
    "send a drawing. Each computer gets one person's fair share, however many browsers "
    "it opens, unless the class shares one address."
)
with ui.user_errors():
    everyone = students.list_students(store.store)
if ROSTER_MESSAGE in st.session_state:  # what the last removal did (before its rerun)
    st.success(st.session_state.pop(ROSTER_MESSAGE), icon=":material/person_remove:")
if not everyone:
    st.caption("No student has a seat yet.")
elif not ui.is_instructor():
    st.dataframe(
        pd.DataFrame({"in the class": [s.display_name for s in everyone]}),
        hide_index=True,
        width="stretch",
    )
else:  # the roster: who is here, from where, doing what
    counts = experiments.experiment_counts(registry)
    now = time.time()
    st.dataframe(
        pd.DataFrame(
            {
                "seat": [s.id[: students.SHORT_TAG] for s in everyone],
                "shown as": [s.display_name for s in everyone],
                "nickname": [s.nickname or "—" for s in everyone],
                "hidden": [s.hidden for s in everyone],
                "address group": [s.network or "—" for s in everyone],
                "last seen": [
                    "—" if s.last_seen is None else f"{ui.duration(now - s.last_seen)} ago"
                    for s in everyone
                ],
                "experiments": [counts.get(s.id, 0) for s in everyone],
            }
        ),
        hide_index=True,
        width="stretch",
        key="roster",
    )
if ui.locked_caption(Action.MODERATE_STUDENTS) and everyone:
    by_id = {s.id: s for s in everyone}
    who = st.selectbox(
        "Student",
        list(by_id),
        format_func=lambda i: (
            f"{by_id[i].display_name} ({html.escape(i[:4])}"
            + (f", nickname “{by_id[i].nickname}”" if by_id[i].nickname else "")
            + (", hidden" if by_id[i].hidden else "")
            + ")"
        ),
        key="moderate-student",
    )
    new_name = st.text_input(
        "New nickname", max_chars=students.MAX_NICKNAME, key="moderate-nickname"
    )
    rename, hide, show, remove = st.columns(4)
    if rename.button("Rename", key="moderate-rename"):
        with ui.user_errors(stop=False):
            students.rename(store.store, who, new_name, role=ui.role())
            st.rerun()
    if hide.button("Hide nickname", key="moderate-hide"):
        with ui.user_errors(stop=False):
            students.set_hidden(store.store, who, True, role=ui.role())
            st.rerun()
    if show.button("Show nickname", key="moderate-show"):
        with ui.user_errors(stop=False):
            students.set_hidden(store.store, who, False, role=ui.role())
            st.rerun()
    if remove.button(
        "Remove seat",
        key="moderate-remove",
        icon=":material/person_remove:",
        help="Its queued experiment is cancelled (a running one stopped), its nickname "
        "freed; its finished experiments stay on the leaderboard.",
    ):
        with ui.user_errors(stop=False):
            cancelled = students.remove_seat(registry, who, role=ui.role())
            st.session_state[ROSTER_MESSAGE] = (
                f"Seat removed; {cancelled} experiment(s) cancelled or stopped."
            )
            st.rerun()
if ui.is_instructor():
    ui.setting_toggle(
        "This class shares one address",
        value=classroom.shared_address(store.store),
        change=lambda on: classroom.set_shared_address(store.store, on, role=ui.role()),
        help="Turn on when the school's network shows every device as one address: fair "
        "shares then count seats. Off, each computer gets one person's share, however "
        "many browsers it opens.",
    )
