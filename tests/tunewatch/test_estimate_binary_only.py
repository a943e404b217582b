"""The label-free accuracy estimate (CBPE) runs on binary models only: ``tunewatch
estimate`` of a multiclass or regression model said "no estimate evaluations of m yet",
as if one were coming, and an ``evaluation.estimate`` section written for such a model
loaded without a word."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch.store import Store

LOGGER = "tunewatch._config_evaluation"
#: The stored models, by task.
MODELS = {"binary": "credit", "multiclass": "grade", "regression": "price"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config over a store holding a model of each task (:data:`MODELS`)."""
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    (tmp_path / "data").mkdir()
    store = Store.open(f"sqlite:///{tmp_path}/data/tunewatch.db")
    try:
        for task, name in MODELS.items():
            store.ensure_model(name=name, task=task, feature_names=["a", "b"])
    finally:
        store.close()
    return path


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_estimate_of_a_model_that_is_not_binary_says_it_applies_to_binary_models_only(
    config: Path, capsys: pytest.CaptureFixture[str], task: str
) -> None:
    name = MODELS[task]
    assert main(["--config", str(config), "estimate", name]) == 0
    assert capsys.readouterr().out == (
        f"no estimate evaluations of {name}: the label-free accuracy estimate (CBPE) "
        f"applies to binary models only, and {name} is a {task} model\n"
    )


def test_estimate_of_a_binary_model_without_evaluations_says_none_yet(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "estimate", "credit"]) == 0
    assert capsys.readouterr().out == "no estimate evaluations of credit yet\n"


def _warnings(
    caplog: pytest.LogCaptureFixture, task: str, evaluation: dict[str, object]
) -> list[str]:
    """What loading a config of model ``credit`` of ``task`` with ``evaluation`` warns."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        build_config(
            {"models": [{"name": "credit", "task": task, "evaluation": evaluation}]}, env={}
        )
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_an_estimate_section_of_a_model_that_is_not_binary_is_warned_about(
    caplog: pytest.LogCaptureFixture, task: str
) -> None:
    assert _warnings(caplog, task, {"estimate": {"max_drop": 0.1}}) == [
        f"model=credit: `evaluation.estimate` has no effect: the label-free accuracy "
        f"estimate (CBPE) runs on binary models only, got task {task!r}; remove the "
        "section"
    ]


@pytest.mark.parametrize(
    ("task", "evaluation"),
    [
        pytest.param("binary", {"estimate": {"max_drop": 0.1}}, id="binary-with-section"),
        pytest.param("multiclass", {}, id="multiclass-default"),
        pytest.param("regression", {"estimate": {"enabled": False}}, id="regression-off"),
    ],
)
def test_no_warning_where_the_estimate_runs_or_none_was_asked_for(
    caplog: pytest.LogCaptureFixture, task: str, evaluation: dict[str, object]
) -> None:
    assert _warnings(caplog, task, evaluation) == []
