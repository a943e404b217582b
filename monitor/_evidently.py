"""The one module that talks to evidently (imported lazily: importing evidently costs
2-3 s and ~114 MiB, so nothing on the scoring or checking path imports it).

:func:`evidently_report` renders evidently 0.7's ``DataDriftPreset`` as standalone HTML
and returns its per-column verdicts, so an operator can open the familiar report and
compare it with :class:`monitor.drift.DriftDetector`'s verdicts. evidently raises on
empty columns, so degenerate columns (missing from either frame, no finite values in
either, constant across both) are left out of the report and of the verdicts.

evidently writes column names unescaped into the JSON of an inline script, so a name
holding ``</script>`` would end that script and start one of its own. Each ``<`` in a
column name reaches evidently followed by a zero-width space (:func:`_inert`), which no
HTML tag or comment starts with, and the verdicts come back under the original names.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from monitor._errors import DriftError, MonitorError
from monitor.drift import ColumnDriftConfig, ColumnKind

logger = logging.getLogger(__name__)

_P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
_CATEGORICAL_METHODS = frozenset({"chisquare", "z"})
"""Methods evidently 0.7 runs on categorical columns only ("Stattest z isn't applicable to
feature of type num"): a numeric column judged by one (a flag or a small code, the
default's pick on small windows) is declared categorical, its values the categories."""


class EvidentlyError(MonitorError, RuntimeError):
    """evidently failed to build or run a report (the original error is chained)."""


_ZERO_WIDTH_SPACE = "\u200b"


def _inert(name: str) -> str:
    """``name`` as evidently may write it into a script: each ``<`` followed by a
    zero-width space (shown the same; one-to-one, so no two names meet)."""
    return name.replace("<", "<" + _ZERO_WIDTH_SPACE)


def _infer_types(frame: pd.DataFrame) -> dict[str, ColumnKind]:
    return {
        str(c): (
            "num"
            if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
            else "cat"
        )
        for c in frame.columns
    }


def _usable(reference: pd.Series, current: pd.Series, kind: ColumnKind) -> bool:
    ref, cur = reference.dropna(), current.dropna()
    if kind == "num":
        ref = ref[np.isfinite(pd.to_numeric(ref, errors="coerce"))]
        cur = cur[np.isfinite(pd.to_numeric(cur, errors="coerce"))]
    if ref.empty or cur.empty:
        return False
    return bool(pd.concat([ref, cur]).nunique() > 1)


def _verdict(method: str, value: float, threshold: float) -> bool:
    if method == "ks" or method.startswith("K-S"):
        return value <= threshold
    if method in _P_VALUE_METHODS or "p_value" in method:
        return value < threshold
    return value >= threshold


def _run(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Mapping[str, ColumnDriftConfig] | None,
    column_types: Mapping[str, ColumnKind] | None,
    drift_share: float,
) -> tuple[Any, dict[str, bool]]:
    if not 0.0 < drift_share <= 1.0:  # NaN too: a share past 1 never called a dataset drifted
        raise DriftError(f"`drift_share` must be in (0, 1], got {drift_share!r}")
    types = dict(column_types) if column_types is not None else _infer_types(reference)
    kept = [
        name
        for name, kind in types.items()
        if name in reference.columns
        and name in current.columns
        and _usable(reference[name], current[name], kind)
    ]
    skipped = sorted(set(types) - set(kept))
    if skipped:
        logger.info("evidently report: leaving out degenerate columns %s", skipped)
    if not kept:
        raise EvidentlyError("no column has usable data in both reference and current")
    configured = {k: v for k, v in (columns or {}).items() if k in kept}
    declared: dict[str, ColumnKind] = {
        c: "cat" if c in configured and configured[c].method in _CATEGORICAL_METHODS else types[c]
        for c in kept
    }
    inert = {c: _inert(c) for c in kept}
    original = {v: k for k, v in inert.items()}
    try:
        with warnings.catch_warnings():
            # evidently 0.7.23 touches the deprecated ``numpy.core`` on import.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            from evidently import DataDefinition, Dataset, Report
            from evidently.presets import DataDriftPreset

        definition = DataDefinition(
            numerical_columns=[inert[c] for c in kept if declared[c] == "num"],
            categorical_columns=[inert[c] for c in kept if declared[c] == "cat"],
        )
        preset = DataDriftPreset(
            columns=[inert[c] for c in kept],
            drift_share=drift_share,
            per_column_method={inert[k]: v.method for k, v in configured.items()} or None,
            per_column_threshold={
                inert[k]: v.threshold for k, v in configured.items() if v.threshold is not None
            }
            or None,
        )
        snapshot = Report([preset]).run(
            Dataset.from_pandas(
                current[kept].set_axis(list(inert.values()), axis=1),
                data_definition=definition,
            ),
            Dataset.from_pandas(
                reference[kept].set_axis(list(inert.values()), axis=1),
                data_definition=definition,
            ),
        )
        metrics = snapshot.dict()["metrics"]
    except Exception as exc:  # third-party boundary: translate whatever evidently raises
        raise EvidentlyError(f"evidently DataDriftPreset failed: {exc}") from exc
    verdicts: dict[str, bool] = {}
    for metric in metrics:
        config = metric.get("config", {})
        if not str(metric.get("metric_name", "")).startswith("ValueDrift("):
            continue
        verdicts[original[str(config["column"])]] = _verdict(
            str(config["method"]), float(metric["value"]), float(config["threshold"])
        )
    return snapshot, verdicts


def evidently_verdicts(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Mapping[str, ColumnDriftConfig] | None = None,
    column_types: Mapping[str, ColumnKind] | None = None,
    drift_share: float = 0.5,
) -> dict[str, bool]:
    """evidently's per-column drift verdicts (column -> drifted) without rendering HTML.
    Arguments as for :func:`evidently_report`."""
    return _run(
        reference, current, columns=columns, column_types=column_types, drift_share=drift_share
    )[1]


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Mapping[str, ColumnDriftConfig] | None = None,
    column_types: Mapping[str, ColumnKind] | None = None,
    drift_share: float = 0.5,
) -> tuple[str, dict[str, bool]]:
    """Run evidently's ``DataDriftPreset`` on raw frames; return ``(html, verdicts)``.

    ``columns`` carries the same per-column overrides as
    :class:`~monitor.drift.DriftDetector` (method names are evidently's); columns
    without one use evidently's defaults. ``column_types`` maps columns to ``"num"`` /
    ``"cat"`` (inferred from ``reference``'s dtypes when ``None``); a numeric column judged
    by ``z`` or ``chisquare`` is compared by its values, as categories (evidently runs
    neither on numeric columns). Degenerate columns are left out. Raises
    :class:`EvidentlyError` when evidently fails or no column is usable.
    """
    snapshot, verdicts = _run(
        reference, current, columns=columns, column_types=column_types, drift_share=drift_share
    )
    try:
        html = str(snapshot.get_html_str(as_iframe=False))
    except Exception as exc:  # third-party boundary
        raise EvidentlyError(f"evidently could not render the report: {exc}") from exc
    return html, verdicts
