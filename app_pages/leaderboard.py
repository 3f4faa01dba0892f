"""Leaderboard: every ended experiment of the class, ranked, under two reference rows:
the lab's network trained within the class's limits (what a student can reach) and the
shipped 12-epoch Lab 7. The score on the class's own drawings (with how many drawings it
is on) stays hidden from students until the instructor reveals it, and they cannot sort
by it meanwhile. A click on a row shows that run's curves over the lab's and its answers
to the workbook's (a) and (b), and its "what I changed" whole; the instructor can put it
on the projector or make it the class's model for Draw. Paged, and refreshed live."""

import streamlit as st

from mnist_demo import experiments, ui
from mnist_demo.ui import experiments as board

ui.page_setup(__file__)
registry = ui.registry()
board.projector_banner()
st.title("Class leaderboard")

if ui.is_instructor():
    ui.setting_toggle(
        "Reveal the class-drawings score to students",
        value=experiments.revealed(registry),
        change=lambda on: experiments.reveal(registry, on, role=ui.role()),
        help="Like a competition's private leaderboard: who built the network that reads "
        "this room's handwriting best.",
    )

left, right = st.columns([2, 1])
show_class = not experiments.class_score_hidden(registry, "", ui.role())
sort = left.radio(
    "Sort by",
    [s for s in board.SORTS if show_class or s != "class_accuracy"],
    format_func=board.SORTS.__getitem__,
    horizontal=True,
)


@st.fragment(run_every=board.LEADERBOARD_POLL_S)
def table(sort: str) -> None:
    with ui.user_errors():  # revealed or hidden again meanwhile: the sort is refused
        rows = experiments.leaderboard(registry, role=ui.role(), sort=sort)
    show_class = not experiments.class_score_hidden(registry, "", ui.role())
    number = st.session_state.get("leaderboard-page", 1)
    shown, pages = experiments.page(rows, number, board.LEADERBOARD_PAGE_SIZE)
    frame = board.leaderboard_frame(shown, show_class, with_reference=True)
    st.caption(
        f"{len(rows)} experiment(s) ended"
        + ("" if show_class else " · the class-drawings score is hidden until revealed")
    )
    picked = st.dataframe(
        frame,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=f"leaderboard-{sort}-{number}",
        column_config=board.LEADERBOARD_COLUMNS,
        row_height=board.LEADERBOARD_ROW_HEIGHT,
        width="stretch",
    )
    if pages > 1:
        st.number_input("Page", 1, pages, key="leaderboard-page", width=160)
    if picked.selection.rows:
        board.run_detail(int(frame.iloc[picked.selection.rows[0]]["run"]))
    else:
        st.caption("Click a row for its curves and its answers to the workbook's (a) and (b).")


right.caption("Updated every few seconds.")
table(sort)
