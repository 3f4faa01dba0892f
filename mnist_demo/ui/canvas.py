"""The Draw page's input widgets: the drawing canvas with its toolbar fix and the phone's
one-line answer above it, a photo upload decoded once, and toggles that survive a
blank canvas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.uploaded_file_manager import UploadedFile

from mnist_demo import preprocess
from mnist_demo.reader import CANVAS_BACKGROUND
from mnist_demo.ui.classroom import limit
from mnist_demo.ui.widgets import user_errors

# streamlit-drawable-canvas 0.13.0 keeps its toolbar (send, undo, redo, edit, reset)
# invisible (opacity 0, z-index 20) over the canvas's top-right strip until the mouse
# has hovered the canvas for 0.1 s: a stroke started there went to the toolbar, and on
# a touch screen, which has no hover, always did. These rules give the toolbar a row of
# its own above the canvas, always shown: every point of the canvas takes strokes, and
# undo and redo are in sight (finger-sized on a touch screen). The component draws
# itself in a shadow root (isolate_styles), where a page <style> can't reach, so a tiny
# component of ours adopts the rules into every isolated component's shadow root (they
# name only the canvas's dc-* classes). tests/test_canvas_component.py fails if an
# upgrade changes what this relies on; tests/e2e/test_canvas_e2e.py draws everywhere.
# The toolbar keeps undo and redo only, each at least 2rem (WCAG's 24 px targets): the
# upload arrow ("Update the app", needless with live updates) looked like a photo upload,
# the trash icon duplicated Clear, and "Edit" (select and move strokes) is not a lesson.
CANVAS_TOOLBAR_CSS = """
.dc-root { display: flex !important; flex-direction: column !important; }
.dc-root > .dc-toolbar {
  position: static !important; order: -1; align-self: flex-end;
  opacity: 1 !important; z-index: auto !important; transition: none !important;
  padding: 0 0 0.25rem !important;
}
@media (pointer: coarse) { .dc-root .dc-icon-button { padding: 0.5rem !important; } }
.dc-root .dc-icon-button { min-width: 2rem; min-height: 2rem; }
.dc-root .dc-icon-button svg { width: 1.1rem; height: 1.1rem; }
.dc-toolbar .dc-icon-button[title="Update the app with this drawing"],
.dc-toolbar .dc-icon-button[title="Edit"],
.dc-toolbar .dc-icon-button[title="Reset canvas & history"],
.dc-toolbar .dc-toolbar-separator,
.dc-toolbar .dc-toolbar-contextual { display: none !important; }
"""
CANVAS_TOOLBAR_JS = """
export default function ({ data }) {
  const sheet = (window.digitLabCanvasSheet ??= new CSSStyleSheet());
  sheet.replaceSync(data.css);
  let frame = 0;
  const adopt = (tries) => {
    let waiting = false;
    for (const host of document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')) {
      const root = host.shadowRoot;  // Streamlit attaches it just after the host
      if (!root) waiting = true;  // appears: look again next frame
      else if (!root.adoptedStyleSheets.includes(sheet))
        root.adoptedStyleSheets = [...root.adoptedStyleSheets, sheet];
    }
    cancelAnimationFrame(frame);
    if (waiting && tries > 0) frame = requestAnimationFrame(() => adopt(tries - 1));
  };
  const observer = new MutationObserver(() => adopt(120));
  observer.observe(document.body, { childList: true, subtree: true });
  adopt(120);
  return () => { observer.disconnect(); cancelAnimationFrame(frame); };
}
"""
_toolbar_fix = st.components.v2.component(
    "digit_lab.canvas_toolbar", js=CANVAS_TOOLBAR_JS, isolate_styles=False
)

# On a phone (<= 480 px) the columns stack and the answer lands under the canvas, out of
# sight while drawing: a one-line answer above the canvas is shown there instead. The line
# always holds one line of text, so the canvas does not jump under the finger when the
# first answer arrives.
PHONE_ANSWER_KEY = "phone-answer"
NO_ANSWER = "Prediction: –"
PHONE_ANSWER_CSS = f"""<style>
@media (min-width: 481px) {{ .st-key-{PHONE_ANSWER_KEY} {{ display: none; }} }}
</style>"""
UPLOAD_KEY = "last_upload"  # (file id, decoded image): a photo is decoded once


@dataclass(frozen=True)
class Drawing:
    """What the canvas holds: `image` the canvas's RGBA pixels (None before the first
    stroke), `phone_line` the one-line answer above it, on phones ("Prediction: –")."""

    image: np.ndarray | None
    phone_line: DeltaGenerator

    @property
    def has_ink(self) -> bool:
        return self.image is not None and bool(np.asarray(self.image)[..., :3].max() > 0)

    def answer(self, headline: str, note: str) -> None:
        self.phone_line.markdown(f"Prediction: **{headline}** · {note}")


def _clear() -> None:
    """A new key gives a fresh, empty canvas (and an empty undo history)."""
    st.session_state.canvas_version = st.session_state.get("canvas_version", 0) + 1


def drawing_canvas() -> Drawing:
    """The brush size, Clear, the phone's answer line and the 280x280 canvas (white on
    black, undo and redo in its toolbar). Call `canvas_styles()` once, after it."""
    # Imported here, at each call: the page tests put a stand-in in sys.modules per test.
    from streamlit_drawable_canvas import st_canvas  # type: ignore[import-untyped]

    brush_col, clear_col = st.columns([3, 1], vertical_alignment="bottom")
    brush = brush_col.slider("Brush size", min_value=8, max_value=40, value=20, step=2)
    clear_col.button("Clear", icon=":material/delete:", on_click=_clear)
    with st.container(key=PHONE_ANSWER_KEY):
        phone_line = st.empty()
    phone_line.markdown(NO_ANSWER)
    canvas = st_canvas(
        stroke_width=brush,
        stroke_color="#ffffff",
        background_color="#{:02x}{:02x}{:02x}".format(*CANVAS_BACKGROUND),
        height=preprocess.CANVAS_SIZE,
        width=preprocess.CANVAS_SIZE,
        drawing_mode="freedraw",
        return_image_data=True,
        key=f"canvas-{st.session_state.get('canvas_version', 0)}",
    )
    st.caption("Undo and redo are in the toolbar above the canvas.")
    return Drawing(canvas.image_data, phone_line)


def canvas_styles() -> None:
    """The toolbar fix and the phone line's CSS: mounted once for the page, outside any
    fragment, at the page's end, where their empty elements' spacing shows nowhere."""
    _toolbar_fix(data={"css": CANVAS_TOOLBAR_CSS}, key="canvas-toolbar-fix")
    st.markdown(PHONE_ANSWER_CSS, unsafe_allow_html=True)


def photo_upload() -> UploadedFile | None:
    return st.file_uploader(
        "…or upload a photo of one handwritten digit",
        type=["png", "jpg", "jpeg", "webp"],
        help="Dark ink on light paper or light on dark; crop close to the digit.",
    )


def uploaded_photo(upload: UploadedFile) -> Image.Image | None:
    """The uploaded photo, decoded once per file (every stroke or toggle reruns the
    page's fragment) and counted once against this student's upload limit; None, with
    the reason shown (user_errors), when it is refused: a refused file stays refused."""
    file_id, image = st.session_state.get(UPLOAD_KEY, (None, None))
    if file_id == upload.file_id and isinstance(image, Image.Image):
        return image
    with user_errors(stop=False):
        if file_id != upload.file_id:
            limit("upload")  # per student session: a class shares one server
            st.session_state[UPLOAD_KEY] = (upload.file_id, None)
        decoded = preprocess.load_image(upload.getvalue())  # looked up here: tests count it
        st.session_state[UPLOAD_KEY] = (upload.file_id, decoded)
        return decoded
    return None


def remembered_toggle(label: str, name: str) -> bool:
    """A toggle whose value is kept outside the widget: a blank canvas returns before the
    toggle is drawn, and Streamlit forgets the state of undrawn widgets."""
    widget, kept = f"{name}_toggle", f"show_{name}"

    def remember() -> None:
        st.session_state[kept] = st.session_state[widget]

    return st.toggle(label, value=st.session_state.get(kept, False), key=widget, on_change=remember)
