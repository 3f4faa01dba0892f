"""Draw: a student draws a digit (or uploads a photo of one); the model answers at once,
then shows the 28x28 it saw, how the drawing became that 28x28 (and what the model would
answer without those steps), what its convolution layers saw, and which pixels mattered."""

import hashlib

import numpy as np
import streamlit as st
from PIL import Image
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.uploaded_file_manager import UploadedFile
from streamlit_drawable_canvas import st_canvas

from mnist_demo import charts, class_set, novelty, ui
from mnist_demo.errors import DigitLabError
from mnist_demo.inference import feature_grid
from mnist_demo.preprocess import (
    CANVAS_SIZE,
    BlankImageError,
    ImageFileError,
    Step,
    check_canvas,
    load_image,
    preprocessing_steps,
    squash_to_28,
)
from mnist_demo.runs import ModelRef

CANVAS_BACKGROUND = (0, 0, 0)  # white strokes on black, as MNIST's digits are


def has_ink(canvas_image: object) -> bool:
    return canvas_image is not None and bool(np.asarray(canvas_image)[..., :3].max() > 0)


UPLOAD_KEY = "last_upload"  # (file id, decoded image): a photo is decoded once


def uploaded_image(upload: UploadedFile) -> Image.Image:
    """The uploaded photo, decoded once per file (every stroke or toggle reruns this
    fragment), and counted once against this student's upload limit."""
    file_id, image = st.session_state.get(UPLOAD_KEY, (None, None))
    if file_id != upload.file_id:
        with ui.user_errors():
            ui.limit("upload")  # per student session: a class shares one server
        st.session_state[UPLOAD_KEY] = (upload.file_id, None)
    if image is None or file_id != upload.file_id:  # a refused file is refused again
        image = load_image(upload.getvalue())
        st.session_state[UPLOAD_KEY] = (upload.file_id, image)
    return image


ref = ui.page_setup(__file__, for_drawings=True)
st.title("Draw a digit")
st.caption(f"Model: **{ref.name}**. Draw one digit, 0–9, as big as you like.")


def clear_canvas() -> None:
    """A new key gives a fresh, empty canvas (and an empty undo history)."""
    st.session_state.canvas_version = st.session_state.get("canvas_version", 0) + 1


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
CANVAS_TOOLBAR_CSS = """
.dc-root { display: flex !important; flex-direction: column !important; }
.dc-root > .dc-toolbar {
  position: static !important; order: -1; align-self: flex-end;
  opacity: 1 !important; z-index: auto !important; transition: none !important;
  padding: 0 0 0.25rem !important;
}
@media (pointer: coarse) { .dc-root .dc-icon-button { padding: 0.5rem !important; } }
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
canvas_toolbar_fix = st.components.v2.component(
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


def remembered_toggle(label: str, name: str) -> bool:
    """A toggle whose value is kept outside the widget: a blank canvas returns before the
    toggle is drawn, and Streamlit forgets the state of undrawn widgets."""
    widget, kept = f"{name}_toggle", f"show_{name}"

    def remember() -> None:
        st.session_state[kept] = st.session_state[widget]

    return st.toggle(label, value=st.session_state.get(kept, False), key=widget, on_change=remember)


def read(ref: ModelRef, predictor, image28: np.ndarray) -> tuple[np.ndarray, novelty.Verdict]:
    """The model's probabilities for a 28x28 and what to say about them (a digit, not
    sure, or not a digit: novelty.verdict, with the rule fitted for this model file)."""
    probabilities = predictor.predict(image28)
    with ui.user_errors():
        verdict = novelty.verdict(predictor.model, image28, probabilities, ref.path)
    return probabilities, verdict


def metric_words(verdict: novelty.Verdict) -> tuple[str, str]:
    """(value, note) for the Prediction metric: "7" / "93% confident", "7?" / "not sure
    (41%)", "?" / "not a digit"."""
    if verdict.kind == novelty.NOT_A_DIGIT:
        return "?", "not a digit"
    if verdict.kind == novelty.NOT_SURE:
        return f"{verdict.digit}?", f"not sure ({verdict.confidence:.0%})"
    return str(verdict.digit), f"{verdict.confidence:.0%} confident"


def show_answer(
    probabilities: np.ndarray, verdict: novelty.Verdict, phone_line: DeltaGenerator
) -> None:
    """The model's answer: the metric, a plain sentence when it does not think this is a
    digit, and every digit's bar here; the same answer as one line in `phone_line`
    (above the canvas, shown on phones only)."""
    value, note = metric_words(verdict)
    st.metric(
        "Prediction",
        value,
        delta=note,
        delta_color="normal" if verdict.kind == novelty.DIGIT else "off",
        delta_arrow="off",
        help="The digit with the highest probability, and that probability. A drawing "
        "unlike any digit the model knows is flagged, whatever that probability says.",
    )
    if verdict.kind == novelty.NOT_A_DIGIT:
        st.warning(f"{verdict.text}.", icon=":material/help:")
    st.html(charts.probability_bars(probabilities))
    phone_line.markdown(f"Prediction: **{value}** · {note}")


# A fragment: a stroke reruns only the canvas and the answer, not the sidebar and the
# rest of the page. Thirty students draw at once (benchmarks/classroom.py).
@st.fragment
def draw_and_answer(ref: ModelRef) -> None:
    if not ref.path.exists():  # deleted on the Train page since this page was drawn
        st.rerun(scope="app")  # the sidebar then falls back to an existing model
    draw_col, answer_col = st.columns([1, 1], gap="large")
    with draw_col:
        brush_col, clear_col = st.columns([3, 1], vertical_alignment="bottom")
        brush = brush_col.slider("Brush size", min_value=8, max_value=40, value=20, step=2)
        clear_col.button("Clear", icon=":material/delete:", on_click=clear_canvas)
        with st.container(key=PHONE_ANSWER_KEY):
            phone_line = st.empty()
        canvas = st_canvas(
            stroke_width=brush,
            stroke_color="#ffffff",
            background_color="#{:02x}{:02x}{:02x}".format(*CANVAS_BACKGROUND),
            height=CANVAS_SIZE,
            width=CANVAS_SIZE,
            drawing_mode="freedraw",
            return_image_data=True,
            key=f"canvas-{st.session_state.get('canvas_version', 0)}",
        )
        st.caption("Undo and redo are in the toolbar above the canvas.")
        upload = st.file_uploader(
            "…or upload a photo of one handwritten digit",
            type=["png", "jpg", "jpeg", "webp"],
            help="Dark ink on light paper or light on dark; crop close to the digit.",
        )

    source = "photo" if upload is not None else "drawing"
    with answer_col:
        try:
            image = uploaded_image(upload) if upload is not None else canvas.image_data
            if image is None:
                raise BlankImageError("nothing drawn yet")
            if upload is not None and has_ink(canvas.image_data):
                st.info("Reading your photo. Remove it (×) to read your drawing.", icon="📷")
            if upload is None:
                check_canvas(image, background=CANVAS_BACKGROUND)
            with ui.user_errors():
                ui.limit("drawing")
            steps = preprocessing_steps(image)
        except BlankImageError:
            phone_line.markdown(NO_ANSWER)
            if upload is not None:
                st.error(
                    "No digit found in this photo: it looks like one flat colour. Try a "
                    "photo with the digit large and in focus.",
                    icon="⚠️",
                )
            else:
                st.info("Draw a digit on the black square, and the model will read it.", icon="✍️")
            return
        except ImageFileError as e:
            phone_line.markdown(NO_ANSWER)
            st.error(str(e), icon="⚠️")
            return
        except DigitLabError as e:  # too small, painted all over, the server busy
            phone_line.markdown(NO_ANSWER)
            st.warning(str(e), icon="✍️")
            return

        with ui.user_errors():
            predictor = ui.predictor(ref)
        seen = steps[-1].image
        probabilities, verdict = read(ref, predictor, seen)
        show_answer(probabilities, verdict, phone_line)
        st.image(
            charts.upscale(seen, 8),
            caption=f"What the model saw: your {source} as a 28×28 MNIST image",
            width=224,
            output_format="PNG",  # sharp pixels; JPEG would blur the 28x28 grid
        )
        send_to_class(seen, image, verdict.digit, verdict.confidence, ref)
    how_the_model_sees(image, source, steps, predictor, ref)
    inside_the_network(predictor, seen, verdict.digit)


def send_to_class(
    seen: np.ndarray, picture: object, digit: int, confidence: float, ref: ModelRef
) -> None:
    """The drawing joins the class set with the digit the student meant (the model's
    answer is pre-selected: one tap when it is right, two when it is wrong)."""
    store = ui.class_store()
    with st.container(border=True):
        drawing_key = hashlib.sha256(np.ascontiguousarray(seen).tobytes()).hexdigest()[:12]
        meant = st.pills(
            "Send it to the class: the digit you meant",
            list(range(10)),
            default=digit,
            key=f"meant-{drawing_key}",  # a new drawing starts on its own answer again
        )
        send, take_back = st.columns([1, 1])
        if send.button(
            "Send to the class", type="primary", icon=":material/send:", disabled=meant is None
        ):
            try:
                sent = store.add(
                    seen,
                    int(meant),
                    session=ui.session_tag(),
                    predicted=digit,
                    confidence=confidence,
                    model=ref.name,
                    canvas_png=class_set.canvas_thumbnail(np.asarray(picture)),
                )
            except DigitLabError as e:
                st.error(str(e), icon="⚠️")
            else:
                read = "read right" if sent.correct else f"read as {digit}"
                st.success(f"Sent: you meant {sent.label}, the model {read}.", icon="✅")
        if take_back.button(
            "Take back",
            icon=":material/undo:",
            help="Remove your last drawing from the class set",
        ):
            try:
                store.take_back(ui.session_tag())
            except DigitLabError as e:
                st.error(str(e), icon="⚠️")
            else:
                st.success("Your last drawing is out of the class set.", icon="↩️")


STEP_SIDE = 100  # px: each picture of the strip is this long on its longer side
WITHOUT_WIDTH = 220  # px: the strip and this box share one row on a 1400 px screen


def step_picture(image: np.ndarray | Image.Image, caption: str | None = None) -> None:
    """`image` (uint8, or floats in [0, 1]) shown STEP_SIDE px on its longer side. A small
    one is first enlarged by whole pixels, so a 20x20 keeps its sharp grid; a large one
    reduced (a photo would otherwise be sent at full size on every rerun)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    longest = max(array.shape[:2])
    if longest <= STEP_SIDE:
        array = charts.upscale(array, STEP_SIDE // longest)
    else:
        picture = Image.fromarray(array)
        picture.thumbnail((STEP_SIDE, STEP_SIDE))
        array = np.asarray(picture)
    width = round(array.shape[1] * STEP_SIDE / max(array.shape[:2]))
    st.image(array, caption=caption, width=width, output_format="PNG")


def how_the_model_sees(
    picture: object, source: str, steps: list[Step], predictor, ref: ModelRef
) -> None:
    """On request (the page stays quick without it): the picture after each of
    `to_mnist`'s steps, and what the model answers when they are skipped: the whole
    canvas squashed to 28x28, where a small digit in a corner stays small and off-centre."""
    st.header(f"How the model sees your {source}")
    if not remembered_toggle("Show the steps", "steps"):
        st.caption(
            f"Turn on to see how your {source} becomes the 28×28 image the model reads, and "
            "what it would answer without those steps."
        )
        return
    st.caption(
        "Every MNIST digit was cropped, shrunk into a 20×20 box and centred by its centre of "
        f"mass in 28×28, so the model only knows digits that look like that. Your {source} "
        "goes through the same steps."
    )
    pictures = [(picture, f"Your {source}")] + [(s.image, s.caption) for s in steps]
    with st.container(horizontal=True, key="preprocessing-steps"):
        for i, (image, caption) in enumerate(pictures):
            step_picture(image, f"{i}. {caption}")
        squashed = squash_to_28(steps[0].image)  # the first step is the ink map
        value, note = metric_words(read(ref, predictor, squashed)[1])
        with st.container(border=True, width=WITHOUT_WIDTH, key="without-steps"):
            step_picture(squashed)
            st.markdown(
                f"Without the steps (the whole {source} squashed to 28×28) the model would "
                f"read **{value}**, {note}."
            )


def inside_the_network(predictor, seen, digit: int) -> None:
    """On request: feature maps and saliency cost the server more than the answer
    itself, which matters when thirty students draw at once."""
    st.header("Inside the network")
    if not remembered_toggle("Show what the network sees", "inside"):
        st.caption("Turn on to see each filter's response and which pixels drove the answer.")
        return
    st.caption(
        "Each small square is one filter's response to your digit: bright where the filter "
        "found its pattern. The saliency map marks the pixels whose removal would most "
        "weaken the answer."
    )
    with ui.user_errors():
        ui.limit("inside")
    maps = predictor.feature_maps(seen)
    heat = predictor.saliency(seen, target=digit)
    first, second, why = st.columns([1.4, 1, 0.8])
    for column, (name, fmap) in zip((first, second), list(maps.items())[:2], strict=False):
        height, width, filters = fmap.shape
        column.image(
            charts.upscale(feature_grid(fmap, cols=8), 2 if width > 20 else 3),
            caption=f"{name}: {filters} filters, {height}×{width} each",
        )
    why.image(
        charts.saliency_overlay(seen, heat, scale=8),
        caption=f"Why {digit}: the red pixels mattered most",
        width=224,
    )


draw_and_answer(ref)
# Outside the fragment, after it: mounted once for the page, and their empty elements sit
# at the page's end, where their spacing shows nowhere.
canvas_toolbar_fix(data={"css": CANVAS_TOOLBAR_CSS}, key="canvas-toolbar-fix")
st.markdown(PHONE_ANSWER_CSS, unsafe_allow_html=True)
