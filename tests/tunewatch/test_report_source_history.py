"""An imported version's rationale report keeps what the source store's report said of
the tests that decided on it and of its decisions and approvers: a bundle carries them
(each version's ``history``) and the target's report shows them as the source store's.
Bundles written before they did still import."""

from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.report_imports import import_into, section
from tunewatch._bundle import export_bundle
from tunewatch._bundle_archive import BundleError
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._report import build_report
from tunewatch._report_document import Section
from tunewatch._report_source_history import history_of, history_sections


@pytest.fixture
def source(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """v1 the champion v2 replaced after test 7 found it better and carol approved the
    promotion alice and bob asked for."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "source")}, env={}), env={})
    for model, stage in ((trained[0], "champion"), (trained[1], "shadow")):
        daemon.registry.register(
            MODEL,
            model.onnx,
            dataclasses.replace(model.metadata),
            actor="test",
            stage=stage,
            reference=model.reference,
        )
    store = daemon.store
    store.add_event(
        model=MODEL,
        type="challenger_better",
        payload={
            "test_id": 7,
            "kind": "paired",
            "champion_version": 1,
            "challenger_version": 2,
            "estimate": -0.5,
            "ci": [-0.6, -0.4],
            "n": 400,
        },
    )
    asked = store.request_approval(MODEL, 2, requested_by="alice", reason="won", rules=["r"])
    store.request_approval(MODEL, 2, requested_by="bob", reason="won too", rules=["r"])
    store.decide_approval(asked.id, approver="carol", approve=True, reason="reviewed")
    yield daemon
    daemon.close()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    yield daemon
    daemon.close()


def _rewrite(bundle: Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                edit(manifest)
                data = json.dumps(manifest).encode()
            dst.writestr(info.filename, data)
    return out


def test_an_imported_version_s_report_keeps_the_source_s_evidence_and_decisions(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """The target's report of the imported champion had none of the source's test
    results, nor who decided its promotion: a regulator reading it saw a version that
    became champion by an import alone."""
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, source.config, MODEL, bundle)
    version = import_into(target, bundle)
    md = build_report(target.store, target.config, MODEL, version).markdown()
    assert "No comparison has decided on this version." in section(md, "Comparison evidence\n")
    evidence = section(md, f"Comparison evidence in the source store ({MODEL} v2)")
    assert "| challenger_better | " in evidence
    assert "| test=7 (paired); champion_version=1; estimate=-0.5; ci=-0.6, -0.4; n=400 |" in (
        evidence
    )
    decisions = section(md, f"Decisions and approvals in the source store ({MODEL} v2)")
    [promote] = source.store.audit_log(limit=5, action="promote")
    assert (
        f"| {promote.at.isoformat()} | promote | carol | approved request 1 by alice, bob: "
        "reviewed |" in decisions
    )
    assert "| register_version | test |" in decisions
    assert (
        "- **approval 1**: approved by carol (requested by alice, bob; rules: r): reviewed"
        in decisions
    )
    # the target's own decisions: the import
    assert "import_bundle: registered from" in section(md, "Decisions and approvals\n")


def test_a_bundle_written_before_bundles_carried_the_history_still_imports(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, source.config, MODEL, bundle)
    old = _rewrite(bundle, tmp_path / "old.zip", lambda m: m["versions"][0].pop("history"))
    version = import_into(target, old)
    md = build_report(target.store, target.config, MODEL, version).markdown()
    assert "in the source store (" not in md
    assert f"- **imported from**: {MODEL} v2" in md


@pytest.mark.parametrize(
    ("history", "message"),
    [
        (
            {"format_version": 2, "evidence": []},
            "`history` is format 2, newer than this tunewatch reads (1)",
        ),
        ({"format_version": 1, "evidence": [["a", 1, "c"]]}, "`history.evidence`"),
        ({"format_version": 1, "decisions": "x"}, "`history.decisions`"),
        ([1], "`history` must be an object"),
    ],
    ids=["newer", "cell-not-text", "rows-not-a-list", "not-an-object"],
)
def test_a_bundle_s_history_of_a_newer_format_or_malformed_is_refused(
    source: Daemon, target: Daemon, tmp_path: Path, history: Any, message: str
) -> None:
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, source.config, MODEL, bundle)

    def edit(m: dict[str, Any]) -> None:
        m["versions"][0]["history"] = history

    with pytest.raises(BundleError, match=re.escape(message)):
        import_into(target, _rewrite(bundle, tmp_path / "edited.zip", edit))
    assert target.store.list_models() == []


def test_a_history_past_its_share_of_the_manifest_keeps_its_newest_rows_and_says_so() -> None:
    """A bundle's manifest is read up to a limit: an export whose histories outgrew it
    wrote a bundle no import could read."""
    decisions = Section(
        "Decisions and approvals",
        rows=(("approval 1", "approved by carol"),),
        table=(
            ("when", "action", "by", "reason"),
            *((f"t{i}", "promote", "a", "x" * 90) for i in range(100)),
        ),
    )
    history = history_of(Section("Comparison evidence"), decisions, max_bytes=1000)
    assert len(json.dumps(history)) < 1200
    kept = history["decisions"]
    assert kept and kept[-1][0] == "t99" and len(kept) < 100
    assert history["left_out"] == {"decisions": 100 - len(kept)}
    assert history["approvals"] == [["approval 1", "approved by carol"]]
    [_, shown] = history_sections({"model": MODEL, "version": 3, "history": history})
    assert f"Its {100 - len(kept)} oldest rows were left out." in shown.text
