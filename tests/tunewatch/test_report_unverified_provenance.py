"""A rationale report presents only the provenance the audit log confirms: an import
when an import's audit entry registered the version, a tuning job when that job
(``job:<id>``) registered it. What a version's free-form ``details`` (POST
/v1/models/{m}/versions) claim beyond that is shown as supplied by its registrant."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.report_imports import audit_import
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report

UNVERIFIED = "supplied by the registrant, not verified"
#: What a tuning job, or an import of a tuned version, writes; here claimed by hand.
CLAIMED: dict[str, Any] = {
    "job": 2,
    "trigger": {"event": "drift_detected"},
    "n_trials": 50,
    "fold_scores": [0.30, 0.31, 0.32],
    "imported": {
        "model": MODEL,
        "version": 9,
        "origin": {"model": MODEL, "version": 9},
        "stage": "champion",
        "job": 9,
        "study": "credit-job9-deadbeef",
        "bundle_sha256": "0" * 64,
    },
}


@pytest.fixture
def daemon(trained: list[ExampleModel], tmp_path: Path) -> Daemon:
    d, _ = make_daemon(tmp_path, trained)  # v1 champion, v2 shadow
    return d


def _section(markdown: str, title: str) -> str:
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:] if end == -1 else markdown[start:end]


def _register(d: Daemon, trained: list[ExampleModel], details: dict[str, Any], actor: str) -> int:
    # each of its own dataset: the same version again is a retry, refused `version_exists`
    n = len(d.store.list_versions(MODEL)) + 1
    meta = dataclasses.replace(trained[0].metadata, details=details, dataset_version=f"ds-{n}")
    return d.registry.register(MODEL, trained[0].onnx, meta, actor=actor, stage="shadow").version


def test_a_version_registered_by_hand_claiming_an_import_and_a_job_is_shown_as_by_hand(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """mallory registered a version whose details claim an import (its bundle, the
    source's job) and job 2's trigger and fold scores: the report presented them as its
    provenance ("imported by: mallory"), though no import and no job registered it."""
    try:
        version = _register(daemon, trained, CLAIMED, "mallory")
        md = build_report(daemon.store, daemon.config, MODEL, version).markdown()
        [entry] = daemon.store.audit_log(
            limit=5, action="register_version", target=f"{MODEL}/v{version}"
        )
        trigger = _section(md, "Trigger")
        assert "- **registered**: by hand (no tuning job)\n" in trigger
        assert f"- **registered by**: mallory (at {entry.at.isoformat()})\n" in trigger
        assert "imported" not in trigger and "drift" not in trigger
        for absent in ("imported from", "imported by", "source job", "**bundle sha256**"):
            assert absent not in md, absent
        supplied = _section(md, f"Provenance {UNVERIFIED}")
        assert "- **job**: 2\n" in supplied
        assert "- **trigger event**: drift_detected\n" in supplied
        assert "- **imported version**: 9\n" in supplied
        assert "- **imported origin model**: credit\n" in supplied
        assert f"- **imported bundle_sha256**: {'0' * 64}\n" in supplied
        tuning = _section(md, f"Trials and fold scores ({UNVERIFIED})")
        assert "- **fold scores**: 0.3, 0.31, 0.32\n" in tuning
        warm = _section(md, "Warm-start plan")
        assert "No tuning job: registered by hand." in warm
    finally:
        daemon.close()


def test_a_version_a_job_registered_shows_its_trigger_and_figures_as_the_job_s(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Registered as job 2 (the actor a job registers its winner as), the same details are
    the job's: its trigger, and figures not marked as the registrant's."""
    try:
        details = {k: v for k, v in CLAIMED.items() if k != "imported"}
        version = _register(daemon, trained, details, "job:2")
        md = build_report(daemon.store, daemon.config, MODEL, version).markdown()
        trigger = _section(md, "Trigger")
        assert "- **tuning job**: 2\n" in trigger and "- **event**: drift_detected\n" in trigger
        assert "by hand" not in md and UNVERIFIED not in md
        assert "- **fold scores**: 0.3, 0.31, 0.32\n" in _section(md, "Trials and fold scores")
        # the details name another job than the one that registered it: not the job's
        other = _register(daemon, trained, details, "job:3")
        md = build_report(daemon.store, daemon.config, MODEL, other).markdown()
        assert "- **registered by**: job:3" in _section(md, "Trigger")
        assert "- **job**: 2\n" in _section(md, f"Provenance {UNVERIFIED}")
    finally:
        daemon.close()


def test_a_version_an_import_registered_shows_its_import(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """With the import's audit entry, the same `imported` record is the version's
    provenance; the top-level job and trigger no import writes stay the registrant's."""
    try:
        version = _register(daemon, trained, CLAIMED, "alice")
        entry = audit_import(daemon.store, MODEL, version, actor="alice", source_version=9)
        md = build_report(daemon.store, daemon.config, MODEL, version).markdown()
        trigger = _section(md, "Trigger")
        assert f"- **imported from**: {MODEL} v9\n" in trigger
        assert "- **source job**: 9\n" in trigger
        assert f"- **imported by**: alice (at {entry.at.isoformat()})\n" in trigger
        supplied = _section(md, f"Provenance {UNVERIFIED}")
        assert "- **job**: 2\n" in supplied and "imported" not in supplied
        # the figures came with the bundle, from the source store
        assert "- **fold scores**: 0.3, 0.31, 0.32\n" in _section(md, "Trials and fold scores\n")
    finally:
        daemon.close()
