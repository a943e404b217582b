"""The frames drift is judged on: one column per feature, the champion's prediction and
the label (:func:`drift_frame`), and the reference side of a stored verdict's report,
rebuilt from its champion's baseline (:func:`reference_frame`).

The cached baseline keeps no reference rows (:class:`tunewatch._evaluation_baseline.
Baseline`), only the profile, which holds what each column's test reads: a numeric
column's sample, a discrete or categorical column's counts. The report's reference is
built from those; the snapshot is read again only for a column tested on its full values
that the profile does not count (a continuous column under Wasserstein or PSI)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from monitor import ColumnDriftConfig, ReferenceProfile
from monitor.drift import CategoricalSummary, NumericSummary
from monitor.objectives import positive_proba
from tunewatch._config_evaluation import LABEL_COLUMN, PREDICTION_COLUMN
from tunewatch.store import ModelRow

PREDICTION = PREDICTION_COLUMN
LABEL = LABEL_COLUMN


#: Rows of the window's features widened to float64 at a time: a float32 copy of them is
#: the only temporary (4 MB at 1,000 features).
_CHUNK_ROWS = 1024


def frame_rows(features: np.ndarray, labels: np.ndarray | None) -> int:
    """How many rows :func:`drift_frame` of these has without ``rows``: the longer of
    the features' and the labels'."""
    return len(features) if labels is None else max(len(features), len(labels))


def drift_frame(
    model: ModelRow,
    features: np.ndarray,
    outputs: np.ndarray,
    labels: np.ndarray | None,
    *,
    rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """One column per feature, the prediction, and the label when ``labels`` are given.

    The labels may be another window's (:func:`tunewatch._drift_report.label_window`): the
    frame is then as long as the longer (:func:`frame_rows`), the shorter's columns
    missing past their end, and each column's test leaves its missing values out.

    ``rows`` (sorted positions in that frame, :meth:`monitor.DriftDetector.sample_rows`
    of :func:`frame_rows`) builds those rows only, indexed by their positions: the rows
    of the whole frame the detector tests, as its ``sample`` takes them. The whole
    window of a wide model as float64 was 1.2 GB (50,000 rows of 3,000 features), of
    which 20,000 rows were tested."""
    n_rows = frame_rows(features, labels)
    index = pd.RangeIndex(n_rows) if rows is None else pd.Index(rows)
    # the positions that are the window's (rows are sorted: a prefix); past them the
    # frame is the labels' alone, its features and prediction missing
    held = len(features) if rows is None else int(np.searchsorted(rows, len(features)))
    values = np.full((len(index), len(model.feature_names)), np.nan)
    for start in range(0, held, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, held)
        values[start:stop] = features[start:stop] if rows is None else features[rows[start:stop]]
    frame = pd.DataFrame(values, columns=list(model.feature_names), index=index, copy=False)
    answered = outputs if rows is None else outputs[rows[:held]]
    prediction = np.asarray(prediction_column(model, answered, held))
    if held < len(index):  # missing past the window, NaN (an object column's too)
        prediction = pd.Series(prediction).reindex(range(len(index))).to_numpy()
    frame[PREDICTION] = prediction
    if labels is not None:
        label = np.full(len(index), np.nan)
        n_labels = len(labels) if rows is None else int(np.searchsorted(rows, len(labels)))
        label[:n_labels] = labels[:n_labels] if rows is None else labels[rows[:n_labels]]
        frame[LABEL] = label
    return frame


def prediction_column(model: ModelRow, outputs: np.ndarray, n_rows: int) -> Any:
    """The drift frame's prediction column of ``n_rows`` rows' ``outputs``: the
    positive-class probability (binary), the predicted class's text, ``None`` for a row
    without an output (multiclass), the first output (regression)."""
    out = np.asarray(outputs, dtype=np.float64)
    if model.task == "binary":  # a column of its own: not a view holding every output
        return np.ascontiguousarray(positive_proba(out)) if out.size else np.empty(0)
    if model.task == "multiclass":  # a row without an output has no predicted class
        answered = ~np.isnan(out).any(axis=1) if out.size else np.empty(0, bool)
        classes = out.argmax(axis=1).astype(str) if out.size else np.empty(0, str)
        return pd.Series(classes, dtype=object).where(answered, None)
    return out.reshape(n_rows, -1)[:, 0] if out.size else np.empty(0)


def column_types(model: ModelRow, *, labelled: bool) -> dict[str, Any]:
    """The profile's (and evidently's) type of each drift column: the label's with
    ``labelled``."""
    types: dict[str, Any] = {c: "num" for c in model.feature_names}
    types[PREDICTION] = "cat" if model.task == "multiclass" else "num"
    if labelled:
        types[LABEL] = "num" if model.task == "regression" else "cat"
    return types


#: The methods that compare a numeric column's reference sample (the profile keeps at
#: most 10,000 values), not its full counts or bins: Jensen-Shannon only on a continuous
#: column (its histograms; a discrete one's counts are the full column's). Not
#: Wasserstein: the verdict measures the sample's distance in the *full* column's
#: standard deviations, and evidently divides by its reference's; given the sample, a
#: rare large value the sample missed moved the report's scale, and its verdict, by
#: twenty times. The full column's distance is the closer match.
SAMPLE_METHODS = frozenset({"ks", "jensenshannon"})


def reference_frame(
    model: ModelRow,
    baseline: Any,
    columns: Mapping[str, ColumnDriftConfig],
    *,
    untested: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """The champion's reference as its drift verdicts compare it, a row per reference row
    (``baseline.profile.n_rows``), without the columns in ``untested`` (evidently reads
    none of them). Each column holds:

    * a numeric column whose method compares the profile's sample
      (:data:`SAMPLE_METHODS`): that sample, missing past its end;
    * else a discrete numeric or a categorical column: the full column's values as the
      profile counts them (ordered by value; missing last), which every test reads
      regardless of order — chi-square and z their counts, PSI a column of at most 20
      distinct values by value;
    * else (a continuous column tested on its full values, Wasserstein or PSI's decile
      bins, or a column of a verdict stored before it recorded its methods): the
      reference rows' values (features as float32, as the profile read them), the
      snapshot read again (``baseline.rows()``) for as long as the frame is built."""
    profile: ReferenceProfile = baseline.profile
    n = profile.n_rows
    names = [*model.feature_names, PREDICTION, *([LABEL] if baseline.has_labels else [])]
    data: dict[str, Any] = {}
    full = []
    for name in names:
        if name in untested:
            continue
        summary = profile.columns.get(name)
        spec = columns.get(name)
        if isinstance(summary, NumericSummary) and summary.value_counts is None:
            if spec is not None and spec.method in SAMPLE_METHODS:
                data[name] = _padded(summary.sample, n)
            else:
                full.append(name)
        elif isinstance(summary, NumericSummary) and summary.value_counts is not None:
            if spec is not None and spec.method == "ks":  # a sample, discrete or not
                data[name] = _padded(summary.sample, n)
            else:
                data[name] = _counted(summary.value_counts, n)
        elif isinstance(summary, CategoricalSummary):
            data[name] = _categories(summary, n, numeric=name == LABEL)
        else:  # not profiled: as the rows hold it
            full.append(name)
    if full:
        data.update(_full_columns(model, baseline, full))
    return pd.DataFrame({name: data[name] for name in names if name in data})


def _padded(values: np.ndarray, n: int) -> np.ndarray:
    """``values`` then missing (NaN) up to ``n`` values."""
    return np.concatenate([np.asarray(values, np.float64), np.full(n - len(values), np.nan)])


def _counted(counts: tuple[tuple[Any, int], ...], n: int) -> np.ndarray:
    """A float64 column of ``n`` values holding each of ``counts``' values as many times
    as counted, in their order, then missing (NaN)."""
    values = np.asarray([float(v) for v, _ in counts], dtype=np.float64)
    return _padded(np.repeat(values, [c for _, c in counts]), n)


def _categories(summary: CategoricalSummary, n: int, *, numeric: bool) -> Any:
    """A categorical column of ``n`` values as ``summary`` counts them, missing last: the
    label's categories as the numbers they were (the profile keeps their text), the
    multiclass prediction's as its text, missing ``None``."""
    if numeric:
        return _counted(summary.counts, n)
    values = np.repeat(
        np.asarray([k for k, _ in summary.counts], dtype=object),
        [c for _, c in summary.counts],
    )
    return np.concatenate([values, np.full(n - len(values), None, dtype=object)])


def _full_columns(model: ModelRow, baseline: Any, names: list[str]) -> dict[str, Any]:
    """The columns ``names`` of the reference rows: the prediction from the baseline's
    scores, the features and the label from the snapshot, read again if one is asked for."""
    found: dict[str, Any] = {}
    if PREDICTION in names:
        found[PREDICTION] = prediction_column(model, baseline.scores, len(baseline.scores))
    if any(name != PREDICTION for name in names):
        reference = baseline.rows()
        index = {name: j for j, name in enumerate(model.feature_names)}
        for name in names:
            if name == LABEL:
                found[name] = np.asarray(reference.labels, dtype=np.float64)
            elif name != PREDICTION:  # float32, as the profile read them
                found[name] = np.asarray(reference.features[:, index[name]], dtype=np.float64)
    return found
