"""The ``tuning`` section of a model's configuration: how its re-tuning job runs (see
:mod:`tunewatch._config`, which re-exports it)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from retune import SearchSpaceError
from retune.space import load_search_space
from tunewatch._config_base import MAX_DURATION_HOURS, MAX_DURATION_S
from tunewatch._config_base import Frozen as _Frozen
from tunewatch._cron import crontab_trigger

logger = logging.getLogger(__name__)

#: The largest search-space file the config reads (they are a few kilobytes).
MAX_SEARCH_SPACE_BYTES = 2**20


class TuningJobConfig(_Frozen):
    """How a model's re-tuning job runs: space, data, CV, warm start, budget, export."""

    # A standing schedule besides the triggers: a cron expression ("0 3 * * 0") or hours
    # between runs, counted from the last scheduled run the store recorded (or the model's
    # registration), not from a restart or failover; runs missed while no process led
    # coalesce into one, run as soon as a leader schedules the job. The job id is fixed
    # per model.
    schedule_cron: str | None = None
    schedule_hours: float | None = Field(default=None, gt=0, le=MAX_DURATION_HOURS)

    @field_validator("schedule_cron")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        if value is not None:
            crontab_trigger(value)  # raises ValueError naming the field and the rule
        return value

    # None: the package's search_spaces/binary_tabular.yaml, or regression_tabular.yaml
    # for a regression model, wherever tunewatch is installed
    search_space: str | None = None

    @field_validator("search_space")
    @classmethod
    def _space_loads(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Read once here as well as by every job: a file that is missing or that the
        pipeline cannot build made every promotion wait or every trial fail. A relative
        path is read beside the config file (as Prometheus reads its rule files), or in the
        working directory for a config built without one, and kept absolute, so a command
        run from any directory, and the workers' written-out copy, read the same file.
        ``~`` is expanded as in the other paths (``~/s.yaml`` was read as ``<dir>/~/s.yaml``);
        an unknown ``~user`` stays as written."""
        if value is None:
            return value
        base = None if info.context is None else info.context.get("config_dir")
        value = os.path.expanduser(value)
        if not Path(value).is_absolute():  # kept absolute: a written-out copy reads the same
            value = str((Path(base) if base is not None else Path.cwd()) / value)
        _small_regular_file(value)
        try:
            load_search_space(value)
        except SearchSpaceError as exc:
            raise ValueError(f"the search space does not load: {exc}") from exc
        return value

    window_rows: int = Field(default=20_000, ge=10)
    min_rows: int = Field(default=200, ge=10)
    # the champion's labelled reference rows before the traffic window: a hand-registered
    # or imported champion's whole reference, a tuned one's own traffic part (not the rows
    # it inherited), less the rows the window reads again
    include_reference: bool = True
    # stratified: stratified k-fold for a classifier, shuffled k-fold for a regressor (no
    # classes to stratify by); time_series: forward-chaining folds over the rows in the
    # order they were received, leaving `cv_gap` rows out between training and test rows
    # (labels that mature late, autocorrelation); grouped: group k-fold, all rows with the
    # same value of the feature `cv_group_column` (a customer, a device) in one fold;
    # nested: the study tunes on `cv_folds` inner folds, then the job tunes again on each
    # of `cv_outer_folds` outer training parts and scores that choice on the outer test
    # part — an unbiased estimate of the tuned model (`cv_outer_folds` more studies; both
    # levels group k-fold with `cv_group_column` set, else as `stratified`)
    cv: Literal["stratified", "time_series", "grouped", "nested"] = "stratified"
    cv_folds: int = Field(default=3, ge=2)
    cv_gap: int = Field(default=0, ge=0)
    cv_group_column: str | None = Field(default=None, min_length=1)
    cv_outer_folds: int | None = Field(default=None, ge=2)  # None: 3 with `cv: nested`
    max_fold_spread: float | None = Field(default=None, gt=0)
    warm_start: Literal["none", "enqueue", "box", "combined"] = "combined"
    # `box` and `combined` only: freeze each parameter whose fANOVA importance share over
    # the earlier studies is below this share to its value in their best configuration
    # (exploring trials still vary it; needs 15 earlier trials valid in the space). None:
    # nothing frozen. `enqueue` and `none` learn no box to freeze in: refused with them
    freeze_unimportant_below: float | None = Field(default=None, gt=0, lt=1)
    max_trials: int = Field(default=30, ge=1)
    wall_time_s: float | None = Field(default=900.0, gt=0, le=MAX_DURATION_S)
    cpu_time_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    patience: int | None = Field(default=12, ge=1)
    min_relative_improvement: float = Field(default=0.001, ge=0, lt=1)
    pruner: Literal["none", "median", "successive_halving"] = "median"
    # finite (as every setting): an infinite tolerance passed any export; above zero: a
    # float32 export never matches float64 scikit-learn exactly, so 0 failed every job
    # after its whole study
    parity_tolerance: float = Field(default=1e-4, gt=0)
    # numpy's and Optuna's seeds are 32-bit unsigned: -1 loaded and every job failed with
    # "Seed must be between 0 and 2**32 - 1"
    seed: int = Field(default=0, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _one_schedule(self) -> TuningJobConfig:
        if self.schedule_cron is not None and self.schedule_hours is not None:
            # the cron expression won and the hours were silently ignored
            raise ValueError(
                "set either `schedule_cron` or `schedule_hours`, not both, got "
                f"schedule_cron={self.schedule_cron!r}, schedule_hours={self.schedule_hours}"
            )
        return self

    @model_validator(mode="after")
    def _freeze_with_a_box(self) -> TuningJobConfig:
        if self.freeze_unimportant_below is not None and self.warm_start not in ("box", "combined"):
            # `enqueue` re-scores configurations and samples the full space; `none` learns
            # nothing: the share would be taken and silently do nothing
            raise ValueError(
                f"`freeze_unimportant_below` ({self.freeze_unimportant_below}) applies to "
                f"`warm_start: box` or `warm_start: combined`, got `warm_start: "
                f"{self.warm_start}`"
            )
        return self

    @model_validator(mode="after")
    def _window_holds_min_rows(self) -> TuningJobConfig:
        """Without the reference a job trains on the window alone: one smaller than
        ``min_rows`` is enough only when its newest request fills it (a window is whole
        requests). Said when the config loads, not refused: batched traffic may."""
        if not self.include_reference and self.window_rows < self.min_rows:
            logger.warning(
                "tuning.window_rows (%d) is below tuning.min_rows (%d) with "
                "include_reference false: a job fails unless the newest request alone holds "
                "%d labelled rows",
                self.window_rows,
                self.min_rows,
                self.min_rows,
            )
        return self

    @model_validator(mode="after")
    def _gap_of_a_time_series(self) -> TuningJobConfig:
        if self.cv_gap and self.cv != "time_series":
            raise ValueError(
                f"`cv_gap` ({self.cv_gap}) applies to `cv: time_series`, got `cv: {self.cv}`"
            )
        return self

    @model_validator(mode="after")
    def _groups_and_outer_folds(self) -> TuningJobConfig:
        if self.cv == "grouped" and self.cv_group_column is None:
            raise ValueError(
                "`cv: grouped` needs `cv_group_column` (the feature whose value names a row's "
                "group), got none"
            )
        if self.cv_group_column is not None and self.cv not in ("grouped", "nested"):
            raise ValueError(
                f"`cv_group_column` ({self.cv_group_column}) applies to `cv: grouped` or "
                f"`cv: nested`, got `cv: {self.cv}`"
            )
        if self.cv_outer_folds is not None and self.cv != "nested":
            raise ValueError(
                f"`cv_outer_folds` ({self.cv_outer_folds}) applies to `cv: nested`, got "
                f"`cv: {self.cv}`"
            )
        return self


def _small_regular_file(path: str) -> None:
    """Refuse a search space that is not a regular file of at most
    ``MAX_SEARCH_SPACE_BYTES``: ``/dev/zero`` was read without end, a pipe blocked the
    load. A missing file is left to the loader, whose message says so."""
    try:
        info = os.stat(path)
    except OSError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"the search space {path} is not a regular file")
    if info.st_size > MAX_SEARCH_SPACE_BYTES:
        raise ValueError(
            f"the search space {path} is larger than 1 MiB ({info.st_size} bytes); a search "
            "space is a few kilobytes of YAML"
        )
