"""Draw: a student draws a digit (or uploads a photo of one); the model answers at once,
then shows the 28x28 it saw, how the drawing became that 28x28 (and what the model would
answer without those steps), what its convolution layers saw, and which pixels mattered.
The reading itself is one call: `reader.Reader.read` (via `ui.reader`)."""

import numpy as np
import streamlit as st

from mnist_demo import charts, novelty, ui
from mnist_demo.inference import feature_grid
from mnist_demo.models import ModelRef
from mnist_demo.preprocess import for_display, squash_to_28
from mnist_demo.reader import Reader, Reading

STEP_SIDE = 100  # px: each picture of the strip is this long on its longer side
# A narrow step (a cropped "1") made its caption as narrow as its picture, broken mid-word
# ("Croppe / d to the / ink"): each caption gets a width of its own and keeps words whole.
STEP_CAPTIONS_CSS = """<style>
.st-key-preprocessing-steps > [data-testid="stElementContainer"] { min-width: 7rem; }
.st-key-preprocessing-steps [data-testid="stFullScreenFrame"],
.st-key-preprocessing-steps [data-testid="stFullScreenFrame"] > div,
.st-key-preprocessing-steps [data-testid="stImage"] { width: 100% !important; }
.st-key-preprocessing-steps [data-testid="stImageContainer"] {
  display: flex; flex-direction: column; align-items: center; }
.st-key-preprocessing-steps [data-testid="stImageCaption"] {
  width: 100% !important; max-width: 7rem !important; overflow-wrap: normal; }
</style>"""
WITHOUT_WIDTH = 220  # px: the strip and this box share one row on a 1400 px screen

ref = ui.page_setup(__file__, for_drawings=True)
st.title("Draw a digit")
st.caption(f"Model: **{ref.name}**. Draw one digit, 0–9, as big as you like.")


# A fragment: a stroke reruns only the canvas and the answer, not the sidebar and the
# rest of the page. Thirty students draw at once (benchmarks/classroom.py).
@st.fragment
def draw_and_answer(ref: ModelRef) -> None:
    if not ref.path.exists():  # deleted on the Train page since this page was drawn
        st.rerun(scope="app")  # the sidebar then falls back to an existing model
    draw_col, answer_col = st.columns([1, 1], gap="large")
    with draw_col:
        drawing = ui.drawing_canvas()
        upload = ui.photo_upload()

    reading: Reading | None = None
    with answer_col:
        if upload is None and not drawing.has_ink:
            st.info("Draw a digit on the black square, and the model will read it.", icon="✍️")
            return
        picture = drawing.image if upload is None else ui.uploaded_photo(upload)
        if picture is None:  # a refused photo: user_errors said why
            return
        if upload is not None and drawing.has_ink:
            st.info("Reading your photo. Remove it (×) to read your drawing.", icon="📷")
        with ui.user_errors(stop=False):  # too small, painted over, the server busy
            ui.limit("drawing")
            reader = ui.reader(ref)
            reading = reader.read(picture)
        if reading is None:
            return
        show_answer(reading)
        drawing.answer(reading.headline, reading.note)
        st.image(
            charts.upscale(reading.image28, 8),
            caption=f"What the model saw: your {reading.source} as a 28×28 MNIST image",
            alt=f"Your {reading.source} as the 28×28 image the model reads",
            width=224,
            output_format="PNG",  # sharp pixels; JPEG would blur the 28x28 grid
        )
        ui.send_to_class(reading, ref)
    how_the_model_sees(reading, reader)
    inside_the_network(reading, reader)


def show_answer(reading: Reading) -> None:
    """The model's answer: the metric, a plain sentence when it does not think this is a
    digit, and every digit's bar."""
    st.metric(
        "Prediction",
        reading.headline,
        delta=reading.note,
        delta_color="normal" if reading.verdict.kind == novelty.DIGIT else "off",
        delta_arrow="off",
        help="The digit with the highest probability, and that probability. A drawing "
        "unlike any digit the model knows is flagged, whatever that probability says.",
    )
    if reading.verdict.kind == novelty.NOT_A_DIGIT:
        st.warning(f"{reading.sentence}.", icon=":material/help:")
    st.html(charts.probability_bars(reading.probabilities))


def step_picture(image: np.ndarray, caption: str | None = None, alt: str | None = None) -> None:
    array = for_display(image, STEP_SIDE)
    width = round(array.shape[1] * STEP_SIDE / max(array.shape[:2]))
    st.image(array, caption=caption, width=width, output_format="PNG", alt=alt or caption)


def how_the_model_sees(reading: Reading, reader: Reader) -> None:
    """On request (the page stays quick without it): the picture after each of
    `to_mnist`'s steps, and what the model answers when they are skipped: the whole
    canvas squashed to 28x28, where a small digit in a corner stays small and off-centre."""
    source = reading.source
    st.header(f"How the model sees your {source}")
    if not ui.remembered_toggle("Show the steps", "steps"):
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
    pictures = [(reading.picture, f"Your {source}")] + [(s.image, s.caption) for s in reading.steps]
    with st.container(horizontal=True, key="preprocessing-steps"):
        for i, (image, caption) in enumerate(pictures):
            step_picture(image, f"{i}. {caption}")
        squashed = squash_to_28(reading.steps[0].image)  # the first step is the ink map
        without = reader.read(squashed)
        with st.container(border=True, width=WITHOUT_WIDTH, key="without-steps"):
            step_picture(squashed, alt=f"Your {source} squashed whole to 28×28")
            st.markdown(
                f"Without the steps (the whole {source} squashed to 28×28) the model would "
                f"read **{without.headline}**, {without.note}."
            )


def inside_the_network(reading: Reading, reader: Reader) -> None:
    """On request: feature maps and saliency cost the server more than the answer
    itself, which matters when thirty students draw at once."""
    st.header("Inside the network")
    if not ui.remembered_toggle("Show what the network sees", "inside"):
        st.caption("Turn on to see each filter's response and which pixels drove the answer.")
        return
    st.caption(
        "Each small square is one filter's response to your digit: bright where the filter "
        "found its pattern. The saliency map marks the pixels whose removal would most "
        "weaken the answer."
    )
    with ui.user_errors():
        ui.limit("inside")
    seen, digit = reading.image28, reading.digit
    maps = reader.predictor.feature_maps(seen)
    heat = reader.predictor.saliency(seen, target=digit)
    first, second, why = st.columns([1.4, 1, 0.8])
    for column, (name, fmap) in zip((first, second), list(maps.items())[:2], strict=False):
        height, width, filters = fmap.shape
        column.image(
            charts.upscale(feature_grid(fmap, cols=8), 2 if width > 20 else 3),
            caption=f"{name}: {filters} filters, {height}×{width} each",
            alt=f"What each of the {filters} filters of {name} found in your digit",
        )
    why.image(
        charts.saliency_overlay(seen, heat, scale=8),
        caption=f"Why {digit}: the red pixels mattered most",
        alt=f"Your digit with the pixels that mattered most for {digit} in red",
        width=224,
    )


draw_and_answer(ref)
ui.canvas_styles()  # outside the fragment, after it: mounted once for the page
st.markdown(STEP_CAPTIONS_CSS, unsafe_allow_html=True)
