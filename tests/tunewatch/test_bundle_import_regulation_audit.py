"""Bundle imports into a model the target store regulates, and what the import's audit
entry says it registered."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.conftest import MODEL
from tunewatch._bundle import ImportedVersion, export_bundle, import_bundle
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import StoreError
from tunewatch._example import ExampleModel
from tunewatch._registry import Registry


@pytest.fixture
def source(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Daemon]:
    """Unregulated; version 1 champion, version 2 in shadow (its parent: 1)."""
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
    """A store whose config regulates nothing."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    yield daemon
    daemon.close()


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


def test_an_unregulated_bundle_imports_into_a_model_the_store_regulates(
    source: Daemon, target: Daemon, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The import asked for ``regulated=False`` and the registry refused it as unregulating
    the model (``regulated_mismatch``), though an upload of the same file registered."""
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, source.config, MODEL, bundle, versions=[1, 2])
    assert source.store.get_model(MODEL).regulated is False
    target.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")
    target.store.regulate_model(MODEL, actor="t", reason="regulated in this store only")
    imported = _import(target, bundle)
    # the bundle's champion needs an approver here: it lands in shadow like the rest
    assert [(i.source_version, i.version, i.stage, i.already_present) for i in imported] == [
        (1, 2, "shadow", False),
        (2, 3, "shadow", False),
    ]
    assert target.store.champion(MODEL) is None
    assert target.store.get_model(MODEL).regulated is True
    assert target.store.get_version(MODEL, 3).parent_version == 2
    upload = target.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
    assert (upload.version, upload.stage) == (4, "shadow")  # as an upload of it does
    assert target.store.verify_audit() is None


class _FailingRegistry(Registry):
    """A registry whose ``n``-th registration fails in the store."""

    def __init__(self, daemon: Daemon, n: int) -> None:
        super().__init__(daemon.store, daemon.artefacts)
        self._calls, self._n = 0, n

    def register(self, model: str, *args: Any, **kwargs: Any) -> Any:
        self._calls += 1
        if self._calls == self._n:
            raise StoreError("database is locked (injected)")
        return super().register(model, *args, **kwargs)


def test_the_import_audit_separates_registered_from_already_present_versions(
    source: Daemon, target: Daemon, tmp_path: Path
) -> None:
    """Each entry listed every version of the bundle the target held afterwards: a retry
    that registered version 2 only and a re-import that registered nothing read as the
    import that registered both."""
    bundle = tmp_path / "credit.zip"
    export_bundle(source.store, source.artefacts, source.config, MODEL, bundle, versions=[1, 2])
    with pytest.raises(StoreError, match="injected"):
        _import(target, bundle, registry=_FailingRegistry(target, n=2))
    _import(target, bundle)  # the retry
    _import(target, bundle)  # nothing left to register
    entries = [
        (a.action, a.details)
        for a in reversed(target.store.audit_log(limit=10))
        if a.action.startswith("import_bundle")
    ]
    assert [(action, d["registered"], d["already_present"]) for action, d in entries] == [
        ("import_bundle_failed", {"1": 1}, {}),
        ("import_bundle", {"2": 2}, {"1": 1}),
        ("import_bundle", {}, {"1": 1, "2": 2}),
    ]
    # `versions` reads as before: the registered ones of a failed import, every bundled
    # version's counterpart of a finished one
    assert [d["versions"] for _, d in entries] == [{"1": 1}, {"1": 1, "2": 2}, {"1": 1, "2": 2}]
    assert target.store.verify_audit() is None
