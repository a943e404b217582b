"""Which of a wide model's drift columns a page shows: the drift report's and the
dashboard's drift heatmap's rows alike are bounded by a number of features.

evidently's report of every column a verdict tested took 40 s and 17.9 MB of HTML at 200
features, 149-312 s and 800 MB more at 1,000, and never finished at 3,000; the heatmap of
400 features made a 31.7 MB page. Both show at most ``features`` features
(:data:`DRIFT_FEATURES` by default, at most :data:`MAX_DRIFT_FEATURES`), the most drifted
first, and say how many they left out. Columns are ranked by :func:`drift_score`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from tunewatch._config_evaluation import LABEL_COLUMN, PREDICTION_COLUMN
from tunewatch._errors import TunewatchError
from tunewatch._version_metadata import finite_float

DRIFT_FEATURES = 50  # the features a drift page shows by default (heatmap rows, report)
MAX_DRIFT_FEATURES = 1000  # the most it shows

BELOW_DRIFT = math.nextafter(0.5, 0.0)
"""The highest score of a column that did not drift: a drifted one scores 0.5 or more."""

#: The columns a report shows whatever its cap: the model's answer and the label.
OUTCOMES = (PREDICTION_COLUMN, LABEL_COLUMN)


class FeaturesOutOfRangeError(TunewatchError, ValueError):
    """A number of features to show outside ``[1, MAX_DRIFT_FEATURES]`` (HTTP 400)."""

    code = "invalid_request"


def check_features(features: int) -> int:
    """``features``, a number of features to show, or :class:`FeaturesOutOfRangeError`."""
    if type(features) is not int or not 1 <= features <= MAX_DRIFT_FEATURES:
        raise FeaturesOutOfRangeError(
            f"`features` must be an integer in [1, {MAX_DRIFT_FEATURES}], got {features!r}"
        )
    return features


def drift_score(column: Mapping[str, Any], fixed: float | None = None) -> float | None:
    """A column's drift on [0, 1]: 1 - p for tests that give a p-value, else the distance
    over twice its threshold (so the threshold sits at 0.5), capped at 1.

    A distance over categories is judged against its sampling-noise floor too, once it
    reaches the fixed threshold (:mod:`monitor.drift._noise`): the stored threshold is then
    the raised one. Scored against that, a distance just under the fixed threshold scored
    0.498 and larger ones the floor kept from drifting 0.43. So a distance that did not
    drift is scored against ``fixed`` (the method's configured threshold; the stored one
    when it is lower or ``fixed`` is unknown), and below :data:`BELOW_DRIFT` at most:
    increasing with the distance, and under every drifted distance of the method, which
    scores against the threshold it reached (0.5 or more)."""
    p = column.get("p_value")
    if type(p) is float and 0.0 <= p <= 1.0:  # the common case, first: the drift page folds
        return 1.0 - p  # every window's columns through here
    p = finite_float(p)
    if p is not None:
        return min(max(1.0 - p, 0.0), 1.0)
    stat, threshold = finite_float(column.get("statistic")), finite_float(column.get("threshold"))
    if stat is None:
        return None
    if threshold is None or threshold <= 0:
        return min(max(stat, 0.0), 1.0)
    drifted = column.get("drifted")
    if not isinstance(drifted, bool):
        drifted = stat >= threshold
    if drifted:
        return min(max(stat / (2 * threshold), 0.5), 1.0)
    if fixed is not None and 0 < fixed < threshold:
        threshold = fixed
    return min(max(stat / (2 * threshold), 0.0), BELOW_DRIFT)


def report_columns(
    payload: Mapping[str, Any], candidates: Iterable[str], features: int
) -> list[str]:
    """Of ``candidates`` (the columns a drift verdict tested, in the model's order), those
    its report shows, in that order: the prediction and the label, then at most
    ``features`` others: those the verdict (``payload``, as stored) drifted, then the most
    drifted by their scores (:func:`drift_score`; a column the payload does not score
    last). More drifted columns than ``features`` are cut the same way."""
    names = list(dict.fromkeys(candidates))
    others = [n for n in names if n not in OUTCOMES]
    if len(others) <= features:
        return names
    stored = {str(c.get("column")): c for c in payload.get("columns", ()) if isinstance(c, Mapping)}

    def rank(name: str) -> tuple[bool, float]:
        column = stored.get(name)
        if column is None:
            return True, 1.0
        score = drift_score(column)
        return column.get("drifted") is not True, -1.0 if score is None else -score

    kept = set(sorted(others, key=rank)[:features])
    return [n for n in names if n in OUTCOMES or n in kept]


def columns_notice(shown: Collection[str], tested: int, payload: Mapping[str, Any]) -> str | None:
    """What a drift report showing ``shown`` of the ``tested`` columns its verdict
    (``payload``) tested says first; ``None`` when it shows them all."""
    if len(shown) >= tested:
        return None
    drifted = payload.get("drifted_columns")
    of_them = f", and drifted {len(drifted)} of them" if isinstance(drifted, list | tuple) else ""
    return (
        f"{len(shown)} of {tested} columns shown; the verdict tested all {tested}{of_them}. "
        "Shown: the prediction and the label, the columns the verdict drifted, then the "
        "most drifted by its scores (?features= sets how many features, 1 to "
        f"{MAX_DRIFT_FEATURES}). evidently's dataset summary counts the columns shown only."
    )
