"""Model bundles between environments: export, import, and what an import refuses."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL
from tunewatch._bundle import BundleError, ImportedVersion, export_bundle, import_bundle
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import (
    ConflictError,
    RegistrationError,
    StoreUnavailableError,
    TunewatchError,
)
from tunewatch._example import ExampleModel
from tunewatch._reference import Reference
from tunewatch._registry import Registry
from tunewatch._tuning import TuningJobRunner
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import Store


@pytest.fixture
def source(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """Version 1 champion, version 2 in shadow (its parent: 1)."""
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
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    yield daemon
    daemon.close()


def _export(d: Daemon, path: Path, versions: list[int] | None = None) -> Path:
    export_bundle(d.store, d.artefacts, d.config, MODEL, path, versions=versions)
    return path


def _import(
    d: Daemon, path: Path, name: str | None = None, *, verified: bool = False
) -> tuple[str, list[ImportedVersion], dict[str, Any] | None]:
    """Import ``path``; ``verified``: given its SHA-256, as a model the target regulates
    requires."""
    return import_bundle(
        d.store,
        d.registry,
        d.config,
        path,
        actor="ops",
        max_artefact_bytes=10**8,
        name=name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest() if verified else None,
    )


def test_versions_arrive_with_their_lineage_artefacts_and_references(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path / "credit.zip", versions=[1, 2])
    name, imported, _ = _import(target, bundle)
    assert name == MODEL
    assert [(i.source_version, i.version, i.stage) for i in imported] == [
        (1, 1, "champion"),  # the target had no champion
        (2, 2, "shadow"),
    ]
    assert source.store.get_version(MODEL, 2).parent_version == 1
    assert target.store.get_version(MODEL, 2).parent_version == 1  # v1 as imported
    for v in (1, 2):
        before, after = source.store.get_version(MODEL, v), target.store.get_version(MODEL, v)
        assert after.artefact_sha256 == before.artefact_sha256
        assert after.hyperparameters == before.hyperparameters
        assert after.details["reference_sha256"] == before.details["reference_sha256"]
        assert after.details["imported"]["model"] == MODEL
        assert after.details["imported"]["version"] == v
        assert target.artefacts.get(after.artefact_sha256) == source.artefacts.get(
            before.artefact_sha256
        )
    assert target.store.audit_log(limit=1)[0].action == "import_bundle"
    assert target.store.verify_audit() is None


def test_a_manifest_without_the_optional_lineage_imports(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    def strip(m: dict[str, Any]) -> None:
        for key in ("parent_version", "parent_origin", "study", "dataset_version"):
            m["versions"][0].pop(key)
        m.pop("exported_at")

    bundle = _rewrite(_export(source, tmp_path / "a.zip"), tmp_path / "b.zip", strip)
    _, imported, _ = _import(target, bundle)
    assert [i.stage for i in imported] == ["champion"]
    child = source.registry.register(
        MODEL,
        trained[1].onnx,
        dataclasses.replace(trained[1].metadata, parent_version=1),
        actor="t",
    )
    for versions, parent in (([child.version], None), ([1, child.version], 1)):
        name = f"old-{len(versions)}"
        before = _export(source, tmp_path / f"{name}.zip", versions=versions)
        old = _rewrite(
            before, tmp_path / f"{name}-old.zip", lambda m: m["versions"][-1].pop("parent_origin")
        )
        _, arrived, _ = _import(target, old, name=name)
        assert target.store.get_version(name, arrived[-1].version).parent_version == parent


def test_an_import_can_be_repeated_and_lands_in_shadow_beside_a_champion(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path / "credit.zip", versions=[1, 2])
    _import(target, bundle)
    _, again, _ = _import(target, bundle)
    assert [(i.version, i.already_present) for i in again] == [(1, True), (2, True)]
    assert len(target.store.list_versions(MODEL)) == 2
    _, renamed, _ = _import(target, _export(source, tmp_path / "champion.zip"), name="credit-eu")
    assert [(i.source_version, i.version, i.stage) for i in renamed] == [(1, 1, "champion")]
    source.store.promote(MODEL, 2, actor="t", reason="newer")
    _, third, _ = _import(target, _export(source, tmp_path / "v2.zip"), name="credit-eu")
    assert [(i.source_version, i.stage) for i in third] == [(2, "shadow")]  # governance decides


def test_an_altered_artefact_is_refused_and_nothing_is_registered(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path / "credit.zip")
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(altered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data + b"\0" if info.filename.endswith(".onnx") else data)
    with pytest.raises(BundleError, match="does not match its SHA-256"):
        _import(target, altered)
    assert target.store.list_models() == []


def _rewrite(bundle: Path, out: Path, edit: object) -> Path:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                edit(manifest)  # type: ignore[operator]
                data = json.dumps(manifest).encode()
            dst.writestr(info.filename, data)
    return out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format_version=2), "newer than this tunewatch reads"),
        (lambda m: m.update(format="zip"), "not a tunewatch bundle"),
        (lambda m: m["versions"][0].update(artefact_sha256="../../etc/passwd"), "SHA-256"),
        (lambda m: m["versions"][0].update(artefact_sha256="0" * 64), "lacks artefacts/0000"),
        (lambda m: m.update(versions=[]), "`versions` is empty"),
        (lambda m: m["model"].pop("task"), "incomplete"),
        (lambda m: m["versions"][0].update(parent_version="v1"), "must be of type int"),
        (lambda m: m["model"].update(regulated="false"), "must be of type bool"),
        (lambda m: m["model"].pop("regulated"), "must be of type bool"),
        (lambda m: m.update(versions=["x"]), "must be an object"),
        (lambda m: m.update(versions={"a": 1}), "must be a list"),
        (lambda m: m.update(model=["credit"]), "`model` must be an object"),
        (lambda m: m.update(config=[1]), "`config` must be an object"),
        (lambda m: m["model"].update(name="../../pwn"), "not a path"),
        (lambda m: m["model"].update(task="ranking"), "`model.task` must be one of binary"),
        (
            lambda m: m["versions"][0].update(stage="staging"),
            "`stage` must be one of shadow",
        ),
        # registered twice: the checks looked each entry up in the store only
        (lambda m: m.update(versions=m["versions"] * 2), "lists version 1 more than once"),
        # integers left a model registered with their strings, then a mismatch; lists a
        # TypeError traceback
        (
            lambda m: m["model"].update(feature_names=list(range(8))),
            r"`model.feature_names` must be a non-empty list of distinct strings, got \[0, 1",
        ),
        (
            lambda m: m["model"].update(feature_names=[[i] for i in range(8)]),
            r"`model.feature_names` must be a non-empty list of distinct strings, got \[\[0\]",
        ),
        (lambda m: m["model"].update(feature_names=["a", "a"]), "distinct strings"),
        (lambda m: m["model"].update(feature_names=[]), "non-empty list"),
        (
            lambda m: m["versions"][0].update(parent_origin={"model": "credit", "version": "1"}),
            "`parent_origin` must be",
        ),
    ],
    ids=[
        "newer-format",
        "not-a-bundle",
        "path-in-sha",
        "missing-member",
        "empty",
        "no-task",
        "parent-not-a-number",
        "regulated-a-string",
        "regulated-missing",
        "version-not-an-object",
        "versions-not-a-list",
        "model-not-an-object",
        "config-not-an-object",
        "model-name-a-path",
        "unknown-task",
        "unknown-stage",
        "version-listed-twice",
        "feature-names-integers",
        "feature-names-lists",
        "feature-names-repeated",
        "feature-names-empty",
        "parent-origin-malformed",
    ],
)
def test_a_malformed_manifest_is_refused_with_the_reason(
    source: Daemon, target: Daemon, tmp_path: Path, edit: object, message: str
) -> None:
    bundle = _rewrite(_export(source, tmp_path / "a.zip"), tmp_path / "b.zip", edit)
    with pytest.raises(BundleError, match=message):
        _import(target, bundle)
    assert target.store.list_models() == []


def test_a_member_that_unpacks_past_the_limit_is_refused(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path / "credit.zip")
    with pytest.raises(BundleError, match="the limit is 100"):
        import_bundle(
            target.store,
            target.registry,
            target.config,
            bundle,
            actor="ops",
            max_artefact_bytes=100,
        )


def test_the_target_model_s_task_features_and_regulation_still_apply(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path / "credit.zip")
    target.registry.register(
        MODEL, trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
    )
    target.store.regulate_model(MODEL, actor="t", reason="regulated after its first champion")
    # an unregulated bundle imports as an upload would: the model stays regulated
    _, kept, _ = _import(target, bundle, verified=True)
    assert [(i.version, i.already_present) for i in kept] == [(1, True)]
    assert target.store.get_model(MODEL).regulated is True
    target.registry.register(
        "copy", trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
    )
    _, fits, _ = _import(target, bundle, name="copy")  # same task and features
    assert [i.stage for i in fits] == ["shadow"]
    renamed = _rewrite(
        bundle,
        tmp_path / "renamed.zip",
        lambda m: m["model"].update(feature_names=[f"f{i}" for i in range(8)]),
    )
    target.registry.register(
        "other", trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
    )
    with pytest.raises(RegistrationError, match="features"):
        _import(target, renamed, name="other")


def test_a_champion_imported_where_a_promotion_would_wait_lands_in_shadow(
    source: Daemon, tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path / "credit.zip", versions=[1, 2])
    raw = {
        "data_dir": str(tmp_path / "regulated"),
        "models": [{"name": MODEL, "task": "binary", "regulated": True}],
    }
    target = Daemon(build_config(raw, env={}), env={})
    try:
        _, imported, _ = _import(target, bundle, verified=True)
        assert [(i.source_version, i.stage) for i in imported] == [(1, "shadow"), (2, "shadow")]
        assert target.store.champion(MODEL) is None  # promote it: an approver decides
    finally:
        target.close()


def test_the_cli_exports_and_imports_with_the_model_s_config(
    source: Daemon, trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "source.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "source"),
                "models": [{"name": MODEL, "task": "binary", "objective": {"name": "brier"}}],
            }
        )
    )
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(config), "export", MODEL, str(bundle), "--version", "2"]) == 0
    assert "exported credit versions [2]" in capsys.readouterr().out
    target = tmp_path / "target.yaml"
    target.write_text(json.dumps({"data_dir": str(tmp_path / "target")}))
    snippet = tmp_path / "credit-config.yaml"
    args = ["--config", str(target), "import", str(bundle), "--config-out", str(snippet)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "credit v2 -> v1 (shadow)" in out  # it was not the source's champion
    assert "objective" in snippet.read_text() and "brier" in snippet.read_text()


def test_import_says_when_the_bundle_holds_no_config_for_config_out(
    source: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle exported under a config that does not list the model holds no model
    config: `--config-out F` then wrote nothing and said nothing."""
    config = tmp_path / "source.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "source")}))
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(config), "export", MODEL, str(bundle), "--version", "2"]) == 0
    target = tmp_path / "target.yaml"
    target.write_text(json.dumps({"data_dir": str(tmp_path / "target")}))
    snippet = tmp_path / "credit-config.yaml"
    args = ["--config", str(target), "import", str(bundle), "--config-out", str(snippet)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "credit v2 -> v1 (shadow)" in captured.out
    assert not snippet.exists()
    assert f"the bundle holds no config for credit: {snippet} was not written" in captured.err


def test_import_refuses_a_config_out_it_cannot_write_before_importing_anything(
    source: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--config-out` in a missing directory registered the versions, then failed (exit
    2) writing the snippet: a script saw a failed import of a store that had changed."""
    config = tmp_path / "source.yaml"
    config.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path / "source"),
                "models": [{"name": MODEL, "task": "binary", "objective": {"name": "brier"}}],
            }
        )
    )
    bundle = tmp_path / "credit.zip"
    assert main(["--config", str(config), "export", MODEL, str(bundle), "--version", "2"]) == 0
    capsys.readouterr()
    target = tmp_path / "target.yaml"
    target.write_text(json.dumps({"data_dir": str(tmp_path / "target")}))
    snippet = tmp_path / "missing" / "credit-config.yaml"
    args = ["--config", str(target), "import", str(bundle), "--config-out", str(snippet)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "--config-out" in captured.err and "is not a directory" in captured.err
    assert "->" not in captured.out
    db = tmp_path / "target" / "tunewatch.db"
    if db.exists():  # some refusals come once the store is open: it holds nothing then
        with Store.open(f"sqlite:///{db}") as store:
            assert store.list_models() == []


def test_a_source_study_name_does_not_follow_the_version(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Study names (`credit-job3`) number jobs per store: kept on an imported version, the
    target's own job 3 found its study "already registered" and never registered."""
    v3 = source.registry.register(
        MODEL,
        trained[1].onnx,
        dataclasses.replace(trained[1].metadata, study="credit-job3"),
        actor="job:3",
    )
    _, imported, _ = _import(target, _export(source, tmp_path / "v3.zip", versions=[v3.version]))
    version = target.store.get_version(MODEL, imported[0].version)
    assert version.study is None
    assert version.details["imported"]["study"] == "credit-job3"


def test_a_parent_imported_by_an_earlier_bundle_is_the_imported_version_s_parent(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Parents were looked up among the bundle's own versions only: a child brought in by
    a later bundle lost its lineage."""
    child = source.registry.register(
        MODEL,
        trained[1].onnx,
        dataclasses.replace(trained[1].metadata, parent_version=2),
        actor="t",
    )
    _, [parent], _ = _import(target, _export(source, tmp_path / "v2.zip", versions=[2]))
    _, [imported], _ = _import(
        target, _export(source, tmp_path / "child.zip", versions=[child.version])
    )
    assert target.store.get_version(MODEL, imported.version).parent_version == parent.version


def test_a_parent_is_not_taken_from_another_store_s_model_of_the_same_name(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The target imported `credit` v1 from another environment, then a version of the
    source whose parent is the source's own v1 (not in the target): the parent was matched by
    model name and version alone, and the other environment's v1 became its parent."""
    other = Daemon(build_config({"data_dir": str(tmp_path / "other")}, env={}), env={})
    try:
        other.registry.register(
            MODEL, trained[1].onnx, trained[1].metadata, actor="b", stage="champion"
        )
        _, [foreign], _ = _import(target, _export(other, tmp_path / "other.zip"))
    finally:
        other.close()
    # the same artefact as the foreign v1, of another dataset: without its parent it would
    # otherwise be that version again, refused as a retry (`version_exists`)
    own = source.registry.register(
        MODEL,
        trained[1].onnx,
        dataclasses.replace(trained[1].metadata, parent_version=1, dataset_version="own"),
        actor="t",
    )
    _, [child], _ = _import(target, _export(source, tmp_path / "child.zip", versions=[own.version]))
    assert child.version != foreign.version
    assert target.store.get_version(MODEL, child.version).parent_version is None


def test_a_manifest_nested_past_the_recursion_limit_is_refused(
    target: Daemon, tmp_path: Path
) -> None:
    bundle = tmp_path / "deep.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("manifest.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="not JSON"):
        _import(target, bundle)


def test_a_corrupt_compressed_member_is_refused(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path / "credit.zip")
    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(corrupt, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    data = bytearray(corrupt.read_bytes())
    with zipfile.ZipFile(corrupt) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(".onnx"))
    at = info.header_offset
    start = at + 30 + int.from_bytes(data[at + 26 : at + 28], "little")
    start += int.from_bytes(data[at + 28 : at + 30], "little")
    for k in range(start, start + 6):
        data[k] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="cannot read"):
        _import(target, corrupt)
    assert target.store.list_models() == []


def _swap_member(bundle: Path, out: Path, version: int, kind: str, data: bytes) -> Path:
    """``bundle`` with ``version``'s artefact (``kind`` "onnx") or reference ("npz")
    replaced by ``data``, stored under its own SHA-256 as the manifest names it: a bundle
    whose hashes all match but whose content the target must refuse."""
    sha = hashlib.sha256(data).hexdigest()
    key = {"onnx": "artefact_sha256", "npz": "reference_sha256"}[kind]
    with zipfile.ZipFile(bundle) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    manifest = json.loads(members.pop("manifest.json"))
    next(e for e in manifest["versions"] if e["version"] == version)[key] = sha
    members[f"artefacts/{sha}.{kind}"] = data
    # only members the manifest names: a bundle holding any other is refused
    named = {f"artefacts/{e['artefact_sha256']}.onnx" for e in manifest["versions"]}
    named |= {f"artefacts/{e['reference_sha256']}.npz" for e in manifest["versions"]}
    with zipfile.ZipFile(out, "w") as dst:
        dst.writestr("manifest.json", json.dumps(manifest))
        for name, body in members.items():
            if name in named or name.startswith("spaces/"):
                dst.writestr(name, body)
    return out


def _narrow_reference(trained: list[ExampleModel]) -> bytes:
    reference = trained[1].reference
    assert reference is not None
    return Reference(features=reference.features[:, :3], labels=reference.labels).to_bytes()


@pytest.mark.parametrize(
    ("spoil", "error", "message"),
    [
        ("altered-artefact", BundleError, "does not match its SHA-256"),
        ("not-onnx", RegistrationError, "ONNX|parse|protobuf"),
        ("reference-of-3-features", RegistrationError, r"\[rows, 8\] matrix"),
    ],
    ids=["altered-artefact", "not-onnx", "reference-of-3-features"],
)
def test_a_bundle_refused_at_its_second_version_registers_nothing(
    source: Daemon,
    target: Daemon,
    trained: list[ExampleModel],
    tmp_path: Path,
    spoil: str,
    error: type[Exception],
    message: str,
) -> None:
    """Members were read and checked one version at a time, between registrations: a
    bundle refused at version 2 had made version 1 the target's champion, with no
    `import_bundle` entry in the audit log."""
    bundle = _export(source, tmp_path / "credit.zip", versions=[1, 2])
    spoiled = tmp_path / "spoiled.zip"
    if spoil == "altered-artefact":
        sha = source.store.get_version(MODEL, 2).artefact_sha256
        with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(spoiled, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                dst.writestr(info.filename, data + b"\0" if sha in info.filename else data)
    elif spoil == "not-onnx":
        _swap_member(bundle, spoiled, 2, "onnx", b"not an onnx model")
    else:
        _swap_member(bundle, spoiled, 2, "npz", _narrow_reference(trained))
    with pytest.raises(error, match=message):
        _import(target, spoiled)
    assert target.store.list_models() == []
    assert target.store.audit_log(limit=10) == []


def _deep(levels: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return dict(value)


_SECOND_VERSION_REFUSED = {
    "details-too-deep": (
        lambda e: e["details"].update(deep=_deep(40)),
        "`details` must nest at most 32 levels deep",
    ),
    "hyperparameters-too-deep": (
        lambda e: e["hyperparameters"].update(deep=_deep(40)),
        "`hyperparameters` must nest at most 32 levels deep",
    ),
    "null-parity-error": (
        lambda e: e["details"].update(parity_error=None),
        "`details.parity_error` must be a finite number >= 0, got None",
    ),
    "dataset-version-too-long": (
        lambda e: e.update(dataset_version="d" * 201),
        "`dataset_version` must be at most 200 characters",
    ),
    "nul-in-dataset-version": (
        lambda e: e.update(dataset_version="a\x00b"),
        "`dataset_version` must be at most 200 characters, without NUL",
    ),
    "unpaired-surrogate-in-dataset-version": (
        lambda e: e.update(dataset_version="\ud800"),
        "unpaired surrogates",
    ),
}


@pytest.mark.parametrize("spoil", list(_SECOND_VERSION_REFUSED))
def test_a_version_the_registration_would_refuse_refuses_the_bundle_before_any_registers(
    source: Daemon, store_url: str, tmp_path: Path, spoil: str
) -> None:
    """The check phase was a hand-copied subset of the registration's rules: without the
    depth bound, with `parity_error: null` taken as none recorded, and without the store's
    own limits (PostgreSQL refuses a NUL or a `dataset_version` past 200 characters, which
    SQLite took), version 2 passed the checks and was refused once version 1 had become
    the target's champion."""
    edit, message = _SECOND_VERSION_REFUSED[spoil]
    bundle = _rewrite(
        _export(source, tmp_path / "credit.zip", versions=[1, 2]),
        tmp_path / "spoiled.zip",
        lambda m: edit(m["versions"][1]),
    )
    raw = {"data_dir": str(tmp_path / "target"), "store": {"url": store_url}}
    target = Daemon(build_config(raw, env={}), env={})
    try:
        with pytest.raises(TunewatchError, match=re.escape(message)) as refused:
            _import(target, bundle)
        assert isinstance(refused.value, ValueError)
        assert target.store.list_models() == []
        assert target.store.audit_log(limit=10) == []
    finally:
        target.close()


def test_each_candidate_is_loaded_once_per_import(
    source: Daemon, target: Daemon, tmp_path: Path, inspected: list[bytes]
) -> None:
    """The check phase and the registration each loaded every candidate in the sandbox: a
    child process per version and phase, each allowed `candidate_timeout_s`."""
    bundle = _export(source, tmp_path / "credit.zip", versions=[1, 2])
    _, imported, _ = _import(target, bundle)
    assert [i.stage for i in imported] == ["champion", "shadow"]
    assert len(inspected) == 2


class _RacedRegistry(Registry):
    """A registry before whose ``n``-th registration another registration makes a
    champion of ``model``: what a concurrent upload does while an import runs."""

    def __init__(self, daemon: Daemon, onnx: bytes, metadata: VersionMetadata, n: int) -> None:
        super().__init__(daemon.store, daemon.artefacts)
        self._calls, self._n, self._rival = 0, n, (onnx, metadata)

    def register(self, model: str, *args: Any, **kwargs: Any) -> Any:
        self._calls += 1
        if self._calls == self._n:
            onnx, metadata = self._rival
            super().register(model, onnx, metadata, actor="rival", stage="champion")
        return super().register(model, *args, **kwargs)


def test_a_registration_that_fails_during_the_import_is_audited_with_what_it_registered(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    source.store.promote(MODEL, 2, actor="t", reason="newer")  # the bundle's champion: v2
    bundle = _export(source, tmp_path / "credit.zip", versions=[1, 2])
    raced = _RacedRegistry(target, trained[0].onnx, trained[0].metadata, n=2)
    with pytest.raises(ConflictError, match="already has a champion"):
        import_bundle(
            target.store, raced, target.config, bundle, actor="ops", max_artefact_bytes=10**8
        )
    failed = target.store.audit_log(limit=1)[0]
    assert failed.action == "import_bundle_failed"
    assert failed.target == MODEL
    assert failed.details["versions"] == {"1": 1}  # the rival's champion took v2
    assert failed.details["code"] == "champion_exists"
    assert "already has a champion" in failed.details["error"]
    assert target.store.verify_audit() is None


class _InterruptedRegistry(Registry):
    """A registry whose ``n``-th registration is interrupted (Ctrl-C)."""

    def __init__(self, daemon: Daemon, n: int) -> None:
        super().__init__(daemon.store, daemon.artefacts)
        self._calls, self._n = 0, n

    def register(self, model: str, *args: Any, **kwargs: Any) -> Any:
        self._calls += 1
        if self._calls == self._n:
            raise KeyboardInterrupt
        return super().register(model, *args, **kwargs)


def test_an_import_interrupted_part_way_is_audited_with_what_it_registered(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """Only an `Exception` was audited: Ctrl-C after version 1 had become the target's
    champion left it there with no record of the import at all."""
    bundle = _export(source, tmp_path / "credit.zip", versions=[1, 2])
    interrupted = _InterruptedRegistry(target, n=2)
    with pytest.raises(KeyboardInterrupt):
        import_bundle(
            target.store, interrupted, target.config, bundle, actor="ops", max_artefact_bytes=10**8
        )
    failed = target.store.audit_log(limit=1)[0]
    assert (failed.action, failed.target) == ("import_bundle_failed", MODEL)
    assert failed.details["versions"] == {"1": 1}
    assert failed.details["code"] == failed.details["error"] == "KeyboardInterrupt"
    assert target.store.verify_audit() is None
    _, again, _ = _import(target, bundle)  # the lease was released: it can be repeated
    assert [(i.version, i.already_present) for i in again] == [(1, True), (2, False)]


def _first_job_rows(d: Daemon) -> int:
    """How many rows a tuning job queued now in ``d`` would train on."""
    outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
    assert outcome.job_id is not None
    model = d.store.get_model(MODEL)
    runner = TuningJobRunner(
        store=d.store, registry=d.registry, artefacts=d.artefacts, config=d.config, worker="t"
    )
    x, _, n_traffic = runner._training_window(
        model, d.config.model_or_default(MODEL, model.task), d.store.get_job(outcome.job_id)
    )
    assert n_traffic == 0
    return int(x.shape[0])


def test_an_imported_job_s_version_keeps_its_source_s_job_details_apart(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A job's version records its job, trigger, and how many of its reference rows were
    its store's traffic (``traffic_rows``, which that store's next job reads again rather
    than take from the reference). Imported verbatim, they described the target: its
    dashboard showed the source's job, and its first job dropped the traffic rows from
    the imported champion's reference, with no such traffic of its own to read."""
    reference = trained[0].reference
    assert reference is not None
    n = reference.features.shape[0]
    per_store = {"job": 3, "trigger": {"event": "drift"}, "rows": n, "traffic_rows": n - 200}
    tuned = source.registry.register(
        MODEL,
        trained[0].onnx,
        dataclasses.replace(  # of its own dataset: v1 again is a retry (`version_exists`)
            trained[0].metadata, dataset_version="tuned", details={**per_store, "n_trials": 40}
        ),
        actor="job:3",
        reference=reference,
    )
    source.store.promote(MODEL, tuned.version, actor="t", reason="tuned")
    _import(target, _export(source, tmp_path / "credit.zip"))
    champion = target.store.champion(MODEL)
    assert champion is not None
    assert not set(per_store) & set(champion.details)
    assert {k: champion.details["imported"][k] for k in per_store} == per_store
    assert champion.details["n_trials"] == 40  # what describes the version itself stays
    assert _first_job_rows(target) == n


def test_a_version_imported_with_traffic_rows_beside_its_origin_keeps_every_reference_row(
    target: Daemon, trained: list[ExampleModel]
) -> None:
    """Imports before `traffic_rows` moved under `details.imported` left it beside it."""
    reference = trained[0].reference
    assert reference is not None
    n = reference.features.shape[0]
    details = {"rows": n, "traffic_rows": n - 200, "imported": {"model": MODEL, "version": 3}}
    target.registry.register(
        MODEL,
        trained[0].onnx,
        dataclasses.replace(trained[0].metadata, details=details),
        actor="ops",
        stage="champion",
        reference=reference,
    )
    assert _first_job_rows(target) == n


def test_versions_retired_or_rolled_back_in_the_source_arrive_retired(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Every version but the champion arrived in shadow: one rolled back in the source
    became a challenger in the target, scored on live traffic and promotable (at once,
    by the default `challenger_better -> promote` trigger of an unregulated model)."""
    source.store.promote(MODEL, 2, actor="t", reason="try v2")
    source.store.rollback(MODEL, actor="t", reason="v2 broke production")
    v3 = source.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")
    source.store.promote(MODEL, v3.version, actor="t", reason="v3")
    assert [v.stage for v in source.store.list_versions(MODEL)] == [
        "retired",
        "rolled_back",
        "champion",
    ]
    _, imported, _ = _import(target, _export(source, tmp_path / "credit.zip", versions=[1, 2, 3]))
    assert [(i.source_version, i.stage) for i in imported] == [
        (1, "retired"),
        (2, "retired"),
        (3, "champion"),
    ]
    versions = target.store.list_versions(MODEL)
    assert [v.stage for v in versions] == ["retired", "retired", "champion"]
    assert [v.details["imported"]["stage"] for v in versions] == [
        "retired",
        "rolled_back",
        "champion",
    ]
    assert target.store.list_versions(MODEL, stage="shadow") == []


def test_a_version_retired_in_the_source_is_never_a_shadow_in_the_target(
    source: Daemon, target: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was registered in shadow, then retired in a second transaction: should that
    fail (the store unreachable a moment), it stayed a live challenger, and a repeated
    import found it present and left it so."""
    source.store.set_stage(MODEL, 2, "retired", actor="t", reason="old")
    bundle = _export(source, tmp_path / "credit.zip", versions=[1, 2])

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("store set_stage: database unavailable")

    monkeypatch.setattr(target.store, "set_stage", unreachable)
    _, imported, _ = _import(target, bundle)
    assert [(i.source_version, i.stage) for i in imported] == [(1, "champion"), (2, "retired")]
    assert target.store.list_versions(MODEL, stage="shadow") == []
    [entry] = target.store.audit_log(action="register_version", target=f"{MODEL}/v2")
    assert entry.details["stage"] == "retired"


def test_versions_that_come_back_from_a_round_trip_are_already_present(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """An import replaced the incoming `details.imported` and recognised only versions
    brought in from the bundle's model: exported back, the source's own versions came
    in again as shadows (its champion challenged by a copy of itself)."""
    _import(target, _export(source, tmp_path / "there.zip", versions=[1, 2]))
    _, back, _ = import_bundle(
        source.store,
        source.registry,
        source.config,
        _export(target, tmp_path / "back.zip", versions=[1, 2]),
        actor="ops",
        max_artefact_bytes=10**8,
    )
    assert [(i.source_version, i.version, i.already_present) for i in back] == [
        (1, 1, True),
        (2, 2, True),
    ]
    assert len(source.store.list_versions(MODEL)) == 2


def test_a_version_imported_twice_over_keeps_its_origin(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """Imported from a store that had imported it, a version lost where it came from, and
    the same version brought in from its origin as well arrived twice."""
    _import(target, _export(source, tmp_path / "b.zip", versions=[1, 2]), name="credit-eu")
    third = Daemon(build_config({"data_dir": str(tmp_path / "third")}, env={}), env={})
    try:
        export_bundle(
            target.store, target.artefacts, target.config, "credit-eu", tmp_path / "c.zip"
        )
        _, [via], _ = _import(third, tmp_path / "c.zip")
        version = third.store.get_version("credit-eu", via.version)
        assert version.details["imported"]["model"] == "credit-eu"
        assert version.details["imported"]["origin"] == {"model": MODEL, "version": 1}
        assert version.details["imported"]["via"]["model"] == MODEL  # the first import's record
        _, again, _ = _import(third, _export(source, tmp_path / "a.zip", versions=[1]), "credit-eu")
        assert [(i.version, i.already_present) for i in again] == [(via.version, True)]
        assert len(third.store.list_versions("credit-eu")) == 1
    finally:
        third.close()


def _lzma_corrupt(bundle: Path, out: Path, member: str) -> None:
    """``bundle`` with every member LZMA-compressed (zip method 14) and ``member``'s
    compressed data damaged."""
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_LZMA) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    data = bytearray(out.read_bytes())
    with zipfile.ZipFile(out) as archive:
        at = next(i for i in archive.infolist() if i.filename.endswith(member)).header_offset
    start = at + 30 + int.from_bytes(data[at + 26 : at + 28], "little")
    start += int.from_bytes(data[at + 28 : at + 30], "little")
    for k in range(start + 9, start + 17):
        data[k] ^= 0x5A
    out.write_bytes(bytes(data))


def _ends_early(bundle: Path, out: Path, member: str) -> None:
    """``bundle`` stored uncompressed, with ``member``'s central directory entry declaring
    more data than the file holds after it."""
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    data = bytearray(out.read_bytes())
    with zipfile.ZipFile(out) as archive:
        name = next(i.filename for i in archive.infolist() if i.filename.endswith(member))
    entry = data.index(b"PK\x01\x02")  # the central directory's entries
    while not data[entry + 46 :].startswith(name.encode()):
        entry = data.index(b"PK\x01\x02", entry + 4)
    size = len(data).to_bytes(4, "little")
    data[entry + 20 : entry + 28] = size + size  # compressed and uncompressed sizes
    out.write_bytes(bytes(data))


@pytest.mark.parametrize("member", ["manifest.json", ".onnx"], ids=["manifest", "artefact"])
@pytest.mark.parametrize("damage", [_lzma_corrupt, _ends_early], ids=["lzma", "ends-early"])
def test_the_cli_refuses_a_damaged_member_with_the_reason(
    source: Daemon,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    member: str,
    damage: Callable[[Path, Path, str], None],
) -> None:
    """An LZMA member's decompression error (zip method 14) and a member ending before
    its declared size (EOFError) escaped `tunewatch import` as tracebacks."""
    damaged = tmp_path / "damaged.zip"
    damage(_export(source, tmp_path / "credit.zip"), damaged, member)
    config = tmp_path / "target.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "target")}))
    assert main(["--config", str(config), "--actor", "ops", "import", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunewatch: error: cannot read ")
    assert member in err.splitlines()[0]


def test_a_reference_snapshot_with_a_corrupt_lzma_array_is_refused(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The snapshot is a zip too: its arrays' LZMA errors escaped the import as well."""
    reference = trained[0].reference
    assert reference is not None
    with zipfile.ZipFile(io.BytesIO(reference.to_bytes())) as npz:
        arrays = {i.filename: npz.read(i) for i in npz.infolist()}
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_LZMA) as npz:
        for name, data in arrays.items():
            npz.writestr(name, data)
    snapshot = bytearray(packed.getvalue())
    start = 30 + len(next(iter(arrays)))
    for k in range(start + 9, start + 17):
        snapshot[k] ^= 0x5A
    bundle = _swap_member(
        _export(source, tmp_path / "credit.zip"), tmp_path / "b.zip", 1, "npz", bytes(snapshot)
    )
    with pytest.raises(RegistrationError, match="reference snapshot is unreadable") as refused:
        _import(target, bundle)
    assert refused.value.code == "invalid_reference"
    assert target.store.list_models() == []


class _InterleavedRegistry(Registry):
    """A registry whose first registration lets another import of ``bundle`` run first:
    two imports at once, in a set order."""

    def __init__(self, daemon: Daemon, bundle: Path) -> None:
        super().__init__(daemon.store, daemon.artefacts)
        self._daemon, self._bundle = daemon, bundle
        self.other: list[ImportedVersion] | Exception | None = None

    def register(self, model: str, *args: Any, **kwargs: Any) -> Any:
        if self.other is None:
            try:
                self.other = _import(self._daemon, self._bundle)[1]
            except ConflictError as exc:
                self.other = exc
        return super().register(model, *args, **kwargs)


def test_an_import_into_a_model_while_another_runs_is_refused(
    source: Daemon, store_url: str, tmp_path: Path
) -> None:
    """Two imports of one bundle at once (two replicas' deploy hooks) each found the
    versions not there yet, and each registered them."""
    bundle = _export(source, tmp_path / "credit.zip", versions=[2])
    raw = {"data_dir": str(tmp_path / "target"), "store": {"url": store_url}}
    target = Daemon(build_config(raw, env={}), env={})
    try:
        interleaved = _InterleavedRegistry(target, bundle)
        _, [first], _ = import_bundle(
            target.store, interleaved, target.config, bundle, actor="ops", max_artefact_bytes=10**8
        )
        assert isinstance(interleaved.other, ConflictError)
        assert interleaved.other.code == "import_in_progress"
        assert "another import into model 'credit' is in progress" in str(interleaved.other)
        assert [v.version for v in target.store.list_versions(MODEL)] == [first.version]
        _, [again], _ = _import(target, bundle)  # once it has finished
        assert (again.version, again.already_present) == (first.version, True)
    finally:
        target.close()


def test_a_refused_import_does_not_hold_up_the_next(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    bundle = _export(source, tmp_path / "credit.zip")
    spoiled = _swap_member(bundle, tmp_path / "spoiled.zip", 1, "onnx", b"not an onnx model")
    with pytest.raises(RegistrationError):
        _import(target, spoiled)
    _, [imported], _ = _import(target, bundle)
    assert imported.stage == "champion"


def test_a_bundle_version_the_target_holds_live_from_elsewhere_is_imported_beside_it(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A registration identical to a live version is refused as a retry
    (``version_exists``), but an import skips its own repeats by their origin: a version
    the target was given another way (registered by hand from the same file, as its v2)
    is imported beside it, not a failed import stopped part way."""
    for model, stage in ((trained[1], "champion"), (trained[0], "shadow")):
        by_hand = target.registry.register(
            MODEL, model.onnx, model.metadata, actor="ops", stage=stage, reference=model.reference
        )
    _, [imported], _ = _import(target, _export(source, tmp_path / "credit.zip", versions=[1]))
    assert (imported.source_version, imported.already_present) == (1, False)
    assert imported.version not in (1, by_hand.version)
    copy = target.store.get_version(MODEL, imported.version)
    assert (copy.stage, copy.artefact_sha256) == ("shadow", by_hand.artefact_sha256)
