"""The search spaces tunewatch ships (``configs/search_spaces/``) and each task's default.

Apart from :mod:`tunewatch._tuning` so that governance and the CLI can name a space
without importing the tuning machinery (Optuna, scikit-learn, skl2onnx).
"""

from __future__ import annotations

from pathlib import Path

#: The search space of a job whose model's config names none, per task.
DEFAULT_SEARCH_SPACES = {
    "binary": "binary_tabular.yaml",
    "multiclass": "binary_tabular.yaml",
    "regression": "regression_tabular.yaml",
}


def default_search_space(task: str) -> str:
    """The task's default space (see :func:`shipped_search_space`)."""
    return shipped_search_space(DEFAULT_SEARCH_SPACES[task])


def shipped_search_space(name: str) -> str:
    """The space ``name`` in ``configs/search_spaces/``: beside the source tree (a
    checkout, an editable install), else under the working directory (the Docker image's
    ``/opt/tunewatch``), so that it does not depend on where the daemon was started."""
    candidates = [
        Path(__file__).resolve().parents[1] / "configs" / "search_spaces" / name,
        Path.cwd() / "configs" / "search_spaces" / name,
    ]
    return str(next((c for c in candidates if c.exists()), candidates[0]))
