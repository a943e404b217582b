"""An import whose lease lapsed (the process stopped — SIGSTOP, a paused VM — or the store
unreachable past :data:`~tunewatch._import_lease.LEASE_TTL_S`) goes no further: another
import may have run to its end meanwhile, and its plan is stale. Renewing took a lapsed
or released lease again as taking it does, so the stopped import, resumed, registered the
versions the other had registered (twice), and both exited 0."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.tunewatch.conftest import MODEL
from tunewatch._artefacts import ArtefactStore
from tunewatch._bundle import ImportedVersion, export_bundle, import_bundle
from tunewatch._bundle_archive import open_archive, open_bundle, read_manifest, sha256_file
from tunewatch._bundle_import import apply, plan
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError
from tunewatch._example import ExampleModel
from tunewatch._import_lease import ImportLease
from tunewatch._registry import Registry
from tunewatch.store import HeldLease, Store
from tunewatch.store._schema import leases


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()


def _lapse(store: Store, name: str) -> None:
    """The lease ``name`` past its expiry, as a holder stopped for longer than its time
    to live leaves it (an hour back: no clock skew between here and the database's)."""
    with store.engine.begin() as conn:
        conn.execute(
            leases.update()
            .where(leases.c.name == name)
            .values(expires_at=datetime.now(UTC) - timedelta(hours=1))
        )


def _expires_at(store: Store, name: str) -> datetime:
    with store.engine.connect() as conn:
        found: datetime = conn.execute(
            select(leases.c.expires_at).where(leases.c.name == name)
        ).scalar_one()
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


# -- the store's renewal ------------------------------------------------------------------


def test_renew_lease_extends_a_lease_only_while_its_holder_holds_it(store: Store) -> None:
    assert not store.renew_lease("import:x", "a", ttl_s=60)  # never taken
    assert store.acquire_lease("import:x", "a", ttl_s=60)
    assert store.renew_lease("import:x", "a", ttl_s=3600)
    assert _expires_at(store, "import:x") > datetime.now(UTC) + timedelta(minutes=30)
    assert not store.renew_lease("import:x", "b", ttl_s=60)  # another's
    _lapse(store, "import:x")
    assert not store.renew_lease("import:x", "a", ttl_s=60)  # lapsed: not taken again
    assert store.acquire_lease("import:x", "b", ttl_s=60)  # as taking it may be
    assert not store.renew_lease("import:x", "a", ttl_s=60)
    store.release_lease("import:x", "b")
    assert not store.renew_lease("import:x", "b", ttl_s=60)  # released


def test_acquire_lease_still_takes_a_lapsed_lease_of_its_own_holder(store: Store) -> None:
    """The scheduler's leader takes its lease back after a pause: only renewal changed."""
    assert store.acquire_lease("scheduler", "a", ttl_s=60)
    _lapse(store, "scheduler")
    assert store.acquire_lease("scheduler", "a", ttl_s=60)
    assert not store.acquire_lease("scheduler", "b", ttl_s=60)


# -- the import's lease -------------------------------------------------------------------


def test_a_lease_that_lapsed_while_another_import_ran_is_not_taken_again(store: Store) -> None:
    with ImportLease(store, MODEL) as first:
        _lapse(store, first._name)  # stopped past its time to live
        with ImportLease(store, MODEL):  # another import runs to its end and releases
            pass
        with pytest.raises(ConflictError) as lost:
            first.renew()
    assert lost.value.code == "import_in_progress"
    message = str(lost.value)
    assert f"this import's lease on model {MODEL!r} lapsed" in message
    assert "nothing more is registered" in message


def test_a_lease_that_lapsed_with_nobody_taking_it_is_not_renewed(store: Store) -> None:
    """Nothing tells a lapsed lease that nobody took from one another import took, ran
    under and released: it is lost either way."""
    with ImportLease(store, MODEL) as first:
        _lapse(store, first._name)
        with pytest.raises(ConflictError, match="lapsed"):
            first.renew()


def test_a_held_lease_is_renewed_and_keeps_others_out(store: Store) -> None:
    with ImportLease(store, MODEL) as first:
        first.renew()
        with pytest.raises(ConflictError, match="is in progress"), ImportLease(store, MODEL):
            pass
        first.renew()  # the refused one took nothing


# -- an import whose lease lapsed ---------------------------------------------------------


@pytest.fixture
def bundle(trained: list[ExampleModel], tmp_path: Path) -> Path:
    """``credit`` v1 (champion) and v2 (shadow, its parent 1) exported."""
    source = Daemon(build_config({"data_dir": str(tmp_path / "source")}, env={}), env={})
    try:
        for model, stage, parent in ((trained[0], "champion", None), (trained[1], "shadow", 1)):
            source.registry.register(
                MODEL,
                model.onnx,
                dataclasses.replace(model.metadata, parent_version=parent),
                actor="test",
                stage=stage,
                reference=model.reference,
            )
        path = tmp_path / "credit.zip"
        export_bundle(source.store, source.artefacts, source.config, MODEL, path, versions=[1, 2])
    finally:
        source.close()
    return path


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "target")}, env={}), env={})
    yield daemon
    daemon.close()


def _import(target: Daemon, bundle: Path, registry: Registry | None = None) -> Any:
    return import_bundle(
        target.store,
        target.registry if registry is None else registry,
        target.config,
        bundle,
        actor="ops",
        max_artefact_bytes=10**8,
    )


class _StoppedAfterChecking(Registry):
    """A registry whose first candidate check is followed by a stop past the lease's time
    to live, during which another import of ``bundle`` runs to its end."""

    def __init__(self, daemon: Daemon, bundle: Path) -> None:
        super().__init__(daemon.store, daemon.artefacts)
        self._daemon, self._bundle = daemon, bundle
        self.other: list[ImportedVersion] | None = None

    def check(self, model: str, *args: Any, **kwargs: Any) -> Any:
        found = super().check(model, *args, **kwargs)
        if self.other is None:  # once: the other import checks with the daemon's registry
            _lapse(self._daemon.store, ImportLease(self._daemon.store, model)._name)
            self.other = _import(self._daemon, self._bundle)[1]
        return found


def test_an_import_stopped_past_its_lease_registers_nothing_another_import_did(
    bundle: Path, target: Daemon
) -> None:
    stopped = _StoppedAfterChecking(target, bundle)
    with pytest.raises(ConflictError) as lost:
        _import(target, bundle, registry=stopped)
    assert lost.value.code == "import_in_progress"
    assert stopped.other is not None
    assert [(i.source_version, i.version) for i in stopped.other] == [(1, 1), (2, 2)]
    assert [v.version for v in target.store.list_versions(MODEL)] == [1, 2]  # once each
    failed, done = target.store.audit_log(limit=2)
    assert (failed.action, done.action) == ("import_bundle_failed", "import_bundle")
    assert done.details["registered"] == {"1": 1, "2": 2}
    # the other import's versions are not this one's, though of the same bundle
    assert failed.details["registered"] == failed.details["versions"] == {}
    assert failed.details["code"] == "import_in_progress"
    assert target.store.verify_audit() is None


def test_a_planned_version_registered_meanwhile_is_not_registered_again(
    bundle: Path, target: Daemon
) -> None:
    """A plan made before another import registered its versions: each is looked for
    again just before it is registered."""
    with open_bundle(bundle) as file:
        digest = sha256_file(file, bundle)
        with open_archive(file, bundle) as archive:
            manifest = read_manifest(archive)
            present, planned = plan(
                target.store,
                target.registry,
                target.config,
                archive,
                manifest,
                MODEL,
                digest=digest,
                max_artefact_bytes=10**8,
                renew=lambda: None,
            )
            assert (present, len(planned)) == ({}, 2)
            _import(target, bundle)  # another import, meanwhile
            imported = apply(
                target.store,
                target.registry,
                archive,
                manifest,
                MODEL,
                present,
                planned,
                actor="ops",
                digest=digest,
                sha256_given=False,
                max_artefact_bytes=10**8,
                renew=lambda: None,
            )
    assert [(i.source_version, i.version, i.already_present) for i in imported] == [
        (1, 1, True),
        (2, 2, True),
    ]
    assert [v.version for v in target.store.list_versions(MODEL)] == [1, 2]
    entry = target.store.audit_log(limit=1)[0]
    assert entry.action == "import_bundle"
    assert (entry.details["registered"], entry.details["already_present"]) == (
        {},
        {"1": 1, "2": 2},
    )


class _StoppedBeforeRegistering(Registry):
    """A registry that stops past the lease's time to live just before the second
    registration's transaction (after the import renewed its lease and looked for the
    version again), during which another import of ``bundle`` runs to its end."""

    def __init__(self, daemon: Daemon, bundle: Path) -> None:
        super().__init__(daemon.store, daemon.artefacts)
        self._daemon, self._bundle = daemon, bundle
        self.other: list[ImportedVersion] | None = None
        self.calls = 0

    def register(self, model: str, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            _lapse(self._daemon.store, ImportLease(self._daemon.store, model)._name)
            self.other = _import(self._daemon, self._bundle)[1]
        return super().register(model, *args, **kwargs)


def test_an_import_stopped_just_before_a_registration_commits_registers_nothing(
    bundle: Path, target: Daemon
) -> None:
    """The last renewal before a registration can pass and the lease lapse before the
    registration commits: the registration's own transaction checks that the lease is
    still held (and extends it), so the other import's versions are not registered
    again."""
    stopped = _StoppedBeforeRegistering(target, bundle)
    with pytest.raises(ConflictError) as lost:
        _import(target, bundle, registry=stopped)
    assert lost.value.code == "import_in_progress"
    assert "lapsed" in str(lost.value)
    # the other import found version 1 this one registered and registered version 2
    assert stopped.other is not None
    assert [(i.source_version, i.already_present) for i in stopped.other] == [
        (1, True),
        (2, False),
    ]
    assert [v.version for v in target.store.list_versions(MODEL)] == [1, 2]  # once each
    failed = target.store.audit_log(limit=1)[0]
    assert failed.action == "import_bundle_failed"
    assert failed.details["registered"] == {"1": 1}
    assert target.store.verify_audit() is None


def test_a_registration_under_a_lease_another_holds_stores_nothing(
    store: Store, trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The store's side, on both backends: a registration fenced by a lease its holder no
    longer holds is refused in its own transaction; one still held extends the lease."""
    registry = Registry(store, ArtefactStore(tmp_path / "artefacts", store=store))
    model = trained[0]
    held = HeldLease(name="import:x", holder="a", ttl_s=3600)
    assert store.acquire_lease("import:x", "a", ttl_s=60)
    registry.register(MODEL, model.onnx, model.metadata, actor="t", lease=held)
    assert _expires_at(store, "import:x") > datetime.now(UTC) + timedelta(minutes=30)
    _lapse(store, "import:x")
    assert store.acquire_lease("import:x", "b", ttl_s=60)
    with pytest.raises(ConflictError) as lost:
        registry.register(MODEL, model.onnx, model.metadata, actor="t", lease=held)
    assert lost.value.code == "lease_lapsed"
    assert [v.version for v in store.list_versions(MODEL)] == [1]
