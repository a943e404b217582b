"""The search spaces tunewatch ships and each task's default.

They are package data, ``tunewatch/search_spaces/`` (a checkout also links them as
``configs/search_spaces/``), so that a wheel's install finds them whatever the working
directory. Apart from :mod:`tunewatch._tuning` so that governance and the CLI can name a
space without importing the tuning machinery (Optuna, scikit-learn, skl2onnx).
"""

from __future__ import annotations

from importlib.resources import files

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
    """The path of the space ``name`` in the package's ``search_spaces/``.

    A filesystem path, as a job's config records it: tunewatch is installed on disk (a
    checkout, an editable install or a wheel's), never imported from a zip archive.
    """
    return str(files("tunewatch") / "search_spaces" / name)
