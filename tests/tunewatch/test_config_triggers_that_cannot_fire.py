"""A trigger written for an event the model's configuration never raises loads, with one
warning at load naming the model, the trigger and why it cannot fire; the defaults (a
catalogue of every event, each raised where it applies) warn about nothing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tunewatch._config import build_config

LOGGER = "tunewatch._config_model"


def _warnings(caplog: pytest.LogCaptureFixture, model: dict[str, Any]) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        build_config({"models": [{"name": "credit", **model}]}, env={})
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


@pytest.mark.parametrize(
    ("model", "trigger", "why"),
    [
        pytest.param(
            {"task": "regression"},
            "estimate_dropped",
            "binary models only",
            id="estimate_on_regression",
        ),
        pytest.param(
            {"task": "multiclass"},
            "estimate_dropped",
            "binary models only",
            id="estimate_on_multiclass",
        ),
        pytest.param(
            {"task": "binary", "evaluation": {"estimate": {"enabled": False}}},
            "estimate_dropped",
            "evaluation.estimate.enabled",
            id="estimate_switched_off",
        ),
        pytest.param(
            {"task": "binary", "evaluation": {"drift": {"enabled": False}}},
            "drift_detected",
            "evaluation.drift.enabled",
            id="drift_switched_off",
        ),
        pytest.param(
            {"task": "binary", "evaluation": {"decay": {"enabled": False}}},
            "decay_detected",
            "evaluation.decay.enabled",
            id="decay_switched_off",
        ),
        pytest.param({"task": "binary"}, "srm_detected", "comparison.split", id="srm_no_split"),
    ],
)
def test_a_trigger_that_cannot_fire_is_warned_about_once(
    caplog: pytest.LogCaptureFixture, model: dict[str, Any], trigger: str, why: str
) -> None:
    said = _warnings(caplog, {**model, "triggers": [{"on": trigger, "do": "notify"}]})
    assert len(said) == 1, said
    assert "model=credit" in said[0] and f"on: {trigger}" in said[0] and why in said[0]


def test_an_empty_trigger_list_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    said = _warnings(caplog, {"task": "binary", "triggers": []})
    assert len(said) == 1, said
    assert "model=credit" in said[0] and "`triggers` is empty" in said[0]
    assert "never promotes" in said[0]


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_default_triggers_warn_about_nothing(
    caplog: pytest.LogCaptureFixture, task: str
) -> None:
    """The defaults carry every event (srm_detected with no split, estimate_dropped on a
    regression model): they apply where the event is raised, and say nothing."""
    assert _warnings(caplog, {"task": task}) == []
    assert _warnings(caplog, {"task": task, "evaluation": {"drift": {"enabled": False}}}) == []


def test_triggers_that_can_fire_warn_about_nothing(caplog: pytest.LogCaptureFixture) -> None:
    model = {
        "task": "binary",
        "triggers": [
            {"on": "drift_detected", "do": "retune"},
            {"on": "estimate_dropped", "do": "retune"},
            {"on": "srm_detected", "do": "notify"},
        ],
        "comparison": {"split": {"challenger": 2, "percent": 10, "salt": "exp-1"}},
    }
    assert _warnings(caplog, model) == []
