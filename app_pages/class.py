"""Class: the students' drawings live on the projector. How well a model that reads MNIST
reads *this* class, where it fails (the confusion matrix to click into), which digits
the class writes unlike MNIST; and the instructor's tools for the class set."""

import time

import pandas as pd
import streamlit as st

from mnist_demo import charts, ui
from mnist_demo.classroom import Action
from mnist_demo.ui.widgets import ANY

WALL_POLL_S = 1.0  # a sent drawing is on the projector within about a second
WALL_SIZE = 48  # newest drawings on the wall

ref = ui.page_setup(__file__, for_drawings=True)
st.title("The class's drawings")
store = ui.class_store()


@st.cache_data(max_entries=32, show_spinner=False)
def wall_html(set_id: int, version: int, label: int | None, outcome: str) -> tuple[str, int]:
    """The wall's HTML, built once per class-set version and filter (the projector and any
    student watching poll it every second)."""
    drawings = store.newest(WALL_SIZE, set_id=set_id, label=label, outcome=outcome)
    html = charts.wall_tiles(
        [d.image for d in drawings],
        [f"{d.label} → {'?' if d.predicted is None else d.predicted}" for d in drawings],
        [not d.correct for d in drawings],
        [d.id for d in drawings],
    )
    return html, len(drawings)


@st.fragment(run_every=WALL_POLL_S)
def live_wall() -> None:
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
    st.markdown(
        f"**{ref.name}** reads MNIST at **{mnist.accuracy:.1%}**, this class at "
        f"**{result.accuracy:.1%}** — {result.n:,} drawing{'s' if result.n != 1 else ''}"
    )
    if snapshot.skipped:
        st.warning(f"{snapshot.skipped} drawing(s) could not be read and are left out.")
    c1, c2, _spacer = st.columns([1, 1.4, 2])
    label = c1.selectbox("Digit meant", [ANY, *range(10)], key="wall_digit")
    outcome = c2.segmented_control(
        "Read", ["all", "right", "wrong"], default="all", key="wall_outcome"
    )
    html, shown = wall_html(set_id, version, None if label == ANY else label, outcome or "all")
    st.caption(f"The newest {shown} (meant → read, at the time it was sent; red: read wrong)")
    st.html(html)
    st.subheader("Per digit")
    st.caption("Digits read right least often are the ones this class writes unlike MNIST.")
    rows = result.per_class()
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
with ui.user_errors():
    snapshot, result = ui.class_evaluation(ref)
if result.n:
    ui.confusion_explorer(result, snapshot.images, key="class", noun="class drawing")
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
            f"Download the class set ({result.n} drawings, .npz)",
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
