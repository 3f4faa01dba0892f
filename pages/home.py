"""Home: Lab 7 step by step, with the app's own data and model."""

import platform

import keras
import pandas as pd
import streamlit as st
import tensorflow as tf

from mnist_demo import charts, ui
from mnist_demo.data import one_hot, to_model_input

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
    st.image(charts.lab_grid(x_train), caption="The first four training images")
with right:
    st.write(f"Their labels: **{', '.join(str(v) for v in y_train[:4])}**")
    st.write("Versions, as the lab prints them:")
    st.dataframe(
        pd.DataFrame(
            {
                "library": ["Python", "TensorFlow", "Keras"],
                "version": [platform.python_version(), tf.__version__, keras.__version__],
            }
        ),
        hide_index=True,
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
st.dataframe(
    pd.DataFrame([{"array": name, "before": str(b), "after": str(a)} for name, b, a in shapes]),
    hide_index=True,
)
st.write("One-hot encoding turns each label into ten numbers, one per digit:")
labels = y_train[:5]
encoded = pd.DataFrame(one_hot(labels).astype(int), columns=[str(d) for d in range(10)])
encoded.insert(0, "label", labels)
st.dataframe(encoded, hide_index=True)

st.header("3 · The model")
rows = ui.model_summary("lab7")
st.dataframe(pd.DataFrame(rows), hide_index=True)
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

st.header("Explore")
cols = st.columns(4)
cols[0].page_link("pages/train.py", label="Train a model live", icon=":material/model_training:")
cols[1].page_link("pages/test_set.py", label="Browse the test set", icon=":material/grid_view:")
cols[2].page_link("pages/misclassified.py", label="See the mistakes", icon=":material/error:")
cols[3].page_link("pages/draw.py", label="Draw a digit", icon=":material/draw:")
