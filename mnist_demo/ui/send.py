"""The Draw page's form that sends a reading to the class set: the digit the student
meant, Send and Take back. Every send and take-back is counted against the student's
signed identity and checked in the core (class_set.ClassSet.add / take_back)."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from mnist_demo import class_set, novelty
from mnist_demo.models import ModelRef
from mnist_demo.reader import Reading
from mnist_demo.ui.classroom import person_subject, session_tag
from mnist_demo.ui.resources import class_store
from mnist_demo.ui.widgets import user_errors


def send_to_class(reading: Reading, ref: ModelRef) -> None:
    """The drawing joins the class set with the digit the student meant (the model's
    answer is pre-selected: one tap when it is right, two when it is wrong), and with
    what Draw said. When that was "not a digit", nothing is pre-selected: the student
    chooses, and the wall shows it as not a digit, outside the class's accuracy."""
    store = class_store()
    seen = reading.image28
    verdict = reading.verdict.kind
    not_a_digit = verdict == novelty.NOT_A_DIGIT
    with st.container(border=True):
        drawing_key = hashlib.sha256(np.ascontiguousarray(seen).tobytes()).hexdigest()[:12]
        meant = st.pills(
            "Send it to the class: the digit you meant",
            list(range(10)),
            default=None if not_a_digit else reading.digit,
            key=f"meant-{drawing_key}",  # a new drawing starts on its own answer again
        )
        if not_a_digit:
            st.caption(
                "The model doesn't think this is a digit: choose the digit you meant. The "
                "wall shows it as *not a digit*, and it is not counted in the class's accuracy."
            )
        send, take_back = st.columns([1, 1])
        clicked = send.button(
            "Send to the class", type="primary", icon=":material/send:", disabled=meant is None
        )
        if clicked and meant is not None:
            with user_errors(stop=False):
                sent = store.add(
                    seen,
                    int(meant),
                    session=session_tag(),
                    predicted=reading.digit,
                    confidence=reading.confidence,
                    model=ref.name,
                    canvas_png=class_set.canvas_thumbnail(np.asarray(reading.picture)),
                    verdict=verdict,
                    person=person_subject(),
                )
                if not sent.counted:
                    read = "said it is not a digit (not counted in the class's accuracy)"
                else:
                    read = "read right" if sent.correct else f"read as {reading.digit}"
                st.success(f"Sent: you meant {sent.label}, the model {read}.", icon="✅")
        if take_back.button(
            "Take back",
            icon=":material/undo:",
            help="Remove your last drawing from the class set",
        ):
            with user_errors(stop=False):
                store.take_back(session_tag())
                st.success("Your last drawing is out of the class set.", icon="↩️")
