"""A model a daemon's config regulates before the model is registered: a registration,
a bundle import or a promotion run under a config that does not list it (the CLI with only
the store, a replica on an older config) applies the regulation the daemon stored as it
started (both store backends).

The daemon stored only the model's safe ranges: its first champion was registered with no
approver, and the daemon regulated the model afterwards, the champion in service."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunewatch._approval_rules import check_champion_registration
from tunewatch._bundle import BundleError, export_bundle, import_bundle
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError, NotFoundError
from tunewatch._example import ExampleModel
from tunewatch._governance import promote
from tunewatch._registry import Registry
from tunewatch.store import Store, StoredSafeRanges

MODEL = "bank"


def _raw(tmp_path: Path, store_url: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data_dir": str(tmp_path / "data"), "store": {"url": store_url}, "models": models}


def _start_regulating_daemon(tmp_path: Path, store_url: str) -> None:
    """A daemon whose config regulates ``bank`` starts on the store (and stops), before
    anything registers ``bank``."""
    raw = _raw(tmp_path, store_url, [{"name": MODEL, "task": "binary", "regulated": True}])
    Daemon(build_config(raw, env={}), env={}).close()


def _unlisting(tmp_path: Path, store_url: str) -> Daemon:
    """A replica whose config does not list ``bank``."""
    return Daemon(build_config(_raw(tmp_path, store_url, []), env={}), env={})


def _audit(store: Store) -> list[tuple[str, str, str]]:
    """The whole audit log, oldest first, as (action, target, actor)."""
    return [(e.action, e.target, e.actor) for e in reversed(store.audit_log(limit=1000))]


def _registered(store: Store) -> list[tuple[str, str, str]]:
    return [e for e in _audit(store) if e[0] in ("regulate_model", "register_version")]


def test_cli_with_only_the_store_cannot_register_the_first_champion(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _start_regulating_daemon(tmp_path, store_url)
    config = tmp_path / "tw_nomodels.yaml"
    config.write_text(yaml.safe_dump(_raw(tmp_path, store_url, [])))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    features = ",".join(trained[0].metadata.feature_names)
    args = ["--config", str(config), "--actor", "alice", "register", MODEL, str(onnx)]
    args += ["--task", "binary", "--features", features, "--stage", "champion"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "would wait for an approver (regulated model (stored by the daemon))" in err
    replica = _unlisting(tmp_path, store_url)
    try:
        with pytest.raises(NotFoundError):
            replica.store.get_model(MODEL)
        assert _registered(replica.store) == []
    finally:
        replica.close()


def test_a_registry_whose_config_does_not_list_the_model_cannot_register_its_champion(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Refused by the rules a caller checks first, and by the store under the model's lock
    when the caller skips them: nothing is stored."""
    _start_regulating_daemon(tmp_path, store_url)
    replica = _unlisting(tmp_path, store_url)
    try:
        model = trained[0]
        with pytest.raises(ConflictError) as checked:
            check_champion_registration(
                replica.store,
                replica.config,
                MODEL,
                task="binary",
                regulated=None,
                hyperparameters=model.metadata.hyperparameters,
            )
        assert checked.value.code == "approval_required"
        with pytest.raises(ConflictError) as stored:
            replica.registry.register(
                MODEL, model.onnx, model.metadata, actor="alice", stage="champion"
            )
        assert stored.value.code == "approval_required"
        with pytest.raises(NotFoundError):
            replica.store.get_model(MODEL)
        assert _registered(replica.store) == []
    finally:
        replica.close()


def _exported_champion(trained: list[ExampleModel], tmp_path: Path) -> Path:
    """A bundle of another store's unregulated champion (``credit``), as exported."""
    source = Daemon(build_config({"data_dir": str(tmp_path / "source")}, env={}), env={})
    try:
        source.registry.register(
            "credit", trained[0].onnx, trained[0].metadata, actor="test", stage="champion"
        )
        bundle = tmp_path / "credit.zip"
        export_bundle(source.store, source.artefacts, source.config, "credit", bundle)
    finally:
        source.close()
    return bundle


def test_a_bundle_import_under_a_config_that_does_not_list_the_model_holds_its_champion(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    bundle = _exported_champion(trained, tmp_path)
    _start_regulating_daemon(tmp_path, store_url)
    replica = _unlisting(tmp_path, store_url)
    try:
        _, [imported], _ = import_bundle(
            replica.store,
            replica.registry,
            replica.config,
            bundle,
            actor="ops",
            max_artefact_bytes=10**8,
            name=MODEL,
            sha256=hashlib.sha256(bundle.read_bytes()).hexdigest(),
        )
        assert (imported.version, imported.stage) == (1, "shadow")
        assert imported.held == ("regulated model (stored by the daemon)",)
        assert replica.store.champion(MODEL) is None
        assert replica.store.get_model(MODEL).regulated is True
    finally:
        replica.close()


def test_a_bundle_import_into_a_model_a_daemon_regulates_needs_the_bundle_s_digest(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """An import run under a config that does not list the model must name the bundle's
    SHA-256 when a daemon's config regulates it, registered or not, as when the store's
    flag or config does: it took an unverified bundle."""
    bundle = _exported_champion(trained, tmp_path)
    _start_regulating_daemon(tmp_path, store_url)
    replica = _unlisting(tmp_path, store_url)
    try:
        with pytest.raises(BundleError) as refused:
            import_bundle(
                replica.store,
                replica.registry,
                replica.config,
                bundle,
                actor="ops",
                max_artefact_bytes=10**8,
                name=MODEL,
            )
        assert refused.value.code == "sha256_required"
        assert "regulated in this store (by the config of a daemon)" in refused.value.message
        assert replica.store.list_models() == []
    finally:
        replica.close()


def test_a_shadow_registration_creates_the_model_regulated_and_its_promotion_waits(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    _start_regulating_daemon(tmp_path, store_url)
    replica = _unlisting(tmp_path, store_url)
    try:
        model = trained[0]
        row = replica.registry.register(MODEL, model.onnx, model.metadata, actor="alice")
        assert replica.store.get_model(MODEL).regulated is True
        # one entry says when, why and by whom it became regulated, before its version
        assert _registered(replica.store) == [
            ("regulate_model", MODEL, "alice"),
            ("register_version", f"{MODEL}/v1", "alice"),
        ]
        [entry] = replica.store.audit_log(action="regulate_model")
        assert "the config of a daemon" in entry.details["reason"]
        outcome = promote(
            replica.store, replica.config, MODEL, row.version, actor="alice", reason="first"
        )
        assert outcome.status == "pending_approval"
        assert replica.store.champion(MODEL) is None
    finally:
        replica.close()
    _start_regulating_daemon(tmp_path, store_url)  # finds it regulated: no second entry
    replica = _unlisting(tmp_path, store_url)
    try:
        assert len(replica.store.audit_log(action="regulate_model")) == 1
        assert replica.store.verify_audit() is None
    finally:
        replica.close()


def test_a_daemon_that_does_not_regulate_the_model_leaves_the_stored_regulation(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Regulation only tightens: a daemon on an older config (the model listed
    unregulated, its safe ranges stored anew) does not clear it."""
    _start_regulating_daemon(tmp_path, store_url)
    unregulated = [{"name": MODEL, "task": "binary", "safe_ranges": {"C": {"high": 5.0}}}]
    older = Daemon(build_config(_raw(tmp_path, store_url, unregulated), env={}), env={})
    try:
        stored = older.store.stored_safe_ranges(MODEL)
        assert stored is not None and stored.regulated and "C" in stored.safe_ranges
        with pytest.raises(ConflictError) as info:
            older.registry.register(
                MODEL, trained[0].onnx, trained[0].metadata, actor="alice", stage="champion"
            )
        assert info.value.code == "approval_required"
    finally:
        older.close()


def test_the_store_refuses_a_champion_of_a_model_regulated_after_it_was_added(
    m_store: Store,
) -> None:
    """Regulated by a daemon's stored config after the model was added unregulated (its
    first registration racing the daemon's start): refused under the model's lock."""
    m_store.set_safe_ranges(
        "m", StoredSafeRanges(regulated=True), actor="tunewatch", reason="the config"
    )
    with pytest.raises(ConflictError) as info:
        m_store.add_version(
            model="m",
            artefact_sha256="a" * 64,
            hyperparameters={},
            size_bytes=1,
            actor="alice",
            stage="champion",
        )
    assert info.value.code == "approval_required"
    assert m_store.list_versions("m") == []


def test_stored_regulation_is_not_cleared_by_ranges_stored_without_it(m_store: Store) -> None:
    assert m_store.set_safe_ranges(
        MODEL, StoredSafeRanges(regulated=True), actor="tunewatch", reason="the config"
    )
    assert not m_store.set_safe_ranges(MODEL, StoredSafeRanges(), actor="bob", reason="older")
    stored = m_store.stored_safe_ranges(MODEL)
    assert stored is not None and stored.regulated
    assert len(m_store.audit_log(action="set_safe_ranges")) == 1


def test_a_registration_asking_for_no_regulation_still_creates_the_model_regulated(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A Registry built as the CLI builds one from a config that does not list the model."""
    _start_regulating_daemon(tmp_path, store_url)
    replica = _unlisting(tmp_path, store_url)
    try:
        registry = Registry(replica.store, replica.artefacts)
        model = trained[1]
        registry.register(MODEL, model.onnx, model.metadata, actor="bob", regulated=False)
        assert replica.store.get_model(MODEL).regulated is True
    finally:
        replica.close()
