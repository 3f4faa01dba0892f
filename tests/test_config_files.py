"""Settings in files that a test would otherwise never read."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_students_never_see_tracebacks_with_server_paths():
    """An unexpected error shows its kind only; the traceback stays in the server log
    (user mistakes are st.error messages with what to do, not exceptions)."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] in ("type", "none")
