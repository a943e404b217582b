"""What the rationale report of a version imported from another store says of where it
came from: the source's study and job, the bundle, who imported it, and the import in its
decisions."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.report_imports import import_into, section
from tunewatch._bundle import export_bundle
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report

STUDY = "credit-job4-1a2b3c4d"


@pytest.fixture
def source(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """Version 1, tuned by job 4 of this store (study ``STUDY``), the champion."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "source")}, env={}), env={})
    details = {"job": 4, "trigger": {"event": "drift_detected", "job": 4}}
    daemon.registry.register(
        MODEL,
        trained[0].onnx,
        dataclasses.replace(trained[0].metadata, study=STUDY, details=details),
        actor="job:4",
        stage="champion",
        reference=trained[0].reference,
    )
    yield daemon
    daemon.close()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    yield daemon
    daemon.close()


def test_an_imported_champion_s_report_names_its_source_study_and_the_import(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """The report read neither the source's study nor its job ("study: —"), and the
    `import_bundle` entry targets the model, not `model/v1`: the decisions showed a bare
    `register_version`, never that the version became the champion by an import, or
    whose."""
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, source.config, MODEL, bundle)
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    import_into(target, bundle, actor="alice")
    import_into(target, bundle, actor="bob")  # again: nothing new, v1 already there
    [again, first] = target.store.audit_log(model=MODEL, action="import_bundle")
    md = build_report(target.store, target.config, MODEL, 1).markdown()
    version = section(md, "Version")
    assert f"- **study**: — (in the source store: {STUDY})" in version
    trigger = section(md, "Trigger")
    assert f"- **source study**: {STUDY}\n" in trigger
    assert "- **source job**: 4\n" in trigger
    assert f"- **bundle sha256**: {digest}\n" in trigger
    assert f"- **imported by**: alice (at {first.at.isoformat()})\n" in trigger
    decisions = section(md, "Decisions and approvals")
    assert (
        f"| {first.at.isoformat()} | import_bundle: registered from {MODEL} v1 as champion "
        f"(bundle sha256 {digest}) | alice |" in decisions
    )
    assert (
        f"| {again.at.isoformat()} | import_bundle: {MODEL} v1 already present "
        f"(bundle sha256 {digest}) | bob |" in decisions
    )


def test_an_import_that_failed_after_registering_the_version_is_in_its_decisions(
    source: Daemon, target: Daemon, trained: list[ExampleModel]
) -> None:
    """An import interrupted after a registration records the versions it registered in
    `import_bundle_failed` (targeting the model): that is how the version got there."""
    row = target.registry.register(
        MODEL, trained[0].onnx, trained[0].metadata, actor="carol", stage="retired"
    )
    target.store.append_audit(
        actor="carol",
        action="import_bundle_failed",
        target=MODEL,
        details={
            "bundle_sha256": "ab" * 32,
            "from_model": "credit-eu",
            "versions": {"7": row.version},
            "registered": {"7": row.version},
            "already_present": {},
            "error": "KeyboardInterrupt",
            "code": "KeyboardInterrupt",
        },
    )
    decisions = section(
        build_report(target.store, target.config, MODEL, row.version).markdown(),
        "Decisions and approvals",
    )
    assert (
        "import_bundle_failed: registered from credit-eu v7 as retired before the import "
        f"failed: KeyboardInterrupt (bundle sha256 {'ab' * 32}) | carol |" in decisions
    )
