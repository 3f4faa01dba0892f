"""The one base class for problems a user can fix, and the errors several core modules
share. The CLI prints a DigitLabError as one line (exit 2) and pages show it with
`st.error`; anything else is a bug and keeps its traceback.

Errors that only one module raises live beside it (data.DataError, preprocess's image
errors, training.InvalidConfigError); all of them derive from DigitLabError.
"""


class DigitLabError(Exception):
    """A problem the user can act on; the message says what to do."""


class ModelFileError(DigitLabError):
    """A model file is missing or not a loadable Keras model (model.py loads them,
    runs.py hands out their paths, the pages and the CLI open them)."""


class ModelShapeError(DigitLabError, ValueError):
    """A model that is not a 28x28 digit classifier: it does not take one 28x28x1
    image, does not answer 10 classes, or has no convolution layers whose feature maps
    could be shown (inference checks, the CLI and the pages report it)."""
