import streamlit as st

from mnist_demo import ui

ui.page_setup(__file__)
st.info("Coming soon.")
