"""Streamlit glue, the only part of the package that imports streamlit. Pages use it
as `from mnist_demo import ui`:

- `resources`: heavy objects cached once per server (MNIST, registry, models, their
  evaluations and predictors);
- `sidebar`: the frame every page runs in (page setup, page menu, model choice);
- `widgets`: errors as `st.error`, times as text, charts (a model's recorded training
  curves among them), the test-digit gallery;
- `classroom`: this session's role (instructor or student), the student's identity
  (a signed cookie), per-student limits, who is here;
- `datasets`: MNIST test or the class's drawings, scored by the page's model;
- `canvas`: the Draw page's inputs (the canvas and its toolbar fix, a photo upload);
- `send`: the Draw page's form that sends a reading to the class set.
"""

from mnist_demo.ui.canvas import (
    canvas_styles,
    drawing_canvas,
    photo_upload,
    remembered_toggle,
    uploaded_photo,
)
from mnist_demo.ui.classroom import (
    connected,
    is_instructor,
    join_url,
    limit,
    locked_caption,
    role,
    session_tag,
    student_id,
)
from mnist_demo.ui.datasets import choose as choose_dataset
from mnist_demo.ui.resources import (
    class_evaluation,
    class_store,
    dataset,
    evaluation,
    model_summary,
    predictor,
    reader,
    registry,
)
from mnist_demo.ui.send import send_to_class
from mnist_demo.ui.sidebar import MODEL_KEY, page_setup
from mnist_demo.ui.widgets import (
    confusion_explorer,
    digit_detail,
    digit_gallery,
    duration,
    epoch_charts,
    recorded_history,
    setting_toggle,
    shown,
    user_errors,
    vega_lite,
)

__all__ = [
    "MODEL_KEY",
    "canvas_styles",
    "choose_dataset",
    "class_evaluation",
    "class_store",
    "confusion_explorer",
    "connected",
    "dataset",
    "digit_detail",
    "digit_gallery",
    "drawing_canvas",
    "duration",
    "epoch_charts",
    "evaluation",
    "is_instructor",
    "join_url",
    "limit",
    "locked_caption",
    "model_summary",
    "page_setup",
    "photo_upload",
    "predictor",
    "reader",
    "recorded_history",
    "registry",
    "remembered_toggle",
    "role",
    "send_to_class",
    "session_tag",
    "setting_toggle",
    "shown",
    "student_id",
    "uploaded_photo",
    "user_errors",
    "vega_lite",
]
