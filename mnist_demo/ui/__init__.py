"""Streamlit glue, the only part of the package that imports streamlit. Pages use it
as `from mnist_demo import ui`:

- `resources`: heavy objects cached once per server (MNIST, registry, models, their
  evaluations and predictors);
- `sidebar`: the frame every page runs in (page setup, deep links, model choice);
- `widgets`: errors as `st.error`, times as text, charts, the test-digit gallery;
- `classroom`: this session's role (instructor or student), rate limits, who is here.
"""

from mnist_demo.ui.classroom import (
    connected,
    is_instructor,
    join_url,
    limit,
    locked_caption,
    role,
)
from mnist_demo.ui.resources import (
    dataset,
    evaluation,
    model_summary,
    predictor,
    registry,
    registry_notice,
)
from mnist_demo.ui.sidebar import DRAW_MODEL_KEY, MODEL_KEY, entry_ran, page_setup, sidebar
from mnist_demo.ui.widgets import (
    ago,
    digit_detail,
    digit_gallery,
    duration,
    user_errors,
    vega_lite,
)

__all__ = [
    "DRAW_MODEL_KEY",
    "MODEL_KEY",
    "ago",
    "connected",
    "dataset",
    "digit_detail",
    "digit_gallery",
    "duration",
    "entry_ran",
    "evaluation",
    "is_instructor",
    "join_url",
    "limit",
    "locked_caption",
    "model_summary",
    "page_setup",
    "predictor",
    "registry",
    "registry_notice",
    "role",
    "sidebar",
    "user_errors",
    "vega_lite",
]
