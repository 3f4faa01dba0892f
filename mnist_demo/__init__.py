"""Digit Lab: the Keras Lab 7 MNIST CNN as a teaching app. The core imports no streamlit
(except ui.py), so everything here can be tested without a browser."""
