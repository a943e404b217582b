"""What a version's rationale report shows of what the store holds (DESIGN.md §6):
importances, the whole warm-start plan, every comparison outcome with its guardrails, and
the promotion that replaced a champion."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from retune import MIN_IMPORTANCE_TRIALS
from retune.warmstart import CostCeiling, NumericBound, WarmStartPlan
from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_comparison_decide import _mirrored
from tests.tunewatch.test_comparison_loop import (
    BATCH,
    UNPAIRED,
    Traffic,
    _feed_worse,
    _promote_a_worse_version,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tests.tunewatch.test_comparison_split import SPLIT, _split_traffic
from tests.tunewatch.test_tuning import _config, _daemon, _runner
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report, refresh_reports


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    """The example champion (v1) and challenger (v2), copied from the module's template."""
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def _section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end == -1 else markdown[start:end]


def _report(d: Daemon, version: int) -> str:
    return build_report(d.store, d.config, MODEL, version).markdown()


@pytest.mark.slow
def test_a_tuned_version_s_report_shows_its_study_s_fanova_importances(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The report read `details["importances"]`, which the tuner never wrote: the row was
    always empty."""
    d = _daemon(_config(tmp_path, max_trials=MIN_IMPORTANCE_TRIALS, pruner="none"), trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        stored = d.store.get_version(MODEL, 2).details["importances"]
        assert stored["method"] == "fanova" and stored["reason"] is None
        assert stored["n_complete"] >= MIN_IMPORTANCE_TRIALS and stored["seed"] == 0
        shares = stored["shares"]
        assert {"scaler", "estimator"} <= set(shares) <= {"scaler", "estimator", "C"}
        assert set(stored["not_rated"]) <= {"C", "gb_n_estimators", "gb_max_depth"}
        assert sum(shares.values()) == pytest.approx(1.0)
        section = _section(_report(d, 2), "Hyperparameter importances")
        assert f"computed from**: {stored['n_complete']} completed trials (seed 0)" in section
        top = max(shares, key=shares.__getitem__)
        assert f"| {top} | {shares[top]:.1%} |" in section
    finally:
        d.close()


def test_a_version_whose_study_was_too_small_for_importances_reports_why(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A version registered with no shares and a reason (a study of four trials, as the
    tuner stores it) and one registered by hand, without any."""
    reason = f"4 completed trials, fewer than the {MIN_IMPORTANCE_TRIALS} fANOVA needs"
    details = {"importances": {"method": "fanova", "shares": {}, "reason": reason}}
    meta = dataclasses.replace(trained[1].metadata, details=details)
    row = daemon.registry.register(MODEL, trained[1].onnx, meta, actor="t", stage="shadow")
    section = _section(_report(daemon, row.version), "Hyperparameter importances")
    assert f"Not computed: {reason}." in section and "| parameter |" not in section
    assert "None recorded" in _section(_report(daemon, 1), "Hyperparameter importances")


def test_the_warm_start_plan_section_shows_every_part_of_the_stored_plan(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A plan restricting `estimator` to gradient_boosting said nothing of it, a `log`
    column the plan never stores read "—" in every row, and configurations rejected for
    their serving cost were not counted."""
    plan = WarmStartPlan(
        strategies=("combined", "learned_box", "freeze_unimportant"),
        numeric_box=(NumericBound(name="gb_n_estimators", low=10, high=20),),
        choice_box={"estimator": ("gradient_boosting",), "scaler": ("none", "standard")},
        frozen={"imputer": "median"},
        cost=CostCeiling(max_latency_p99_s=0.05),
        importances={"estimator": 0.8, "imputer": 0.05},
        history_studies=("credit-job1",),
        n_history_trials=8,
    )
    details = {"warm_start_plan": plan.to_dict(), "n_cost_rejected": 3}
    meta = dataclasses.replace(trained[1].metadata, details=details)
    row = daemon.registry.register(MODEL, trained[1].onnx, meta, actor="t", stage="shadow")
    section = _section(_report(daemon, row.version), "Warm-start plan")
    assert "| narrowed parameter | low | high | choices |" in section
    assert "| gb_n_estimators | 10 | 20 | — |" in section
    assert "| estimator | — | — | gradient_boosting |" in section
    assert "| scaler | — | — | none, standard |" in section
    assert "configurations rejected for their serving cost (untrained)**: 3" in section
    assert "importances in the history (fANOVA)**: estimator 80.0%, imputer 5.0%" in section
    assert "log" not in section


def test_a_win_blocked_by_a_sample_ratio_mismatch_is_in_the_report_with_its_test(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """promotion_blocked, the only event holding the comparison when an SRM blocks a win,
    was not among the report's evidence."""
    _split_traffic(daemon, trained, 0.53)
    loop = runner(daemon, split=SPLIT.model_dump())
    assert next(r for r in loop.run(MODEL) if r.kind == "paired").action == "blocked_srm"
    section = _section(_report(daemon, 3), "Comparison evidence")
    [row] = [line for line in section.splitlines() if line.startswith("| promotion_blocked |")]
    assert "reason=sample ratio mismatch in the live split" in row
    assert re.search(r"estimate=-?[0-9.e-]+; ci=", row) and "p_value=" in row


def test_a_failed_promotion_is_in_the_report_with_its_error(daemon: Daemon) -> None:
    """promotion_failed was not among the report's evidence (payload as the comparison
    loop writes it: the test's evidence, the error and its code)."""
    daemon.store.add_event(
        model=MODEL,
        type="promotion_failed",
        payload={
            "test_id": 1,
            "kind": "paired",
            "champion_version": 1,
            "challenger_version": 2,
            "n": 900,
            "estimate": -0.03,
            "guardrails": {"passed": True, "violations": []},
            "error": "v2 answers float64, v1 float32",
            "code": "signature_mismatch",
        },
    )
    section = _section(_report(daemon, 2), "Comparison evidence")
    [row] = [line for line in section.splitlines() if line.startswith("| promotion_failed |")]
    assert "error=v2 answers float64, v1 float32; code=signature_mismatch" in row


def _evidence_row(d: Daemon, version: int, event: str) -> str:
    section = _section(_report(d, version), "Comparison evidence")
    [row] = [line for line in section.splitlines() if line.startswith(f"| {event} |")]
    return row


def _promote_v2_by_a_paired_test(d: Daemon, trained: list[ExampleModel]) -> None:
    t = traffic(trained, 2000, seed=7)
    loop = runner(d)
    for start in range(0, 2000, 100):
        _mirrored(d, t, start, start + 100)
        [paired] = [r for r in loop.run(MODEL) if r.kind == "paired"]
        if paired.action != "none":
            break
    assert paired.action == "promoted"


def test_a_beaten_champion_s_report_shows_the_comparison_that_decided_against_it(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The evidence matched a version as the challenger only: the champion a test decided
    against said "No comparison has decided on this version"."""
    _promote_v2_by_a_paired_test(daemon, trained)
    row = _evidence_row(daemon, 1, "challenger_better (as champion, against v2)")
    assert "champion_version=1" in row and re.search(r"estimate=-?[0-9.e-]+; ci=", row)
    assert "as champion" not in _evidence_row(daemon, 2, "challenger_better")


def _watch_until(d: Daemon, t: Traffic, action: str) -> None:
    """Feed the promoted v2 answers worse than v1's until its rollback watch acts."""
    loop = runner(d, rollback=UNPAIRED)
    actions: list[str] = []
    for start in range(400, 1400, BATCH):
        _feed_worse(d, t, start, start + BATCH)
        actions += [r.action for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        if action in actions:
            break
    assert actions[-1] == action, actions


def test_a_failed_rollback_is_in_the_reports_of_both_versions_with_its_error(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """rollback_failed was not among the report's evidence, and the rollback's previous
    champion (``previous`` in the payload) was never matched."""
    t = _promote_a_worse_version(daemon, trained)
    daemon.store.set_stage(MODEL, 1, "rolled_back", actor="test", reason="bad too")
    _watch_until(daemon, t, "rollback_failed")
    row = _evidence_row(daemon, 2, "rollback_failed")
    assert "previous=1" in row and "code=no_previous_champion" in row
    row = _evidence_row(daemon, 1, "rollback_failed (as the previous champion, against v2)")
    assert "code=no_previous_champion" in row


def test_a_restored_champion_s_report_shows_the_rollback_that_restored_it(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    _watch_until(daemon, _promote_a_worse_version(daemon, trained), "rolled_back")
    row = _evidence_row(daemon, 1, "rollback_triggered (as the previous champion, against v2)")
    assert "previous=1" in row and "estimate=" in row
    assert "previous=1" in _evidence_row(daemon, 2, "rollback_triggered")


@pytest.mark.slow
def test_a_tuned_version_s_report_shows_the_space_it_searched_after_the_file_changed(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The report named the search-space file only: edited after the job, it no longer
    said what the study had searched."""
    d = _daemon(_config(tmp_path), trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        job = _runner(d).run(outcome.job_id)
        assert job.status == "succeeded", job.error
        path = tmp_path / "space.yaml"
        edited = yaml.safe_load(path.read_text())
        edited["params"]["scaler"]["choices"] = ["robust"]
        edited["params"]["estimator"]["when"]["logistic"]["C"].update(low=5.0, log=False)
        path.write_text(yaml.safe_dump(edited))
        md = _report(d, 2)
        rows = _section(md, "Search space and hyperparameters")
        assert f"- **search space**: test_small (read from {path}" in rows
        section = _section(md, "Searched space")
        assert "| parameter | type | range or choices | log | safe | searched when |" in section
        assert "| scaler | categorical | none, standard | — | — | — |" in section
        c_row = r"| C | float | \[0.01, 10\] | yes | \[0.01, 10\] | estimator = logistic |"
        assert c_row in section
        assert (
            r"| gb_n_estimators | int | \[10, 30\] step 10 | no | — | "
            "estimator = gradient_boosting |" in section
        )
        assert "robust" not in section
        assert "<td>[0.01, 10]</td>" in build_report(d.store, d.config, MODEL, 2).html()
    finally:
        d.close()


def test_a_version_tuned_before_spaces_were_stored_keeps_the_file_row(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    details = {"search_space": "configs/search_spaces/binary_tabular.yaml"}
    meta = dataclasses.replace(trained[1].metadata, details=details)
    # registered as the job that tuned it (by hand, the row says the registrant gave it)
    row = daemon.registry.register(MODEL, trained[1].onnx, meta, actor="job:1", stage="shadow")
    md = _report(daemon, row.version)
    assert "- **search space**: configs/search_spaces/binary_tabular.yaml\n" in md
    assert "## Searched space" not in md


def test_a_promoted_version_s_report_shows_its_guardrail_outcome_and_notes(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The guardrails stored with challenger_better (here: passed, with the latency ratio
    a replay measured against the mirrored champion's artefact) were dropped from the
    report's evidence."""
    _promote_v2_by_a_paired_test(daemon, trained)
    row = _evidence_row(daemon, 2, "challenger_better")
    assert "guardrails=passed (notes: latency ratio by replay: v2 p99 " in row


def test_the_report_of_a_replaced_champion_names_its_successor_who_and_why(
    daemon: Daemon,
) -> None:
    """The promote audit entry targets the new champion: the replaced one's report said
    `retired` with no successor, actor or reason."""
    daemon.store.promote(MODEL, 2, actor="alice", reason="v2 won in shadow")
    refresh_reports(daemon.store, daemon.config, MODEL, (2, 1))  # as POST …/promote does
    md = (Path(daemon.config.data_dir) / "reports" / f"{MODEL}-v1.md").read_text()
    [entry] = daemon.store.audit_log(model=MODEL, action="promote")
    when = entry.at.isoformat()
    version = _section(md, "Version")
    assert "- **stage**: retired" in version
    assert f"- **replaced by**: v2 (by alice, at {when}: v2 won in shadow)" in version
    decisions = _section(md, "Decisions and approvals")
    assert f"| {when} | replaced by v2 (promote) | alice | v2 won in shadow |" in decisions
    # restored by a rollback, it is the champion again: no longer "replaced by"
    daemon.store.rollback(MODEL, actor="bob", reason="pager")
    assert "replaced by**" not in _section(_report(daemon, 1), "Version")


def test_a_version_s_approval_is_in_its_report_behind_a_thousand_newer_ones(
    daemon: Daemon,
) -> None:
    """The report read the model's newest 1,000 approvals and kept the version's: behind
    that many newer requests (other versions, a long-lived model) its approver vanished
    from the report a regulator reads."""
    from tunewatch.store._schema import approvals

    asked = daemon.store.request_approval(
        MODEL, 2, requested_by="alice", reason="regulated", rules=["regulated"]
    )
    with daemon.store.engine.begin() as conn:  # other versions' requests, newer
        conn.execute(
            approvals.insert(),
            [
                {
                    "model": MODEL,
                    "version": 1000 + i,
                    "requested_by": "carol",
                    "reason": "r",
                    "rules": ["regulated"],
                    "status": "rejected",
                    "created_at": asked.created_at,
                }
                for i in range(1000)
            ],
        )
    decisions = _section(_report(daemon, 2), "Decisions and approvals")
    assert f"approval {asked.id}" in decisions and "requested by alice" in decisions


def test_an_approval_closed_without_a_decision_says_why_in_the_report(daemon: Daemon) -> None:
    """A request closed because its version was retired read "rejected by bob", as if an
    approver had turned it down: the report now gives the reason it was closed."""
    asked = daemon.store.request_approval(
        MODEL, 2, requested_by="alice", reason="regulated", rules=["regulated"]
    )
    daemon.store.set_stage(MODEL, 2, "retired", actor="bob", reason="pulled")
    decisions = _section(_report(daemon, 2), "Decisions and approvals")
    assert (
        f"- **approval {asked.id}**: rejected by bob (requested by alice; rules: regulated): "
        "not promoted: v2 was retired since the request (pulled)" in decisions
    )


def _pass_the_paired_watch(d: Daemon, trained: list[ExampleModel]) -> None:
    """v2 promoted over v1, which its paired rollback watch keeps in shadow; v2 answers
    the data-generating probability (better than v1) until the watch passes."""
    t = _promote_a_worse_version(d, trained, n=800)
    loop = runner(d, min_n=100, rollback={"watch_requests": 200})
    actions: list[str] = []
    for start in range(400, 800, BATCH):
        if d.store.get_version(MODEL, 1).stage == "shadow":  # kept by the watch's first run
            answers = {2: oracle(t.x[start : start + BATCH]), 1: t.logistic[start : start + BATCH]}
            rows = slice(start, start + BATCH)
            write(
                d.store,
                ids=range(start, start + BATCH),
                x=t.x[rows],
                y=t.y[rows],
                answers=answers,
                roles={2: "champion", 1: "challenger"},
            )
        actions += [r.action for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        if "watch_passed" in actions:
            break
    assert actions[-1] == "watch_passed", actions


def test_a_champion_s_report_shows_the_rollback_watch_it_passed(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A watch that keeps the champion writes no event, and the evidence was read from
    events only: the watch that confirmed the champion was missing from its report (and
    from the report of the version it was compared with)."""
    _pass_the_paired_watch(daemon, trained)
    [watch] = runner(daemon).comparisons.list_tests(MODEL, kind="rollback_watch")
    assert watch.outcome is not None and watch.outcome["action"] == "watch_passed"
    look = runner(daemon).comparisons.latest_look(watch.id)
    assert look is not None and look.ci_low is not None and look.ci_high is not None
    row = _evidence_row(daemon, 2, "rollback_watch passed")
    assert f"previous=1; estimate={look.estimate:.6g}; " in row
    assert f"ci={look.ci_low:.6g}, {look.ci_high:.6g}; n={look.n}; " in row
    assert f"method={look.method}" in row and f"test={watch.id}; " in row
    other = "rollback_watch passed (as the previous champion, against v2)"
    assert f"n={look.n}" in _evidence_row(daemon, 1, other)


def test_a_watch_closed_without_a_verdict_is_in_the_report_with_its_reason(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """A watch that closes undecided writes no event either: the report said nothing of
    why the champion was never confirmed."""
    _promote_a_worse_version(daemon, trained)
    daemon.store.set_stage(MODEL, 1, "rolled_back", actor="test", reason="bad too")
    assert [r.action for r in runner(daemon).run(MODEL) if r.kind == "rollback_watch"] == ["closed"]
    row = _evidence_row(daemon, 2, "rollback_watch closed")
    assert "previous=1" in row
    assert "reason=v1 was rolled back: there is nothing to compare or restore" in row
