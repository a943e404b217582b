"""Bundles carry each version's tags: the export writes them in the manifest, the import
sets them on the versions it registers (audited by the importer), a version already
present gains those it lacks and keeps the target's, and a bundle with a tag outside the
convention is refused before anything is registered. A bundle written before tags
imports as before."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_bundle import _export, _import, _rewrite, source, target
from tunewatch._bundle import BundleError
from tunewatch._daemon import Daemon
from tunewatch._tag_rules import TagRuleError

__all__ = ["source", "target"]  # the fixtures, shared with test_bundle


def _manifest(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        manifest: dict[str, Any] = json.loads(archive.read("manifest.json"))
    return manifest


def _tags(d: Daemon, version: int) -> dict[str, str]:
    return {t.key: t.value for t in d.store.version_tags(MODEL, version)}


def test_tags_travel_with_their_versions(source: Daemon, target: Daemon, tmp_path: Path) -> None:
    source.store.set_version_tag(MODEL, 2, "ticket", "RISK-123", actor="alice")
    source.store.set_version_tag(MODEL, 2, "validation", "passed", actor="bob")
    bundle = _export(source, tmp_path / "a.zip", versions=[1, 2])
    entries = {e["version"]: e["tags"] for e in _manifest(bundle)["versions"]}
    assert entries == {1: {}, 2: {"ticket": "RISK-123", "validation": "passed"}}
    _, imported, _ = _import(target, bundle)
    by_source = {i.source_version: i.version for i in imported}
    assert _tags(target, by_source[2]) == {"ticket": "RISK-123", "validation": "passed"}
    assert _tags(target, by_source[1]) == {}
    assert {t.set_by for t in target.store.version_tags(MODEL, by_source[2])} == {"ops"}
    assert len(target.store.audit_log(limit=10, action="set_tag")) == 2


def test_a_version_already_present_keeps_the_target_s_tags(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path / "a.zip", versions=[1, 2])
    _, imported, _ = _import(target, bundle)
    there = {i.source_version: i.version for i in imported}[2]
    target.store.set_version_tag(MODEL, there, "ticket", "TARGET-1", actor="ops")
    source.store.set_version_tag(MODEL, 2, "ticket", "RISK-9", actor="alice")
    _import(target, _export(source, tmp_path / "b.zip", versions=[1, 2]))
    assert _tags(target, there) == {"ticket": "TARGET-1"}


def test_importing_again_gives_a_present_version_the_bundled_tags_it_lacks(
    source: Daemon, target: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import interrupted after registering a version and before its tags (each set in
    a transaction of its own) left it untagged, and importing again, the remedy, found it
    present and set nothing: the tags were lost without a word. A tag the target holds
    keeps its value."""
    source.store.set_version_tag(MODEL, 2, "ticket", "RISK-123", actor="alice")
    source.store.set_version_tag(MODEL, 2, "validation", "passed", actor="bob")
    bundle = _export(source, tmp_path / "a.zip", versions=[1, 2])
    real = target.store.set_version_tag

    def interrupted(*args: Any, **kwargs: Any) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(target.store, "set_version_tag", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _import(target, bundle)
    monkeypatch.setattr(target.store, "set_version_tag", real)
    sha = source.store.get_version(MODEL, 2).artefact_sha256
    [there] = [v.version for v in target.store.list_versions(MODEL) if v.artefact_sha256 == sha]
    target.store.set_version_tag(MODEL, there, "ticket", "TARGET-1", actor="ops")
    _import(target, bundle)
    assert _tags(target, there) == {"ticket": "TARGET-1", "validation": "passed"}


def test_a_bundle_written_before_tags_imports(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    def drop(m: dict[str, Any]) -> None:
        for e in m["versions"]:
            e.pop("tags")

    bundle = _rewrite(_export(source, tmp_path / "a.zip"), tmp_path / "b.zip", drop)
    _, imported, _ = _import(target, bundle)
    assert [_tags(target, i.version) for i in imported] == [{}]


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"Ticket": "x"}, r"version 1: tag key must hold only the characters"),
        ({"tunewatch.owner": "x"}, "reserved"),
        ({"ticket": "a\x00b"}, "printable"),
        ({"ticket": 5}, "`tags` must be an object of strings"),
        (["ticket"], "`tags` must be an object of strings"),
        ({f"k{i}": "v" for i in range(51)}, "at most 50 tags"),
    ],
    ids=["bad-key", "reserved", "nul", "number", "list", "too-many"],
)
def test_a_bundled_tag_outside_the_convention_refuses_the_bundle(
    source: Daemon, target: Daemon, tmp_path: Path, tags: object, message: str
) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["versions"][0]["tags"] = tags

    bundle = _rewrite(_export(source, tmp_path / "a.zip"), tmp_path / "b.zip", edit)
    with pytest.raises(BundleError, match=message):
        _import(target, bundle)
    assert target.store.list_models() == []


def test_importing_again_leaves_a_tag_deleted_on_the_target_deleted(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """A tag someone deleted on the target (a risk officer withdrawing
    ``validation=passed``) is not put back by importing the bundle again."""
    source.store.set_version_tag(MODEL, 1, "validation", "passed", actor="alice")
    _import(target, _export(source, tmp_path / "a.zip", versions=[1]))
    target.store.delete_version_tag(MODEL, 1, "validation", actor="risk-officer")
    _import(target, _export(source, tmp_path / "b.zip", versions=[1, 2]))
    assert "validation" not in _tags(target, 1)


def test_a_re_import_refused_while_filling_in_tags_records_what_it_registered(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """A present version's bundled tag that would be its 51st refuses the import after it
    registered the bundle's new version: the failure is recorded with that version, as
    any other failure part-way is (it was raised with no import record at all)."""
    _import(target, _export(source, tmp_path / "a.zip", versions=[1]))
    for i in range(50):
        target.store.set_version_tag(MODEL, 1, f"k{i}", "x", actor="ops")
    source.store.set_version_tag(MODEL, 1, "ticket", "RISK-1", actor="alice")
    with pytest.raises(TagRuleError):
        _import(target, _export(source, tmp_path / "b.zip", versions=[1, 2]))
    [failure] = target.store.audit_log(limit=5, action="import_bundle_failed")
    assert failure.details["registered"] != {}
