"""The drift heatmap's JSON: every drift window of a model folded into at most
:data:`~tunewatch.dashboard._downsample.MAX_POINTS` columns, each feature's drifted share
of a column's windows and whether it is beyond chance (:mod:`tunewatch.dashboard._chance`).
Served through :func:`tunewatch.dashboard._series.drift`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from monitor.drift import METHODS
from tunewatch._config_evaluation import LABEL_COLUMN, PREDICTION_COLUMN
from tunewatch._drift_columns_shown import DRIFT_FEATURES as DRIFT_FEATURES  # the heatmap's
from tunewatch._drift_columns_shown import MAX_DRIFT_FEATURES as MAX_DRIFT_FEATURES  # rows
from tunewatch._drift_columns_shown import drift_score as _drift_score
from tunewatch._version_metadata import finite_float
from tunewatch.store import ModelRow

from ._chance import beyond_chance
from ._data import Sources, _iso
from ._downsample import MAX_POINTS, MAX_WINDOWS, buckets
from ._queries import WindowRef, stream_windows, window_ids


class _FixedThresholds:
    """Each column's fixed threshold by column and method: its configured one
    (``evaluation.drift.columns``) when the window used the configured method, else the
    method's default; ``None`` for an unknown method. The configuration is today's: a
    window judged before a threshold was changed is scored against the new one; so is
    ``alpha``, the level of a distance's noise floor (``evaluation.drift.alpha``)."""

    def __init__(self, src: Sources, model: ModelRow) -> None:
        cfg = src.runner.config.model_or_default(model.name, model.task)
        self._columns = cfg.evaluation.drift.columns
        self.alpha = cfg.evaluation.drift.alpha
        self._found: dict[tuple[str, str], float | None] = {}

    def __call__(self, name: str, method: Any) -> float | None:
        if not isinstance(method, str):
            return None
        key = (name, method)
        if key not in self._found:
            spec = self._columns.get(name)
            if spec is not None and spec.method == method and spec.threshold is not None:
                self._found[key] = spec.threshold
            else:
                found = METHODS.get(method)
                self._found[key] = None if found is None else found.default_threshold
        return self._found[key]


_HIGHEST, _TESTED, _HITS, _LEVELS = range(4)  # a feature's tally in a column


class _Column:
    """One heatmap column, folded from its windows newest first: the count of alarms; per
    feature a tally (its highest score, -1 for none; the windows that tested it; those
    that drifted it; the sum of their tests' false-positive rates); the names of columns
    a window could not score, and the window it shows (the newest that raised the drift
    alarm, else the newest)."""

    __slots__ = ("alarms", "alpha", "chances", "fixed", "share", "shown", "tally", "unscored")

    def __init__(self, fixed: _FixedThresholds) -> None:
        self.fixed = fixed
        self.alpha = fixed.alpha
        self.alarms = 0
        self.shown: WindowRef | None = None
        self.share: float | None = None
        self.tally: dict[str, list[float]] = {}
        self.unscored: set[str] = set()
        self.chances: dict[str, tuple[float | None, int, float | None, bool]] = {}

    def add(self, ref: WindowRef, payload: dict[str, Any]) -> None:
        self.alarms += ref.alarm
        if self.shown is None or (ref.alarm and not self.shown.alarm):
            self.shown, self.share = ref, finite_float(payload.get("drifted_share"))
        tally, alpha = self.tally, self.alpha
        for c in payload.get("columns", ()):
            name = c.get("column")
            if type(name) is not str:
                name = str(name)
            p = c.get("p_value")
            # the test's false-positive rate: a p-value test's threshold, else the level of
            # a distance's noise floor (an upper bound: the fixed threshold may sit above it)
            level = alpha
            if type(p) is float and 0.0 <= p <= 1.0:  # the common case, inlined: the page
                score: float | None = 1.0 - p  # folds every window's columns through here
                threshold = c.get("threshold")
                if type(threshold) is float and 0.0 < threshold < 1.0:
                    level = threshold
                elif threshold is not None:
                    level = _level(threshold, alpha)
            else:
                # a distance's fixed threshold (a p-value test has none)
                fixed = self.fixed(name, c.get("method")) if p is None else None
                score = _drift_score(c, fixed)
                if p is not None:
                    level = _level(c.get("threshold"), alpha)
            hit = c.get("drifted")
            counts = tally.get(name)  # [highest, tested, hits, levels]: literal indices,
            if counts is None:  # as module constants cost a lookup each
                counts = tally[name] = [-1.0, 0, 0, 0.0]
            if score is None:
                self.unscored.add(name)
                if not hit:  # not tested (insufficient data): neither drifted nor calm
                    continue
            elif score > counts[0]:
                counts[0] = score
            counts[1] += 1
            counts[3] += level
            if hit:
                counts[2] += 1

    def highest(self, name: str) -> float | None:
        """Feature ``name``'s highest score in the column (``None``: none scored)."""
        counts = self.tally.get(name)
        return None if counts is None or counts[_HIGHEST] < 0 else counts[_HIGHEST]

    def drifted(self, name: str) -> bool:
        """Whether any window of the column drifted feature ``name``."""
        counts = self.tally.get(name)
        return counts is not None and counts[_HITS] > 0

    def chance(self, name: str) -> tuple[float | None, int, float | None, bool]:
        """Feature ``name``'s drifted share of the windows that tested it (``None``: none
        did), their count, the mean false-positive rate of their tests, and whether its
        count of drifted windows is beyond that chance (:func:`beyond_chance`). Asked once
        the column is folded (and kept: the ranking and the answer both ask)."""
        found = self.chances.get(name)
        if found is not None:
            return found
        counts = self.tally.get(name)
        if counts is None or not counts[_TESTED]:
            found = (None, 0, None, False)
        else:
            tested, hits = int(counts[_TESTED]), int(counts[_HITS])
            level = counts[_LEVELS] / tested
            found = (hits / tested, tested, level, beyond_chance(hits, tested, level))
        self.chances[name] = found
        return found

    def names(self) -> list[str]:
        """Every column name its windows hold (scored ones first, newest first)."""
        scored = [n for n, counts in self.tally.items() if counts[_HIGHEST] >= 0]
        return [*scored, *sorted(self.tally.keys() - set(scored))]


def _level(threshold: Any, alpha: float) -> float:
    """A p-value test's false-positive rate: its stored threshold, else ``alpha``."""
    value = finite_float(threshold)
    return value if value is not None and 0.0 < value < 1.0 else alpha


def drift(
    src: Sources,
    model: str,
    *,
    windows: int = MAX_WINDOWS,
    max_points: int = MAX_POINTS,
    features: int = DRIFT_FEATURES,
) -> dict[str, Any]:
    """Per-feature drift over the newest ``windows`` evaluation windows, oldest first, in at
    most ``max_points`` columns. Each column stands for a run of consecutive windows: per
    feature, ``shares`` is the share of the run's windows that tested it in which it
    drifted (``None``: none tested it; the heatmap's colour), ``tested`` their count,
    ``chance`` the mean false-positive rate of their tests (a p-value test's threshold, a
    distance's ``evaluation.drift.alpha``), ``beyond_chance`` whether it drifted in more of
    them than chance gives at that level (:func:`beyond_chance`; the heatmap's outline),
    ``scores`` its highest drift score and ``drifted`` whether any window drifted it. A
    feature that did not change drifts in about 5 % of windows, so over a year (22 windows
    a column) some window drifts it in two columns of three and its highest 1 - p averages
    0.96: the highest score and "any window drifted" told a stable model from a drifting
    one only by a few per cent. Its ``evaluation``, ``status``, ``alarm``, ``window_end`` and
    ``drifted_share`` are of one window, the newest that raised the drift alarm, else the
    newest. ``features`` are the model's features, then every other column any window in
    range holds (e.g. ``__prediction__``), in the order the newest hold them; of more than
    ``features`` of them, the ``features`` most drifting are kept, in that order
    (:func:`_most_drifting`), and ``features_total`` counts them all. ``latest`` is the
    newest window: its ``columns`` those of the features kept, the prediction and the
    label (:func:`_latest_columns`), of ``columns_total`` it tested; its ``report`` the
    API's link to its evidently report, of as many features (``?features=``, when not
    the default).

    Every window in range is read, so the cost grows with ``windows`` (a year of hourly
    windows by default, at most 100,000 through the API) and with the number of features,
    not with ``max_points``; payloads are streamed and folded into the columns as they
    arrive, so memory holds one chunk of payloads and the columns' aggregates."""
    row = src.store.get_model(model)
    ids = window_ids(src.store, model, "drift", limit=windows)
    runs = buckets(len(ids), max_points)
    column_of = {ids[i]: k for k, run in enumerate(runs) for i in run}
    fixed = _FixedThresholds(src, row)
    folded = [_Column(fixed) for _ in runs]
    latest: WindowRef | None = None
    latest_payload: dict[str, Any] = {}
    # A drift payload holds every column's test: ~0.6 MB of text at 3,000 features, and
    # the default 500 at a time held 120 MB for 200 windows (146 MB peak; 67 MB at 16)
    for ref, payload in stream_windows(src.store, model, "drift", limit=windows, chunk=16):
        k = column_of.get(ref.id)
        if k is None:  # written after the ids were read
            continue
        if ref.id == ids[-1]:
            latest, latest_payload = ref, payload
        folded[k].add(ref, payload)
    names = dict.fromkeys(row.feature_names)  # then every other column, newest first
    for col in reversed(folded):
        names.update(dict.fromkeys(col.names()))
    every = list(names)
    shown = _most_drifting(every, folded, features)
    columns = []
    for run, col in zip(runs, folded, strict=True):
        if col.shown is None:  # unread only if windows written since pushed it past the limit
            continue
        chances = [col.chance(f) for f in shown]
        columns.append(
            {
                "window_end": _iso(col.shown.window_end),
                "windows": len(run),
                "alarms": col.alarms,
                "evaluation": col.shown.id,
                "status": col.shown.status,
                "alarm": col.shown.alarm,
                "drifted_share": col.share,
                "shares": [c[0] for c in chances],
                "tested": [c[1] for c in chances],
                "chance": [c[2] for c in chances],
                "beyond_chance": [c[3] for c in chances],
                "scores": [col.highest(f) for f in shown],
                "drifted": [col.drifted(f) for f in shown],
            }
        )
    return {
        "model": model,
        "features": shown,
        "features_total": len(every),
        "windows_total": len(ids),
        "columns": columns,
        "latest": None
        if latest is None
        else {
            "id": latest.id,
            "status": latest.status,
            "window_end": _iso(latest.window_end),
            "alarm": latest.alarm,
            "rule": latest_payload.get("rule"),
            "drifted_columns": latest_payload.get("drifted_columns", []),
            "columns": _latest_columns(latest_payload, shown),
            "columns_total": len(latest_payload.get("columns", ())),
            "report": f"/v1/models/{quote(model, safe='')}/evaluations/{latest.id}/report"
            + ("" if features == DRIFT_FEATURES else f"?features={features}"),
        },
    }


def _latest_columns(payload: dict[str, Any], shown: list[str]) -> list[Any]:
    """The latest window's columns of the features the heatmap shows, the prediction and
    the label, in the window's order: every column of a 3,000-feature model was 1.16 MB of
    JSON, and as many rows of the page's table, with 50 features shown."""
    kept = {*shown, PREDICTION_COLUMN, LABEL_COLUMN}
    return [
        c
        for c in payload.get("columns", ())
        if not isinstance(c, dict) or str(c.get("column")) in kept
    ]


def _most_drifting(names: list[str], folded: list[_Column], limit: int) -> list[str]:
    """At most ``limit`` of ``names``, in their order: those that drifted beyond chance in
    some column first, then by their highest drifted share in a column, then by highest
    score (a heatmap row per feature: 400 features made a 35 MB page). Over a year every
    feature drifts in some window by chance, so "any window drifted" ranks nothing."""
    if len(names) <= limit:
        return names
    outlined: set[str] = set()
    share: dict[str, float] = {}
    highest: dict[str, float] = {}
    for col in folded:
        for name, (high, tested, hits, levels) in col.tally.items():
            if hits:
                if name not in outlined and beyond_chance(int(hits), int(tested), levels / tested):
                    outlined.add(name)
                if hits / tested > share.get(name, 0.0):
                    share[name] = hits / tested
            if high > highest.get(name, -1.0):
                highest[name] = high
    ranked = sorted(
        names, key=lambda n: (n not in outlined, -share.get(n, 0.0), -highest.get(n, -1.0))
    )
    kept = set(ranked[:limit])
    return [n for n in names if n in kept]
