"""Digit Lab: the Keras Lab 7 MNIST CNN as a teaching app. The core imports no streamlit
(except ui.py), so everything here can be tested without a browser."""

import os

# TensorFlow's start-up notices (oneDNN is on, which CPU instructions it uses) are
# INFO lines for developers; every entry point imports this package before TensorFlow,
# so they are silenced here once. Warnings and errors still print. oneDNN itself stays
# on (TF_ENABLE_ONEDNN_OPTS): it is what makes training fast on a CPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
