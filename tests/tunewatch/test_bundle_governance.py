"""What a bundle's own governance asks of an import (its config's safe ranges and regulated
flag, its search space's safe bounds), what an interrupted import's audit entry lists, and
manifest integers that are flags."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL
from tunewatch._bundle import BundleError, ImportedVersion, export_bundle, import_bundle
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._registry import Registry

#: A search space whose safe bounds leave out the example champion's ``C`` = 1.0.
_NARROW_SPACE = """\
format_version: 1
name: narrow
params:
  estimator:
    type: categorical
    choices: [logistic, gradient_boosting]
    when:
      logistic:
        C: {type: float, low: 1.0e-3, high: 10.0, log: true, safe: [1.0e-3, 0.5]}
      gradient_boosting:
        gb_n_estimators: {type: int, low: 20, high: 80, step: 20}
"""


@pytest.fixture
def source(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """No rules of its own: version 1 (logistic, ``C`` = 1.0) champion, version 2 in
    shadow (its parent: 1). Each test exports it under the config it gives."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "source")}, env={}), env={})
    for model, stage, parent in ((trained[0], "champion", None), (trained[1], "shadow", 1)):
        daemon.registry.register(
            MODEL,
            model.onnx,
            dataclasses.replace(model.metadata, parent_version=parent),
            actor="test",
            stage=stage,
            reference=model.reference,
        )
    yield daemon
    daemon.close()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Daemon]:
    """A store whose config does not list the model: the defaults apply."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    yield daemon
    daemon.close()


def _export(source: Daemon, tmp_path: Path, model: dict[str, Any], **kw: Any) -> Path:
    """The champion exported under a source config listing ``model``."""
    config = build_config(
        {"data_dir": str(tmp_path / "source"), "models": [{"name": MODEL, **model}]}, env={}
    )
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, config, MODEL, bundle, **kw)
    return bundle


def _import(d: Daemon, path: Path, registry: Registry | None = None) -> list[ImportedVersion]:
    _, imported, _ = import_bundle(
        d.store,
        d.registry if registry is None else registry,
        d.config,
        path,
        actor="ops",
        max_artefact_bytes=10**8,
        # the export's digest, which an import into a model the target regulates needs
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )
    return imported


def _rewrite(
    bundle: Path, edit: Callable[[dict[str, Any]], None], extra: dict[str, bytes] | None = None
) -> Path:
    """``bundle`` with its manifest edited, and ``extra`` members added."""
    out = bundle.with_name("edited.zip")
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                edit(manifest)
                data = json.dumps(manifest).encode()
            dst.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return out


def _held(target: Daemon) -> dict[str, list[str]]:
    entry = target.store.audit_log(limit=1)[0]
    assert entry.action == "import_bundle"
    held: dict[str, list[str]] = entry.details["held_in_shadow"]
    return held


def test_import_applies_bundled_safe_ranges_to_champion(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """The target's config did not list the model, so its defaults let the bundle's
    champion in as champion, though the bundle's own config (merged into the target's
    after the import, as the CLI advises) makes its promotion wait for an approver."""
    bundle = _export(source, tmp_path, {"task": "binary", "safe_ranges": {"C": {"high": 0.5}}})
    [imported] = _import(target, bundle)
    assert (imported.source_version, imported.version, imported.stage) == (1, 1, "shadow")
    rule = "outside safe range: C=1.0 not in [None, 0.5] (the bundle's config)"
    assert imported.held == (rule,)
    assert target.store.champion(MODEL) is None
    assert _held(target) == {"1": [rule]}
    assert target.store.verify_audit() is None


def test_import_applies_the_bundled_search_space_safe_bounds_to_champion(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    space = tmp_path / "narrow.yaml"
    space.write_text(_NARROW_SPACE)
    bundle = _export(source, tmp_path, {"task": "binary", "tuning": {"search_space": str(space)}})
    [imported] = _import(target, bundle)
    assert imported.stage == "shadow"
    assert imported.held == (
        "outside safe range: `C` = 1.0 is outside its safe range [0.001, 0.5] "
        "(the bundle's search space)",
    )
    assert target.store.champion(MODEL) is None


def test_import_applies_the_bundled_config_regulated_flag_to_champion(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """A manifest whose model is unregulated but whose config regulates it."""
    bundle = _export(source, tmp_path, {"task": "binary", "regulated": True})
    bundle = _rewrite(bundle, lambda m: m["model"].update(regulated=False))
    [imported] = _import(target, bundle)
    assert (imported.stage, imported.held) == ("shadow", ("regulated model (the bundle's config)",))
    assert target.store.champion(MODEL) is None


def test_import_holds_a_champion_whose_bundled_search_space_does_not_load(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """Its safe bounds cannot be read: the promotion would wait, as the target's own
    unreadable space makes it."""
    bad = b"format_version: 1\nparams: {C: {type: float, low: 2.0, high: 1.0}}\n"
    sha = hashlib.sha256(bad).hexdigest()
    bundle = _rewrite(
        _export(source, tmp_path, {"task": "binary"}),
        lambda m: m.update(search_space={"sha256": sha}),
        extra={f"spaces/{sha}.yaml": bad},
    )
    [imported] = _import(target, bundle)
    assert imported.stage == "shadow"
    [rule] = imported.held
    assert rule.startswith("search space unreadable, safe ranges not checked: ")
    assert rule.endswith("(the bundle's search space)")


def test_a_champion_within_the_bundle_rules_and_the_target_rules_becomes_champion(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path, {"task": "binary", "safe_ranges": {"C": {"high": 5.0}}})
    [imported] = _import(target, bundle)
    assert (imported.stage, imported.held) == ("champion", ())
    assert _held(target) == {}


def test_the_target_rule_that_holds_the_bundle_champion_is_named(
    source: Daemon, tmp_path: Path
) -> None:
    """The target's own rules held the champion in shadow before; now they are named too,
    and a rule both configs hold is named once, as the target's."""
    bundle = _export(
        source,
        tmp_path,
        {"task": "binary", "safe_ranges": {"C": {"high": 0.5}}, "regulated": True},
    )
    raw = {
        "data_dir": str(tmp_path / "target"),
        "models": [{"name": MODEL, "task": "binary", "regulated": True}],
    }
    target = Daemon(build_config(raw, env={}), env={})
    try:
        [imported] = _import(target, bundle)
    finally:
        target.close()
    assert imported.held == (
        "regulated model",
        "outside safe range: C=1.0 not in [None, 0.5] (the bundle's config)",
    )


class _InterruptedAfterCommit(Registry):
    """A registry whose ``n``-th registration commits, then is interrupted (Ctrl-C)
    before it returns to the import."""

    def __init__(self, daemon: Daemon, n: int) -> None:
        super().__init__(daemon.store, daemon.artefacts)
        self._calls, self._n = 0, n

    def register(self, model: str, *args: Any, **kwargs: Any) -> Any:
        self._calls += 1
        row = super().register(model, *args, **kwargs)
        if self._calls == self._n:
            raise KeyboardInterrupt
        return row


@pytest.mark.parametrize(
    ("n", "registered"),
    [(1, {"1": 1}), (2, {"1": 1, "2": 2})],
    ids=["first-registration", "second-registration"],
)
def test_an_import_interrupted_after_a_registration_commits_audits_that_version(
    source: Daemon, target: Daemon, tmp_path: Path, n: int, registered: dict[str, int]
) -> None:
    """The entry listed what the import had seen returned: a Ctrl-C between the store's
    commit and the return left a committed version out (``"registered": {}``)."""
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, source.config, MODEL, bundle, versions=[1, 2])
    with pytest.raises(KeyboardInterrupt):
        _import(target, bundle, registry=_InterruptedAfterCommit(target, n))
    failed = target.store.audit_log(limit=1)[0]
    assert failed.action == "import_bundle_failed"
    assert failed.details["registered"] == failed.details["versions"] == registered
    assert failed.details["already_present"] == {}
    assert target.store.verify_audit() is None


def test_a_retry_interrupted_after_its_registration_lists_only_its_own(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """Versions of the same bundle that an earlier import registered are already present,
    not registered by the retry."""
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, source.config, MODEL, bundle, versions=[1, 2])
    with pytest.raises(KeyboardInterrupt):
        _import(target, bundle, registry=_InterruptedAfterCommit(target, 1))
    with pytest.raises(KeyboardInterrupt):
        _import(target, bundle, registry=_InterruptedAfterCommit(target, 1))
    entries = [
        a.details for a in target.store.audit_log(limit=10) if a.action == "import_bundle_failed"
    ]
    assert [(d["registered"], d["already_present"]) for d in entries] == [
        ({"2": 2}, {"1": 1}),
        ({"1": 1}, {}),
    ]
    assert target.store.verify_audit() is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(format_version=True),
        lambda m: m["versions"][0].update(parent_version=True),
    ],
    ids=["format_version", "parent_version"],
)
def test_a_manifest_flag_in_place_of_an_integer_is_refused(
    source: Daemon, target: Daemon, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    """``true`` read as the integer 1: format 1, parent version 1."""
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, source.config, MODEL, bundle, versions=[2])
    with pytest.raises(
        BundleError, match=r"must be (a positive integer|of type int), got True"
    ) as caught:
        _import(target, _rewrite(bundle, edit))
    assert caught.value.code == "invalid_bundle"
    assert "True" in caught.value.message
    assert target.store.list_models() == []
