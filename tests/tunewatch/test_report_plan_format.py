"""A version's report of a warm-start plan stored in a format newer than this release
reads (a bundle imported from a newer release): the plan section never read the stored
``format_version`` and showed the plan as if it were this release's format."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retune.warmstart import PLAN_FORMAT_VERSION, CostCeiling, WarmStartPlan
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report

PLAN = WarmStartPlan(
    strategies=("combined", "cost_constraint"),
    cost=CostCeiling(max_latency_p99_s=0.05),
    history_studies=("credit-job1",),
    n_history_trials=8,
    notes=("reject configurations predicted over p99 latency 50 ms",),
)


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    d, _ = make_daemon(tmp_path / "data", trained)
    yield d
    d.close()


def _register(d: Daemon, trained: list[ExampleModel], plan: dict[str, Any]) -> int:
    meta = dataclasses.replace(trained[1].metadata, details={"warm_start_plan": plan})
    return d.registry.register(MODEL, trained[1].onnx, meta, actor="t", stage="shadow").version


def _section(d: Daemon, version: int) -> tuple[str, str]:
    """The plan section of the version's report in markdown, and the whole report in HTML."""
    report = build_report(d.store, d.config, MODEL, version)
    markdown = report.markdown()
    start = markdown.index("## Warm-start plan")
    return markdown[start : markdown.index("\n## ", start + 1)], report.html()


def test_a_plan_of_a_newer_format_is_reported_as_such_not_rendered(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    newer = PLAN_FORMAT_VERSION + 1
    stored = {**PLAN.to_dict(), "format_version": newer, "cost": {"p99_budget_ms": 50}}
    section, html = _section(daemon, _register(daemon, trained, stored))
    assert (
        f"Stored by a newer release: plan format {newer}, this release reads up to "
        f"{PLAN_FORMAT_VERSION}; upgrade tunewatch to show it."
    ) in section, section
    assert "serving-cost ceiling" not in section and "p99_budget_ms" not in section
    assert "history studies" not in section and "Cold start" not in section
    assert "Stored by a newer release" in html and "Hyperparameter importances" in html


def test_a_plan_of_this_release_s_format_is_rendered(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    section, _ = _section(daemon, _register(daemon, trained, PLAN.to_dict()))
    assert "newer release" not in section
    assert "history studies**: credit-job1" in section
    assert "serving-cost ceiling**:" in section and "0.05" in section


def test_a_plan_whose_format_is_unreadable_says_so(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Free JSON (the API, a bundle): a format that is not a whole number is no format
    this release reads either."""
    stored = {**PLAN.to_dict(), "format_version": "2"}
    section, _ = _section(daemon, _register(daemon, trained, stored))
    assert (
        f"Unreadable plan format: '2', not a whole number from 1 to {PLAN_FORMAT_VERSION}."
    ) in section, section
    assert "history studies" not in section
