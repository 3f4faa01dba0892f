"""Join: what the instructor puts on the projector so the class gets in within seconds:
the address to open, the same as a large QR code, and how many are connected."""

import html

import streamlit as st

from mnist_demo import classroom, ui

JOIN_POLL_S = 2.0

ui.page_setup(__file__)
st.title("Join the class")

url = ui.join_url()
if classroom.serves_only_this_machine(url):
    st.warning(
        "Students can't reach Digit Lab yet: it only answers on this computer. To open it "
        "to the class, stop it (Ctrl+C in its terminal) and start it again with "
        "**make class**; this page then shows the address to give the students.",
        icon=":material/wifi_off:",
    )

qr, text = st.columns([1, 1.2], vertical_alignment="center")
qr.image(
    classroom.qr_png(url),
    width="stretch",
    caption="Scan with a phone's camera",
    alt=f"QR code of the address {url}",
)
with text:
    st.markdown("Open this address on your laptop or phone:")
    st.markdown(
        "<p style='font-size:2.6rem;font-weight:700;word-break:break-all;margin:0'>"
        f"{html.escape(url)}</p>",
        unsafe_allow_html=True,
    )
    st.caption("Same Wi-Fi as this computer. Everyone starts as a student.")


@st.fragment(run_every=JOIN_POLL_S)
def headcount() -> None:
    counts = ui.connected()
    if counts is None:
        st.caption("The number of connected browsers is not available on this server.")
        return
    students, instructors = counts
    st.metric("Students connected", students)
    if instructors:
        st.caption(f"and {instructors} instructor browser{'s' if instructors > 1 else ''}")


with text:
    headcount()
