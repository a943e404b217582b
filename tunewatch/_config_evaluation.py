"""The ``evaluation`` section of a model's configuration: drift, decay, estimate.

Part of :mod:`tunewatch._config`, which re-exports these models; checked when the config
loads, like the rest of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from monitor.drift import DriftError
from tunewatch._config_base import MAX_DURATION_DAYS, MAX_DURATION_MINUTES, MAX_DURATION_S
from tunewatch._config_base import Frozen as _Frozen

logger = logging.getLogger(__name__)

# The drift frame's columns besides a model's features (tunewatch._drift_report builds
# the frame under these names): the champion's prediction, and the label.
PREDICTION_COLUMN = "__prediction__"
LABEL_COLUMN = "__label__"


def drift_columns(feature_names: Sequence[str]) -> tuple[str, ...]:
    """Every column drift may test: the features, the prediction and the label, each
    exported as a feature is (``tunewatch_drift_share`` counts all of them)."""
    return (*feature_names, PREDICTION_COLUMN, LABEL_COLUMN)


class ColumnDriftSpec(_Frozen):
    """One column's drift method and threshold. Whether the column exists is checked
    against the model's features when it registers or the daemon starts
    (:meth:`Config.check_registered_model`); whether the method fits the column's values
    only against the champion's reference, at evaluation."""

    method: Literal["ks", "psi", "wasserstein", "jensenshannon", "chisquare", "z"]
    threshold: float | None = None

    @model_validator(mode="after")
    def _threshold_fits_the_method(self) -> ColumnDriftSpec:
        # Here, not at the top: the methods import SciPy, which a config without
        # per-column settings (and every CLI command) need not load.
        from monitor.drift import METHODS as DRIFT_METHODS

        try:
            DRIFT_METHODS[self.method](threshold=self.threshold)
        except DriftError as exc:
            raise ValueError(f"method {self.method!r}: {exc}") from exc
        return self


class DriftEvaluationConfig(_Frozen):
    """Drift of features, predictions and labels against the champion's reference."""

    enabled: bool = True
    dataset_rule: Literal["share", "fdr", "bonferroni"] = "share"
    share_threshold: float = Field(default=0.5, gt=0, le=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_rows: int = Field(default=100, ge=2)
    sample_size: int = Field(default=20_000, ge=100)
    columns: dict[str, ColumnDriftSpec] = Field(default_factory=dict)
    # Hysteresis: this many consecutive drifted windows that share no request raise
    # drift_detected (the same requests read again by a later run are one window).
    consecutive: int = Field(default=2, ge=1)
    cooldown_minutes: float = Field(default=360.0, ge=0, le=MAX_DURATION_MINUTES)

    @model_validator(mode="after")
    def _sample_holds_min_rows(self) -> DriftEvaluationConfig:
        if self.sample_size < self.min_rows:
            raise ValueError(
                f"`sample_size` ({self.sample_size}) must be at least `min_rows` "
                f"({self.min_rows}): a smaller sample could never be tested"
            )
        return self


class DecayEvaluationConfig(_Frozen):
    """Realised objective per window of matured labels and its trend."""

    enabled: bool = True
    window_s: float = Field(default=86_400.0, gt=0, le=MAX_DURATION_S)
    # Labels are complete this long after their request: decay counts a request once its
    # label came within it of the window's end, label drift reads the labels of requests
    # at least this old only.
    maturity_s: float = Field(default=86_400.0, ge=0, le=MAX_DURATION_S)
    horizon_windows: int = Field(default=30, ge=3)
    min_windows: int = Field(default=3, ge=3)  # a trend needs three points
    # decay_detected when the trend worsens significantly and the objective is projected
    # to cross ``threshold`` (in the objective's units) within ``horizon_days``. Unset: 5
    # ``tolerance`` worse than the horizon's first ``min_windows`` matured windows,
    # weighted by labelled requests — for RMSE and MAE, whose values are in the target's
    # unit, 5 ``tolerance`` of that level (5 % worse), so the target's unit does not
    # change the verdict (tunewatch._evaluation_decay.default_threshold).
    threshold: float | None = None
    horizon_days: float = Field(default=14.0, gt=0, le=MAX_DURATION_DAYS)
    tolerance: float = Field(default=0.01, gt=0)
    # Two matured windows that share no request, every run between them alarming: a
    # stationary model's verdict alarms on about 1 % of runs, in short runs (the trend
    # over a 30-window horizon moves slowly), and one alarming window raised 0.30 false
    # events per model per 30 days (hourly runs, 200 requests a day, accuracy 0.9, labels
    # at once); two, 0.05. Not a bound: a noisier stream (accuracy 0.7, labels after 6 h)
    # alarms on 2.3 % of runs and raises 0.15 (docs/configuration.md, decay).
    consecutive: int = Field(default=2, ge=1)
    cooldown_minutes: float = Field(default=1440.0, ge=0, le=MAX_DURATION_MINUTES)

    @model_validator(mode="after")
    def _horizon_within_ten_years(self) -> DecayEvaluationConfig:
        """Each run counts the horizon back from now: past year 1, computing its start
        overflows, and every evaluation of the model fails."""
        # `horizon_windows` is a 64-bit integer (Frozen), so the product is a finite float
        if self.horizon_windows > MAX_DURATION_S / self.window_s:
            raise ValueError(
                f"the decay horizon `window_s` × `horizon_windows` ({self.window_s} × "
                f"{self.horizon_windows} = {self.window_s * self.horizon_windows} s) must be "
                f"at most ten years ({MAX_DURATION_S} s), like every duration"
            )
        return self

    @model_validator(mode="after")
    def _horizon_holds_min_windows(self) -> DecayEvaluationConfig:
        maturing = math.ceil(self.maturity_s / self.window_s)  # windows whose labels are young
        matured = self.horizon_windows - maturing
        if matured < self.min_windows:
            raise ValueError(
                f"`horizon_windows` ({self.horizon_windows}) minus the windows still maturing "
                f"(ceil(`maturity_s` {self.maturity_s} / `window_s` {self.window_s}) = "
                f"{maturing}) leaves {matured} matured windows, fewer than `min_windows` "
                f"({self.min_windows}): decay could never be measured"
            )
        return self


class EstimateEvaluationConfig(_Frozen):
    """Label-free accuracy estimate (CBPE) for binary models, before labels arrive."""

    enabled: bool = True
    # estimate_dropped when the estimate falls this far below the reference accuracy.
    max_drop: float = Field(default=0.05, gt=0, lt=1)
    consecutive: int = Field(default=2, ge=1)
    cooldown_minutes: float = Field(default=360.0, ge=0, le=MAX_DURATION_MINUTES)


class EvaluationConfig(_Frozen):
    interval_s: float = Field(default=300.0, gt=0, le=MAX_DURATION_S)
    # The current window: the newest ``window_rows`` rows, or the last ``window_s``.
    window_rows: int | None = Field(default=5000, ge=1)
    window_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    # A ``window_s`` window holding more requests is read as a uniform sample of 1 in 2,
    # 4, 8 … of them, the fewest that keep it at this many at most (a hash of the request
    # id chooses them: the same every read); the verdicts' payloads say ``sample``.
    max_window_requests: int = Field(default=50_000, ge=1)
    drift: DriftEvaluationConfig = DriftEvaluationConfig()
    decay: DecayEvaluationConfig = DecayEvaluationConfig()
    estimate: EstimateEvaluationConfig = EstimateEvaluationConfig()
    label_delay_alarm_s: float = Field(default=7 * 86_400.0, gt=0, le=MAX_DURATION_S)

    @model_validator(mode="before")
    @classmethod
    def _seconds_replace_rows(cls, data: Any) -> Any:
        """A ``window_s`` given alone replaces the default ``window_rows``."""
        seconds = isinstance(data, Mapping) and data.get("window_s") is not None
        if seconds and "window_rows" not in data:
            return {**data, "window_rows": None}
        return data

    @model_validator(mode="after")
    def _one_window(self) -> EvaluationConfig:
        if (self.window_rows is None) == (self.window_s is None):
            raise ValueError(
                "set exactly one of `window_rows` and `window_s`, got "
                f"window_rows={self.window_rows}, window_s={self.window_s}"
            )
        return self

    @model_validator(mode="after")
    def _sample_holds_min_rows(self) -> EvaluationConfig:
        if self.window_s is not None and self.max_window_requests < self.drift.min_rows:
            raise ValueError(
                f"`max_window_requests` ({self.max_window_requests}) must be at least "
                f"`drift.min_rows` ({self.drift.min_rows}): a sampled window would read "
                "insufficient_data at every run"
            )
        return self

    @model_validator(mode="after")
    def _window_holds_min_rows(self) -> EvaluationConfig:
        """Drift, and the accuracy estimate, test a window of at least ``drift.min_rows``
        rows: a smaller ``window_rows`` holds enough only when its newest request does (a
        window is whole requests), else it reads insufficient_data at every run. Said
        when the config loads, not refused: batched traffic may fill it."""
        testing = self.drift.enabled or self.estimate.enabled
        if testing and self.window_rows is not None and self.window_rows < self.drift.min_rows:
            logger.warning(
                "evaluation.window_rows (%d) is below drift.min_rows (%d): drift and the "
                "accuracy estimate are tested only when the newest request alone holds "
                "%d rows, and read insufficient_data otherwise",
                self.window_rows,
                self.drift.min_rows,
                self.drift.min_rows,
            )
        return self


def warn_estimate_beyond_binary(model: str, task: str, evaluation: EvaluationConfig) -> None:
    """Warn about an ``evaluation.estimate`` section written, and not switched off, for a
    model that is not binary: the label-free estimate (CBPE) runs on binary models only,
    and such a section loaded without a word and did nothing. Not refused: configs that
    wrote one loaded before. The section's defaults (none written) warn about nothing."""
    if task == "binary" or "estimate" not in evaluation.model_fields_set:
        return
    if evaluation.estimate.enabled:
        logger.warning(
            "model=%s: `evaluation.estimate` has no effect: the label-free accuracy estimate "
            "(CBPE) runs on binary models only, got task %r; remove the section",
            model,
            task,
        )


#: What an evaluation reads back, for the retention check: where it is configured (key
#: paths in backticks), what it is, and the seconds that add up to how old its oldest
#: request may be.
ReadBack = tuple[str, str, tuple[float, ...]]


def retention_reads(at: str, evaluation: EvaluationConfig) -> list[ReadBack]:
    """How far back the evaluation ``evaluation`` (at key path ``at``) reads requests:
    decay's horizon, and the windows ending ``decay.maturity_s`` (label drift, the
    estimate) and ``label_delay_alarm_s`` (the alarm) ago — with ``window_s`` set, each a
    ``window_s`` window (:func:`tunewatch._drift_report.aged_window`), as is the current
    one; a ``window_rows`` window reaches back as far as the traffic makes it, and only
    the age it ends at is known here."""
    decay = evaluation.decay
    windows = decay.horizon_windows + 1
    horizon: ReadBack = (
        f"`{at}.decay`",
        "decay horizon `window_s` × (`horizon_windows` + 1) "
        f"({decay.window_s:.15g} × {windows}: the windows lie on fixed edges, so the "
        "oldest begins up to a window before `horizon_windows` windows ago)",
        (decay.window_s * windows,),
    )
    maturity, alarm = decay.maturity_s, evaluation.label_delay_alarm_s
    window_s = evaluation.window_s
    if window_s is None:
        return [
            horizon,
            (f"`{at}.decay.maturity_s`", "`maturity_s`", (maturity,)),
            (
                f"`{at}.label_delay_alarm_s`",
                "`label_delay_alarm_s` (the alarm reads requests that old)",
                (alarm,),
            ),
        ]
    ages = (  # key (its last part), what reads the window ending that long ago, the age
        ("decay.maturity_s", "maturity_s", "label drift", maturity),
        ("label_delay_alarm_s", "label_delay_alarm_s", "the label-delay alarm", alarm),
    )
    return [
        horizon,
        (f"`{at}.window_s`", "current window `window_s`", (window_s,)),
        *(
            (
                f"`{at}.{key}` + `{at}.window_s`",
                f"`{name}` + `window_s` ({reader} reads the `window_s` window of requests at "
                f"least `{name}` old)",
                (age, window_s),
            )
            for key, name, reader, age in ages
        ),
    ]
