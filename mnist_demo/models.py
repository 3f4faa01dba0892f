"""The one catalogue pages choose models from: the shipped models and the runs' models.

`available_models` is the only list a page offers (the sidebar, Draw, Misclassified's
comparison, the Train page's history): the shipped models, then every usable run a
session may open — the instructor every one; a student the instructor's runs, their own
experiments and the runs the instructor shared with the class (the class's model for
Draw, the one on the projector, the server's active model). `default_model` is the one a
new session starts on.

This module reads the registry it is given and never imports runs.py at run time (runs
imports `usable` from here).
"""

from __future__ import annotations

import calendar
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_demo import config
from mnist_demo.classroom import Role

if TYPE_CHECKING:
    from mnist_demo.runs import Run, RunRegistry

SHIPPED_KEY = "shipped"  # Lab 7, the lab pages' default
ROBUST_KEY = "robust"  # the augmented model, the Draw page's default
INSTRUCTOR = "instructor"  # the owner of the instructor's (and the CLI's) runs: runs.INSTRUCTOR

# key -> (display name, model file); each file has its .json beside it
SHIPPED = {
    SHIPPED_KEY: ("Lab 7 (shipped)", config.DEFAULT_MODEL_PATH),
    ROBUST_KEY: ("Robust (shipped)", config.ROBUST_MODEL_PATH),
}

# Settings: runs the instructor shares with the whole class (experiments sets them).
DRAW_MODEL = "class_draw_model"  # the class's model for Draw (default_model for drawings)
PROJECTOR = "leaderboard_projector"  # the run the projector shows


@dataclass(frozen=True)
class ModelRef:
    """A model a page can show: a shipped one or a run's model file."""

    key: str  # a SHIPPED key or the run id as text
    name: str
    path: Path
    test_accuracy: float | None
    misclassified: int | None
    trained_at: float | None
    owner: str = INSTRUCTOR  # who trained it: the instructor, or a student's tag

    @property
    def label(self) -> str:
        acc = f"{self.test_accuracy:.2%}" if self.test_accuracy is not None else "not scored"
        return f"{self.name} · {acc}"

    @property
    def shipped(self) -> bool:
        return self.key in SHIPPED


def shipped_info(info_path: Path) -> dict:
    """A shipped model's .json, read once per file version (the sidebar asks on every
    rerun of every page)."""
    if not info_path.exists():
        return {}
    return _read_json(info_path, info_path.stat().st_mtime)


@functools.lru_cache(maxsize=8)
def _read_json(path: Path, mtime: float) -> dict:
    return json.loads(path.read_text())


def shipped_models() -> list[ModelRef]:
    """The models trained by the project's CLI and shipped with the package (those whose
    files are present), with the metrics recorded in their .json."""
    refs = []
    for key, (name, path) in SHIPPED.items():
        if not path.exists():
            continue
        info = shipped_info(path.with_suffix(".json"))
        trained = info.get("trained_at")
        refs.append(
            ModelRef(
                key=key,
                name=name,
                path=path,
                test_accuracy=info.get("test_accuracy"),
                misclassified=info.get("misclassified"),
                trained_at=calendar.timegm(time.strptime(trained, "%Y-%m-%dT%H:%M:%SZ"))
                if trained
                else None,
            )
        )
    return refs


def run_model(run: Run) -> ModelRef:
    return ModelRef(
        key=str(run.id),
        name=f"Run {run.id} · {run.config.preset}"
        + ("" if run.status == "finished" else f" ({run.status})"),
        path=Path(run.model_path or ""),
        test_accuracy=run.test_accuracy,
        misclassified=run.misclassified,
        trained_at=run.finished_at,
        owner=run.owner,
    )


def usable(run: Run) -> bool:
    """The one rule for offering a run's model (the sidebar, Draw, "make active", the
    default): its run has ended and its model file is there."""
    return run.ended and run.has_model


def _run_setting(registry: RunRegistry, key: str) -> int | None:
    raw = registry.store.setting(key)
    return int(raw) if raw and raw.isdigit() else None


def draw_model(registry: RunRegistry) -> int | None:
    """The run the instructor made the class's model for Draw (None: the shipped default)."""
    return _run_setting(registry, DRAW_MODEL)


def projector(registry: RunRegistry) -> int | None:
    """The run the instructor put on the projector (None: nothing)."""
    return _run_setting(registry, PROJECTOR)


def available_models(registry: RunRegistry, *, role: Role, student: str = "") -> list[ModelRef]:
    """The shipped models first, then the usable runs' models this session may open,
    newest first (see the module's docstring for who sees which)."""
    shared = {draw_model(registry), projector(registry), registry.active_run_id()}
    return shipped_models() + [
        run_model(run)
        for run in registry.list_runs()
        if usable(run)
        and (role == Role.INSTRUCTOR or run.owner in (INSTRUCTOR, student) or run.id in shared)
    ]


def default_model(registry: RunRegistry, for_drawings: bool = False) -> ModelRef:
    """The model a new browser session (or the CLI, with no --model or --run) starts on,
    always one a student may open (the runs it picks are shared with the class).

    For drawings, the run the instructor made the class's model for Draw when it is
    usable, else the shipped robust model (it reads drawings best). For the lab pages and
    the CLI, the registry's active run when it is usable, else shipped Lab 7.
    """
    models = {ref.key: ref for ref in available_models(registry, role=Role.STUDENT)}
    if for_drawings:
        chosen = draw_model(registry)
        if chosen is not None and str(chosen) in models:
            return models[str(chosen)]
        if ROBUST_KEY in models:
            return models[ROBUST_KEY]
    active = registry.active_run_id()
    if active is not None and str(active) in models:
        return models[str(active)]
    return models[SHIPPED_KEY]
