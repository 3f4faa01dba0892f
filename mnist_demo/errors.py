"""The one base class for problems a user can fix. The CLI prints them as one line and
pages show them with `st.error`; anything else is a bug and keeps its traceback."""


class DigitLabError(Exception):
    """A problem the user can act on; the message says what to do."""
