"""What a version's report says of its warm start: learned from earlier studies, off by
configuration, a cold start with none to learn from, or no tuning job at all."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.report_imports import audit_import
from tests.tunewatch.test_tuning import _config, _daemon, _runner
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report


def _plan_text(d: Daemon, version: int) -> str:
    """The report's warm-start section, up to the next one."""
    markdown = build_report(d.store, d.config, MODEL, version).markdown()
    start = markdown.index("## Warm-start plan")
    return markdown[start : markdown.index("\n## ", start + 1)]


def _run_job(d: Daemon) -> int:
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    job = _runner(d).run(outcome.job_id)
    assert job.status == "succeeded", job.error
    assert job.result is not None
    return int(job.result["version"])


def test_a_job_with_warm_start_off_is_not_reported_as_having_nothing_to_learn_from(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """`tuning.warm_start: none` left the plan empty, and the report said "Cold start: no
    earlier study to learn from." beside an earlier job's succeeded study."""
    d = _daemon(_config(tmp_path, warm_start="none"), trained)
    try:
        first, second = _run_job(d), _run_job(d)
        for version in (second, first):
            text = _plan_text(d, version)
            assert "no earlier study" not in text and "Cold start" not in text, text
            assert "Warm start off (tuning.warm_start: none)." in text, text
        assert d.store.get_version(MODEL, second).details["warm_start_mode"] == "none"
    finally:
        d.close()


def test_a_first_job_with_warm_start_on_is_a_cold_start(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    d = _daemon(_config(tmp_path), trained)
    try:
        version = _run_job(d)
        assert "Cold start: no earlier study to learn from." in _plan_text(d, version)
        assert d.store.get_version(MODEL, version).details["warm_start_mode"] == "combined"
    finally:
        d.close()


def test_a_version_registered_by_hand_claims_no_cold_start(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A version no job tuned was reported as a cold start, as if a study had run."""
    d = _daemon(_config(tmp_path), trained)
    try:
        text = _plan_text(d, 1)
        assert "No tuning job: registered by hand." in text, text
        assert "Cold start" not in text and "no earlier study" not in text
    finally:
        d.close()


@pytest.mark.parametrize(
    ("details", "text"),
    [
        ({"job": 3}, "Cold start: the study learned from no earlier one."),
        ({"imported": {"model": "m", "version": 1}}, "No tuning job: registered by hand."),
        (
            {"imported": {"model": "m", "job": 4}, "warm_start_mode": "none"},
            "Warm start off (tuning.warm_start: none).",
        ),
        (
            {"imported": {"model": "m", "via": {"job": 4}}, "warm_start_mode": "box"},
            "Cold start: no earlier study to learn from.",
        ),
    ],
    ids=["tuned-before-modes-were-recorded", "imported-by-hand", "imported-off", "imported-twice"],
)
def test_the_plan_says_why_it_learned_from_no_earlier_study(
    trained: list[ExampleModel], tmp_path: Path, details: dict[str, Any], text: str
) -> None:
    """An imported version's job is in `details.imported` (or, imported again, in its
    `via`); a version tuned before jobs recorded their mode claims no reason."""
    d, _ = make_daemon(tmp_path, trained)
    try:
        meta = dataclasses.replace(trained[0].metadata, details=details)
        # as the job that tuned it, or the import that brought it, registers it
        actor = f"job:{details['job']}" if "job" in details else "t"
        row = d.registry.register(MODEL, trained[0].onnx, meta, actor=actor, stage="shadow")
        if "imported" in details:
            audit_import(d.store, MODEL, row.version)
        assert text in _plan_text(d, row.version)
    finally:
        d.close()


def test_a_plan_whose_studies_were_all_tuned_for_another_objective_says_so(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A job learns only from studies tuned for its objective; when it left out every
    earlier one, the section said "Cold start: no earlier study to learn from." above a
    note listing the studies it left out."""
    note = (
        "left out 2 earlier studies tuned for another objective than 'brier': "
        "m-job1 (log_loss), m-job2 (log_loss)"
    )
    details = {"job": 3, "warm_start_mode": "combined", "warm_start_plan": {"notes": [note]}}
    d, _ = make_daemon(tmp_path, trained)
    try:
        meta = dataclasses.replace(trained[0].metadata, details=details)
        row = d.registry.register(MODEL, trained[0].onnx, meta, actor="job:3", stage="shadow")
        text = _plan_text(d, row.version)
        assert "no earlier study" not in text, text
        assert "Cold start: every earlier study was tuned for another objective" in text, text
    finally:
        d.close()
