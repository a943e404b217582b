"""The ``models:`` section of the configuration: a model's feature ranges, safe
hyperparameter ranges, triggers, objective and the sections it nests (evaluation,
tuning, comparison). Loaded through :func:`tunewatch._config.load_config`."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from monitor.objectives import ObjectiveError, make_objective
from retune.space import (
    CHOICES,
    DEFAULTS,
    KNOWN_PARAMS,
    READ_UNDER,
    is_regression,
    load_search_space,
    reachable,
)
from tunewatch._config_base import MAX_DURATION_MINUTES, error_within, first_item
from tunewatch._config_base import Frozen as _Frozen
from tunewatch._config_evaluation import EvaluationConfig, warn_estimate_beyond_binary
from tunewatch._config_tuning import TuningJobConfig
from tunewatch.comparison import ComparisonConfig
from tunewatch.store import MAX_MODEL_NAME, valid_model_name

logger = logging.getLogger(__name__)

Task = Literal["binary", "multiclass", "regression"]


class FeatureConfig(_Frozen):
    name: str = Field(min_length=1)
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> FeatureConfig:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"`low` must be <= `high`, got low={self.low}, high={self.high}")
        return self


class SafeRange(_Frozen):
    """Hyperparameter values a promotion may take without an approver."""

    low: float | None = None
    high: float | None = None
    choices: tuple[str | int | float | bool, ...] | None = None

    @model_validator(mode="after")
    def _one_meaning(self) -> SafeRange:
        if self.choices is not None and (self.low is not None or self.high is not None):
            raise ValueError(
                f"a safe range takes either `choices` or `low`/`high`, not both, got "
                f"choices={list(self.choices)}, low={self.low}, high={self.high}"
            )
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"`low` must be <= `high`, got low={self.low}, high={self.high}")
        words = [c for c in self.choices or () if isinstance(c, str) and c.lower() in _FLAGS]
        if words:
            raise ValueError(
                f"`choices` {words}: write a flag as true or false (this file reads yes/no/"
                "on/off as text, a search space as a flag, so they would never match)"
            )
        return self


# YAML 1.1's other spellings of a flag, which search spaces (PyYAML) still read as one
_FLAGS = frozenset({"yes", "no", "on", "off", "y", "n"})


def _pipeline_parameter(name: str) -> str:
    """A safe range's name: one the tuned pipeline has (``retune.space``'s vocabulary).
    Any other name never matches a hyperparameter, so its range would guard nothing."""
    if name not in KNOWN_PARAMS:
        near = difflib.get_close_matches(name, KNOWN_PARAMS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(
            f"a safe range must name a parameter of the tuned pipeline{hint}, one of "
            f"{sorted(KNOWN_PARAMS)}"
        )
    return name


PipelineParameter = Annotated[str, AfterValidator(_pipeline_parameter)]


def _task_estimators(task: str) -> list[str]:
    """The estimator choices a ``task`` model builds: regressors or classifiers."""
    regression = task == "regression"
    return [e for e in CHOICES["estimator"] if is_regression({"estimator": e}) == regression]


def _unfit_safe_range(name: str, rule: SafeRange, task: str) -> PydanticCustomError | None:
    """Why the safe range ``rule`` of ``name`` guards nothing for a ``task`` model (no
    estimator of the task reads ``name``), or makes every promotion wait (a choice the
    pipeline never builds, a number for a choice or a choice for a number); ``None``
    when it fits."""
    builds = _task_estimators(task)
    reader = READ_UNDER.get(name)
    if reader is not None and reader[0] == "estimator" and not reader[1] & set(builds):
        read_by = [e for e in CHOICES["estimator"] if e in reader[1]]
        kind = "regressors" if task == "regression" else "classifiers"
        return error_within(
            "safe_range_task",
            f"`{name}` is read only by the estimator(s) {read_by}, which a task {task!r} "
            f"model never builds ({kind} only): its range would guard nothing",
            (name,),
            name,
        )
    if name not in CHOICES:  # a number
        text = [c for c in rule.choices or () if isinstance(c, bool | str)]
        if text:
            return error_within(
                "safe_range_choices",
                f"`{name}` is a number: its safe `choices` must be numbers (a promotion "
                "never builds another value, so every one would wait)",
                (name, "choices"),
                text,
            )
        return None
    valid = builds if name == "estimator" else list(CHOICES[name])
    if rule.choices is None:
        bounds = rule.low is not None or rule.high is not None
        got = f"low={rule.low}, high={rule.high}" if bounds else "neither"
        return error_within(  # a mapping as the value: the message says what it was
            "safe_range_choices",
            f"`{name}` takes {valid}: its safe range is a list of `choices`, not `low`/"
            f"`high` (no choice is a number, so every promotion would wait), got {got}",
            (name,),
            {},
        )
    wrong = [c for c in rule.choices if not (isinstance(c, str) and c in valid)]
    if wrong:
        which = f" for task {task!r}" if name == "estimator" else ""
        near = [
            m for c in wrong if isinstance(c, str) for m in difflib.get_close_matches(c, valid, 1)
        ]
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return error_within(
            "safe_range_choices",
            f"`{name}` takes {valid}{which}{hint}: a choice the pipeline never builds made "
            "every promotion wait",
            (name, "choices"),
            wrong,
        )
    return None


class ObjectiveConfig(_Frozen):
    """The model's primary objective (``monitor.objectives``), e.g. ``log_loss`` or
    ``recall_at_precision`` with ``params: {min_precision: 0.9}``."""

    name: str = "log_loss"
    params: dict[str, float | list[list[float]]] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _no_flag_for_a_parameter(cls, value: Any) -> Any:
        """A parameter is a number or a matrix of numbers, at any depth not a flag (as any
        number setting): ``min_precision: true`` was 1.0, ``cost_matrix: [[false, true],
        [true, false]]`` the 0/1 costs."""
        found = first_item(value, lambda item: isinstance(item, bool))
        if found is not None and isinstance(value, Mapping):  # else: not a mapping, says why
            at, flag = found
            raise error_within("number_type", "Input should be a number, not a flag", at, flag)
        return value


EventType = Literal[
    "drift_detected",
    "decay_detected",
    "estimate_dropped",
    "label_delay_high",
    "challenger_better",
    "challenger_worse",
    "srm_detected",
    "alert_received",
    "schedule",
    "manual",
]
# What a trigger can cause. ``retune`` queues a job (the dispatcher), ``promote`` is carried
# out by the comparison loop for the version that won (so only on challenger_better), and
# ``notify`` is the recorded event itself. Rollbacks come from the rollback watch
# (``comparison.rollback``) or an operator, never from a trigger.
Action = Literal["retune", "promote", "notify"]


class TriggerConfig(_Frozen):
    """When ``on`` happens to a model, do ``do`` — a retune at most once per
    ``cooldown_minutes``."""

    on: EventType
    do: Action
    cooldown_minutes: float = Field(default=60.0, ge=0, le=MAX_DURATION_MINUTES)

    @model_validator(mode="before")
    @classmethod
    def _cooldown_of_retunes(cls, data: Any) -> Any:
        """Only a retune has a default cool-down; others have none, so the effective
        configuration written for the workers loads as it was dumped."""
        if isinstance(data, dict) and data.get("do") != "retune":
            data = {"cooldown_minutes": 0.0, **data}
        return data

    @field_validator("do", mode="before")
    @classmethod
    def _not_rollback(cls, value: Any) -> Any:
        if value == "rollback":
            raise ValueError(
                "`do: rollback` is not carried out by a trigger; the rollback watch "
                "(`comparison.rollback`) rolls a promotion back, and an operator with "
                "`tunewatch rollback` or POST /v1/models/{m}/rollback"
            )
        return value

    @model_validator(mode="after")
    def _carried_out(self) -> TriggerConfig:
        if self.do == "promote" and self.on != "challenger_better":
            raise ValueError(
                "`do: promote` needs `on: challenger_better` (the only event naming a "
                f"version to promote), got on: {self.on}"
            )
        if self.do != "retune" and self.cooldown_minutes > 0:
            raise ValueError(
                "`cooldown_minutes` applies to `do: retune` only (a promotion or a notice "
                f"is not held back), got {self.cooldown_minutes} with do: {self.do}"
            )
        return self


DEFAULT_TRIGGERS: tuple[TriggerConfig, ...] = (
    TriggerConfig(on="drift_detected", do="retune", cooldown_minutes=360),
    TriggerConfig(on="decay_detected", do="retune", cooldown_minutes=360),
    TriggerConfig(on="estimate_dropped", do="retune", cooldown_minutes=360),
    TriggerConfig(on="alert_received", do="retune", cooldown_minutes=60),
    TriggerConfig(on="schedule", do="retune", cooldown_minutes=0),
    TriggerConfig(on="manual", do="retune", cooldown_minutes=0),
    TriggerConfig(on="challenger_better", do="promote", cooldown_minutes=0),
    TriggerConfig(on="challenger_worse", do="notify", cooldown_minutes=0),
    TriggerConfig(on="srm_detected", do="notify", cooldown_minutes=0),
    TriggerConfig(on="label_delay_high", do="notify", cooldown_minutes=0),
)


class ModelConfig(_Frozen):
    # The store's rule for a new model's name; a model only registered gets its defaults
    # under the name the store holds (see Config.model_or_default).
    name: str
    task: Task
    # Regulated models never promote without an approver who is not the requester.
    regulated: bool = False
    features: tuple[FeatureConfig, ...] = ()
    safe_ranges: dict[PipelineParameter, SafeRange] = Field(default_factory=dict)
    triggers: tuple[TriggerConfig, ...] = DEFAULT_TRIGGERS
    objective: ObjectiveConfig = ObjectiveConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tuning: TuningJobConfig = TuningJobConfig()
    comparison: ComparisonConfig = ComparisonConfig()

    def trigger(self, event: str) -> TriggerConfig | None:
        return next((t for t in self.triggers if t.on == event), None)

    @field_validator("safe_ranges")
    @classmethod
    def _safe_ranges_fit_task(
        cls, ranges: dict[str, SafeRange], info: ValidationInfo
    ) -> dict[str, SafeRange]:
        """A range no estimator of the task reads guarded nothing (a regression model's
        ``C``: a version with alpha=500 was promoted without an approver), and a choice the
        pipeline never builds (``estimator: {choices: [logistc]}``) made every promotion
        wait."""
        task = info.data.get("task")
        if task is None:  # its own error says why
            return ranges
        for name, rule in ranges.items():
            problem = _unfit_safe_range(name, rule, task)
            if problem is not None:
                raise problem
        return ranges

    @field_validator("features")
    @classmethod
    def _one_range_per_feature(
        cls, features: tuple[FeatureConfig, ...]
    ) -> tuple[FeatureConfig, ...]:
        """Whether the names are the model's features is checked when it registers
        (:meth:`Config.check_registered_model`)."""
        first: dict[str, int] = {}
        for i, f in enumerate(features):
            if f.name in first:
                # the last range silently replaced the first
                raise ValueError(
                    f"`features.{first[f.name]}` and `features.{i}` both name {f.name!r}: "
                    f"a feature's range must name it once, got {f.name!r} more than once"
                )
            first[f.name] = i
        return features

    @field_validator("triggers")
    @classmethod
    def _one_trigger_per_event(
        cls, triggers: tuple[TriggerConfig, ...]
    ) -> tuple[TriggerConfig, ...]:
        first: dict[str, int] = {}
        for i, t in enumerate(triggers):
            if t.on in first:
                raise ValueError(
                    f"`triggers.{first[t.on]}` and `triggers.{i}` are both for `on: {t.on}` (do: "
                    f"{triggers[first[t.on]].do} and do: {t.do}); only the first would "
                    "apply: give an event one trigger"
                )
            first[t.on] = i
        return triggers

    @field_validator("name")
    @classmethod
    def _name_the_store_takes(cls, value: str, info: ValidationInfo) -> str:
        if info.context is not None and info.context.get("registered"):
            return value  # the store holds it, perhaps from before names could not be paths
        if not valid_model_name(value):
            raise ValueError(
                f"a model `name` must be 1 to {MAX_MODEL_NAME} printable characters, not a "
                f"path (no `/` or `\\`, not `.` or `..`) and no space first or last, as the "
                "store requires"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _objective_of_the_task(cls, data: Any) -> Any:
        if (
            isinstance(data, Mapping)
            and "objective" not in data
            and data.get("task") == "regression"
        ):
            return {**data, "objective": {"name": "rmse"}}
        return data

    @model_validator(mode="after")
    def _space_fits_task(self) -> ModelConfig:
        """A regression model tuned in the classifiers' space (or the reverse) failed
        every trial; one whose space declares ``estimator`` under some branches only
        failed the trials of the others, which build the default estimator."""
        if self.tuning.search_space is None:
            return self
        space = load_search_space(self.tuning.search_space)
        reached = [dict(c) for c in reachable(space.params, frozenset({"estimator"}))]
        defaulted = any("estimator" not in point for point in reached)
        built = {point.get("estimator", DEFAULTS["estimator"]) for point in reached}
        regression = self.task == "regression"
        wrong = sorted(str(c) for c in built if is_regression({"estimator": c}) != regression)
        if wrong:
            kind = "regressors" if regression else "classifiers"
            default = (
                f" (`{DEFAULTS['estimator']}` is the default, built by the points that reach "
                "no `estimator`)"
                if defaulted and DEFAULTS["estimator"] in wrong
                else ""
            )
            raise ValueError(
                f"`tuning.search_space` {self.tuning.search_space} offers the estimator "
                f"choice(s) {wrong}{default}, which do not fit task {self.task!r} ({kind} only)"
            )
        return self

    @model_validator(mode="after")
    def _schedule_has_its_trigger(self) -> ModelConfig:
        """A standing schedule fires the `schedule` event: with no trigger for it (a
        ``triggers`` list replaces the defaults, which have one) each run recorded the
        event and queued nothing."""
        schedule = self.tuning.schedule_cron or self.tuning.schedule_hours
        if schedule is not None and self.trigger("schedule") is None:
            key = "schedule_cron" if self.tuning.schedule_cron else "schedule_hours"
            raise ValueError(
                f"`tuning.{key}` ({schedule}) fires the `schedule` event, which no trigger "
                "carries out: add a trigger `on: schedule` (`{on: schedule, do: retune}`) "
                f"to `triggers`, got triggers for {[t.on for t in self.triggers]}"
            )
        return self

    @model_validator(mode="after")
    def _warn_triggers_that_cannot_fire(self) -> ModelConfig:
        """Warn, once per load, about a trigger written for an event this configuration
        never raises, and about an empty ``triggers`` list (after every event, nothing
        follows), and about an ``evaluation.estimate`` section of a model that is not
        binary (:func:`warn_estimate_beyond_binary`). The defaults warn about nothing:
        they carry every event, each carried out where the model raises it."""
        warn_estimate_beyond_binary(self.name, self.task, self.evaluation)
        if self.triggers == DEFAULT_TRIGGERS:
            return self
        if not self.triggers:
            logger.warning(
                "model=%s: `triggers` is empty: every event is recorded and nothing "
                "follows it, no retune, and a challenger that wins never promotes (no "
                "`on: challenger_better, do: promote`); leave `triggers` out for the "
                "defaults",
                self.name,
            )
        for trigger in self.triggers:
            why = self._never_raised(trigger.on)
            if why is not None:
                logger.warning(
                    "model=%s: trigger `on: %s, do: %s` cannot fire: %s",
                    self.name,
                    trigger.on,
                    trigger.do,
                    why,
                )
        return self

    def _never_raised(self, event: str) -> str | None:
        """Why the model never raises ``event`` with this configuration (``None``: it may)."""
        ev = self.evaluation
        if event == "estimate_dropped" and self.task != "binary":
            return f"the accuracy estimate runs on binary models only, got task {self.task!r}"
        switched_off = {
            "drift_detected": ("drift", ev.drift.enabled),
            "decay_detected": ("decay", ev.decay.enabled),
            "estimate_dropped": ("estimate", ev.estimate.enabled),
        }
        if event in switched_off and not switched_off[event][1]:
            kind = switched_off[event][0]
            return f"`evaluation.{kind}.enabled` is false, so no {kind} verdict is stored"
        if event == "srm_detected" and self.comparison.split is None:
            return (
                "only a live split's sample-ratio check raises it, and no "
                "`comparison.split` is configured"
            )
        return None

    @model_validator(mode="after")
    def _objective_fits(self) -> ModelConfig:
        try:
            make_objective(self.objective.name, task=self.task, **self.objective.params)
        except ObjectiveError as exc:
            raise ValueError(f"`objective`: {exc}") from exc
        return self
