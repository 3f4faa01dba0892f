"""Home: Lab 7 step by step, with the app's own data and model, down to the answers to
the lab's questions (a) to (e) for the session's model. Small tables are st.table (HTML
text a reader can select, copy and find), not st.dataframe's canvas grid."""

import platform

import keras
import pandas as pd
import streamlit as st
import tensorflow as tf

from mnist_demo import charts, ui
from mnist_demo.data import one_hot, to_model_input

MISTAKES_SHOWN = 8  # a preview: one row of tiles on a 1280-pixel-wide screen

ref = ui.page_setup(__file__)

st.title("Lab 7 — CNN with Keras")
st.write(
    "A convolutional network learns to read handwritten digits from MNIST: 60,000 "
    "training images and 10,000 test images of 28×28 grey pixels. Each step below is "
    "the lab's, run live by this app."
)

with ui.user_errors():
    (x_train, y_train), (x_test, y_test) = ui.dataset()

st.header("1 · Load the data and look at a few images")
left, right = st.columns([1, 2])
with left:
    st.image(
        charts.lab_grid(x_train),
        caption="The first four training images",
        alt="The first four training images, handwritten digits "
        + ", ".join(str(v) for v in y_train[:4]),
    )
with right:
    st.write(f"Their labels: **{', '.join(str(v) for v in y_train[:4])}**")
    st.write("Versions, as the lab prints them:")
    st.table(
        pd.DataFrame(
            {
                "library": ["Python", "TensorFlow", "Keras"],
                "version": [platform.python_version(), tf.__version__, keras.__version__],
            }
        ),
        hide_index=True,
        width="content",
    )

st.header("2 · Shape the data for the network")
sample = to_model_input(x_train[:1])
model_shape = sample.shape[1:]
shapes = [
    ("X_train", x_train.shape, (len(x_train), *model_shape)),
    ("X_test", x_test.shape, (len(x_test), *model_shape)),
    ("pixel values", f"{x_train.dtype} 0–255", f"{sample.dtype} 0–1"),
    ("y_train", y_train.shape, (len(y_train), 10)),
]
st.table(
    pd.DataFrame([{"array": name, "before": str(b), "after": str(a)} for name, b, a in shapes]),
    hide_index=True,
    width="content",
)
st.write("One-hot encoding turns each label into ten numbers, one per digit:")
labels = y_train[:5]
encoded = pd.DataFrame(one_hot(labels).astype(int), columns=[str(d) for d in range(10)])
encoded.insert(0, "label", labels)
st.table(encoded, hide_index=True, width="content")

st.header("3 · The model")
rows = ui.model_summary("lab7")
st.table(pd.DataFrame(rows).style.format({"parameters": "{:,}"}), hide_index=True, width="content")
st.write(f"Total parameters: **{sum(r['parameters'] for r in rows):,}**")
st.caption(
    "Conv2D 32 5×5 → MaxPool → Conv2D 64 → MaxPool → Dropout 0.25 → Flatten → Dense 1000 "
    "→ Dropout 0.5 → Dense 10 softmax; Adam, categorical cross-entropy. The lab trains it "
    "for 12 epochs at batch size 128 with seed 7."
)

st.header(f"4 · The answers, for {ref.name}")
with ui.user_errors():
    result = ui.evaluation(ref)
a, b, c = st.columns(3)
a.metric("(a) Test loss", f"{result.loss:.4f}")
b.metric("(a) Test accuracy", f"{result.accuracy:.2%}")
c.metric(
    "(b) Misclassified",
    f"{result.misclassified_count} of {result.n:,}",
    help="Test images whose most probable digit is not the label.",
)

st.subheader("(c) Model - Accuracy and Model - Loss")
with ui.user_errors():
    history = ui.recorded_history(ref)
if history.get("loss"):
    st.caption(
        "Measured after every epoch of training: on the training images (train) and on "
        "the 10,000 test images the lab validates on (test)."
    )
    ui.epoch_charts(history)
else:
    st.caption(f"{ref.name} has no recorded training history, so there are no curves to draw.")
st.page_link(
    "app_pages/train.py",
    label="Train a model and watch these curves grow",
    icon=":material/model_training:",
)

st.subheader("(d) Predict test image n")
n = st.columns([1, 4])[0].number_input(
    "n",
    value=0,
    step=1,
    key="home_n",
    help=f"The number of a test image, 0 to {result.n - 1:,}. The lab's example is 0.",
)
with st.columns([3, 2])[0], ui.user_errors(stop=False):  # a wrong n spoils only (d)
    ui.digit_detail(result.check_index(n), result, x_test)
st.page_link(
    "app_pages/browse.py",
    label="Browse and filter all the test images",
    icon=":material/grid_view:",
)

st.subheader("(e) The misclassified images")
mistakes = result.misclassified_indices()[:MISTAKES_SHOWN]
if len(mistakes):
    st.write(
        f"The model's {len(mistakes)} most confident mistakes, as *true → predicted* and "
        "the test image's number (give it to (d) for the probabilities):"
    )
    st.html(
        charts.wall_tiles(
            x_test[mistakes],
            [f"{result.labels[i]} → {result.predictions[i]}" for i in mistakes],
            [True] * len(mistakes),
            mistakes,
            noun="test image",
            label="The model's most confident mistakes",
        )
    )
else:
    st.write("The model reads every test image right.")
st.page_link(
    "app_pages/misclassified.py",
    label=f"All {result.misclassified_count} mistakes, with the confusion matrix",
    icon=":material/error:",
)

st.header("Explore")
cols = st.columns(4)
cols[0].page_link(
    "app_pages/train.py", label="Train a model live", icon=":material/model_training:"
)
cols[1].page_link("app_pages/browse.py", label="Browse the test set", icon=":material/grid_view:")
cols[2].page_link("app_pages/misclassified.py", label="See the mistakes", icon=":material/error:")
cols[3].page_link("app_pages/draw.py", label="Draw a digit", icon=":material/draw:")
