"""What a caller states about a new version besides its ONNX file, and the checks of it
that need no candidate: task, features, hyperparameters and details a reader can handle,
the primary output's width a task reads. Part of :mod:`tunewatch._registry`, which
registers versions."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tunewatch._config_evaluation import LABEL_COLUMN, PREDICTION_COLUMN
from tunewatch._errors import RegistrationError
from tunewatch.store import canonical_json, check_version_text


def recorded_parity_error(details: Mapping[str, Any]) -> float | None:
    """A version's ``details.parity_error`` (its export's parity gap; 0.0 when none is
    recorded), or ``None`` when the value is not a finite number >= 0."""
    value = details.get("parity_error")
    if value is None:
        return 0.0
    number = finite_float(value)
    return number if number is not None and number >= 0 else None


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` when it is not a number (a bool is not)
    or no finite float holds it (NaN, infinity, an integer past float64's range, which
    ``math.isfinite`` raises on)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _beyond_float(value: Any) -> bool:
    """Whether ``value`` holds, at any depth, an integer no float64 holds."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            try:
                float(item)
            except OverflowError:
                return True
    return False


TASKS = ("binary", "multiclass", "regression")

#: Feature names the drift frame takes for its own columns (the champion's prediction,
#: the label): a feature so named had its drift computed from them instead.
RESERVED_FEATURE_NAMES = (PREDICTION_COLUMN, LABEL_COLUMN)

#: How deep a version's ``hyperparameters`` and ``details`` may nest (the JSON object
#: itself is the first level): far past any real use, and well inside what every reader
#: and serialiser of a version (the API's included) handles.
MAX_METADATA_DEPTH = 32


def json_depth(value: Any) -> int:
    """How many levels of dicts and lists ``value`` nests (a dict or list is one level, a
    scalar none); iterative, so any depth is measured."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Collection[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


@dataclass(frozen=True, kw_only=True)
class VersionMetadata:
    """What a caller states about a new version besides the ONNX file itself."""

    task: Literal["binary", "multiclass", "regression"]
    feature_names: tuple[str, ...]
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    dataset_version: str | None = None
    parent_version: int | None = None
    study: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise RegistrationError(
                f"`task` must be one of {', '.join(TASKS)}, got {self.task!r}", code="invalid_task"
            )
        if not self.feature_names or len(set(self.feature_names)) != len(self.feature_names):
            raise RegistrationError(
                "`feature_names` must be a non-empty list of distinct names",
                code="invalid_features",
            )
        if reserved := [n for n in self.feature_names if n in RESERVED_FEATURE_NAMES]:
            raise RegistrationError(
                "`feature_names` must not use the names the drift frame reserves for the "
                f"prediction and the label ({', '.join(RESERVED_FEATURE_NAMES)}), got "
                f"{', '.join(repr(n) for n in reserved)}",
                code="invalid_features",
            )


def _check_metadata(metadata: VersionMetadata) -> None:
    """Refuse metadata that a reader of the version (the API's serialiser included) could
    not handle or that the store could not hold on either backend."""
    for name, value in (
        ("hyperparameters", metadata.hyperparameters),
        ("details", metadata.details),
    ):
        depth = json_depth(value)
        if depth > MAX_METADATA_DEPTH:
            raise RegistrationError(
                f"`{name}` must nest at most {MAX_METADATA_DEPTH} levels deep, got {depth}",
                code="invalid_request",
            )
        if _beyond_float(value):
            raise RegistrationError(
                f"`{name}` holds an integer beyond float64's range (about 1.8e308): its "
                "readers take numbers as floats",
                code="invalid_request",
            )
    try:
        canonical_json(dict(metadata.hyperparameters))
        canonical_json(dict(metadata.details))
    except (TypeError, ValueError) as exc:
        raise RegistrationError(
            f"hyperparameters and details must be plain JSON with finite numbers: {exc}",
            code="invalid_request",
        ) from exc
    if "parity_error" in metadata.details:  # the comparison loop's parity guardrail
        value = metadata.details["parity_error"]
        if value is None or recorded_parity_error(metadata.details) is None:
            raise RegistrationError(
                f"`details.parity_error` must be a finite number >= 0, got {value!r}",
                code="invalid_request",
            )
    check_version_text(
        dataset_version=metadata.dataset_version,
        study=metadata.study,
        hyperparameters=metadata.hyperparameters,
        details=metadata.details,
        feature_names=metadata.feature_names,
    )


#: The columns of its primary output each task's objectives read: a binary model's
#: probabilities of both classes or of the positive one, a regressor's prediction, a
#: multiclass model's probability of each class.
TASK_WIDTH_RULES = {
    "binary": "1 or 2 columns (the positive class's probability, or both classes')",
    "regression": "exactly 1 column (the prediction)",
    "multiclass": "at least 2 columns (one probability per class)",
}


def check_task_width(task: str, width: int, output: str) -> None:
    """Refuse (``task_output_mismatch``) a primary output of ``width`` columns that no
    objective of ``task`` reads (:data:`TASK_WIDTH_RULES`): such a version registered,
    even as champion, and every evaluation, comparison and retune of it then failed."""
    fits = {"binary": width in (1, 2), "regression": width == 1, "multiclass": width >= 2}
    if not fits[task]:
        raise RegistrationError(
            f"a {task} model's primary output must have {TASK_WIDTH_RULES[task]}, got "
            f"{width} (output {output!r}): register the model under the task it was "
            "trained for",
            code="task_output_mismatch",
        )
