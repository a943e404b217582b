"""Hosts sharing one PostgreSQL store share its artefacts: each host's directory is a
cache of the bytes the store keeps, filled and repaired from it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tunewatch import _governance as governance
from tunewatch._actions import Dispatcher
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import build_config
from tunewatch._drift_report import drift_report
from tunewatch._errors import NotFoundError, StoreError
from tunewatch._example import ExampleModel
from tunewatch._registry import Registry
from tunewatch.comparison import ComparisonRunner
from tunewatch.store import Store, VersionRow
from tunewatch.store._schema import artefacts

DATA = b"onnx-bytes" * 1000
MISSING = hashlib.sha256(b"never stored").hexdigest()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    s = Store.open(pg_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def any_store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()


def _hosts(tmp_path: Path, store: Store) -> tuple[ArtefactStore, ArtefactStore]:
    """Two hosts' artefact directories over one store."""
    return (
        ArtefactStore(tmp_path / "a" / "artefacts", store=store),
        ArtefactStore(tmp_path / "b" / "artefacts", store=store),
    )


# -- the store's table, on both backends ------------------------------------------------


def test_put_artefact_keeps_the_bytes_once_under_their_hash(any_store: Store) -> None:
    assert any_store.put_artefact(DATA) is True
    assert any_store.put_artefact(DATA) is False  # idempotent: the row is kept
    sha = hashlib.sha256(DATA).hexdigest()
    assert any_store.get_artefact(sha) == DATA
    assert any_store.get_artefact(sha, ".npz") is None  # the suffix is part of the key
    assert any_store.get_artefact(MISSING) is None


def test_put_artefact_refuses_a_suffix_the_key_cannot_hold(any_store: Store) -> None:
    with pytest.raises(ValueError, match=r"`suffix` must be"):
        any_store.put_artefact(DATA, "onnx")


# -- PostgreSQL: the store is shared, the directories are caches --------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("suffix", [".onnx", ".npz", ".html"])
def test_an_artefact_put_on_one_host_is_read_on_another(
    tmp_path: Path, pg_store: Store, suffix: str
) -> None:
    """An artefact was written only to the registering host's directory: another host's
    promotion, export or scoring found it missing."""
    a, b = _hosts(tmp_path, pg_store)
    sha = a.put(DATA, suffix)
    assert not b.path(sha, suffix).exists()
    assert b.get(sha, suffix) == DATA
    assert b.path(sha, suffix).read_bytes() == DATA  # cached for the next read
    assert sorted(p.name for p in b.path(sha, suffix).parent.iterdir()) == [f"{sha}{suffix}"]


@pytest.mark.postgres
@pytest.mark.parametrize("damage", ["truncated", "flipped", "a directory"])
def test_a_damaged_cached_artefact_is_served_from_the_store(
    tmp_path: Path, pg_store: Store, damage: str
) -> None:
    a, b = _hosts(tmp_path, pg_store)
    sha = a.put(DATA)
    b.get(sha)
    path = b.path(sha)
    if damage == "a directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes(DATA[:100] if damage == "truncated" else b"X" + DATA[1:])
    assert b.get(sha) == DATA
    if damage != "a directory":  # a directory in the way is not removed: only reported
        assert path.read_bytes() == DATA


@pytest.mark.postgres
def test_an_artefact_neither_cached_nor_in_the_store_is_not_found(
    tmp_path: Path, pg_store: Store
) -> None:
    a, _ = _hosts(tmp_path, pg_store)
    with pytest.raises(NotFoundError) as err:
        a.get(MISSING)
    assert MISSING in err.value.message and str(a.root) in err.value.message
    assert "the store holds no copy" in err.value.message


@pytest.mark.postgres
def test_a_damaged_artefact_the_store_lacks_stays_a_store_error(
    tmp_path: Path, pg_store: Store
) -> None:
    """Bytes cached before the upgrade (no row in the store): a damaged file is still
    reported as corrupt, and says the store cannot repair it."""
    legacy = ArtefactStore(tmp_path / "a" / "artefacts")  # written before the upgrade
    sha = legacy.put(DATA)
    legacy.path(sha).write_bytes(b"X" + DATA[1:])
    a = ArtefactStore(legacy.root, store=pg_store)
    with pytest.raises(StoreError, match="corrupt") as err:
        a.get(sha)
    assert not isinstance(err.value, NotFoundError)
    assert "the store holds no copy" in err.value.message


@pytest.mark.postgres
def test_putting_bytes_cached_before_the_upgrade_stores_them(
    tmp_path: Path, pg_store: Store
) -> None:
    """A version registered before the store kept artefacts has no row: registering (or
    importing) the same bytes again fills it, although the local file is intact."""
    legacy = ArtefactStore(tmp_path / "a" / "artefacts")
    sha = legacy.put(DATA)
    assert pg_store.get_artefact(sha) is None
    a, b = _hosts(tmp_path, pg_store)
    assert a.put(DATA) == sha
    assert pg_store.get_artefact(sha) == DATA
    assert b.get(sha) == DATA


@pytest.mark.postgres
def test_a_corrupt_copy_in_the_store_is_refused(tmp_path: Path, pg_store: Store) -> None:
    a, b = _hosts(tmp_path, pg_store)
    sha = a.put(DATA)
    with pg_store.engine.begin() as conn:
        conn.execute(artefacts.update().values(data=b"X" + DATA[1:]))
    with pytest.raises(StoreError, match="copy in the store is corrupt") as err:
        b.get(sha)
    assert not isinstance(err.value, NotFoundError)
    assert not b.path(sha).exists()  # nothing damaged was cached


# -- the callers that build their own ArtefactStore -----------------------------------


@pytest.mark.postgres
def test_a_version_registered_on_another_host_is_promoted_and_approved_here(
    tmp_path: Path, pg_store: Store, trained: list[ExampleModel]
) -> None:
    """The reported defect: host B registers, host A (another data_dir, same store)
    promoted with "artefact … is missing from …/A/artefacts"."""
    models = [{"name": "credit", "task": "binary", "regulated": True}]
    host_a = build_config({"data_dir": str(tmp_path / "A"), "models": models}, env={})
    host_b = ArtefactStore(tmp_path / "B" / "artefacts", store=pg_store)
    registry = Registry(pg_store, host_b)
    for stage, model in zip(("champion", "shadow"), trained, strict=True):
        registry.register(
            "credit",
            model.onnx,
            model.metadata,
            actor="worker",
            stage=stage,  # type: ignore[arg-type]
        )
    pg_store.regulate_model("credit", actor="ops", reason="a second person decides")
    outcome = governance.promote(pg_store, host_a, "credit", 2, actor="ops", reason="r")
    assert outcome.status == "pending_approval" and outcome.approval is not None
    _, promoted = governance.decide_approval(
        pg_store, host_a, outcome.approval.id, approver="boss", approve=True, reason="ok"
    )
    assert promoted is not None and promoted[0].version == 2
    assert ArtefactStore(host_a.artefact_dir).get(promoted[0].artefact_sha256)  # cached


@pytest.mark.postgres
def test_the_rollback_watch_reads_the_shared_store(tmp_path: Path, pg_store: Store) -> None:
    config = build_config({"data_dir": str(tmp_path / "A")}, env={})
    runner = ComparisonRunner(pg_store, config, dispatcher=Dispatcher(pg_store, config))
    b = ArtefactStore(tmp_path / "B" / "artefacts", store=pg_store)
    sha = b.put(DATA)
    assert runner._rollback_watch.artefacts.get(sha) == DATA


# -- artefacts cached before the store kept them ----------------------------------------


@pytest.mark.postgres
def test_share_cached_keeps_what_the_store_lacks_and_only_what_is_cached_here(
    tmp_path: Path, pg_store: Store
) -> None:
    legacy = ArtefactStore(tmp_path / "a" / "artefacts")  # as before schema 0014
    old, report = legacy.put(DATA), legacy.put(b"<html/>", ".html")
    a, _ = _hosts(tmp_path, pg_store)
    kept = a.put(b"kept already")
    keys = {(old, ".onnx"), (report, ".html"), (kept, ".onnx"), (MISSING, ".npz")}
    assert a.share_cached(keys) == 2
    assert (pg_store.get_artefact(old), pg_store.get_artefact(report, ".html")) == (
        DATA,
        b"<html/>",
    )
    assert pg_store.missing_artefacts(keys) == {(MISSING, ".npz")}  # cached nowhere here
    assert a.share_cached(keys) == 0


def _registered_before_the_upgrade(store: Store, data_dir: Path, model: ExampleModel) -> VersionRow:
    """``model`` registered as champion with its reference by a host whose artefacts went
    to ``data_dir``'s cache only, as before the store kept them."""
    legacy = Registry(store, ArtefactStore(data_dir / "artefacts"))
    return legacy.register(
        "credit",
        model.onnx,
        model.metadata,
        actor="test",
        stage="champion",
        reference=model.reference,
    )


@pytest.mark.postgres
def test_a_daemon_starting_shares_the_versions_its_host_registered_before_the_upgrade(
    tmp_path: Path, pg_url: str, pg_store: Store, trained: list[ExampleModel]
) -> None:
    """Versions registered before the store kept artefacts had no copy there: every other
    host answered them as missing until someone registered the same file again."""
    from tunewatch._daemon import Daemon

    row = _registered_before_the_upgrade(pg_store, tmp_path / "A", trained[0])
    reference = row.details["reference_sha256"]
    assert pg_store.missing_artefacts({(row.artefact_sha256, ".onnx"), (reference, ".npz")})
    config = build_config({"data_dir": str(tmp_path / "A"), "store": {"url": pg_url}}, env={})
    Daemon(config, env={}).close()
    other = ArtefactStore(tmp_path / "B" / "artefacts", store=pg_store)
    assert other.get(row.artefact_sha256) == trained[0].onnx
    assert other.get(reference, ".npz") == ArtefactStore(tmp_path / "A" / "artefacts").get(
        reference, ".npz"
    )


@pytest.mark.postgres
def test_migrate_shares_the_artefacts_its_host_cached_before_the_upgrade(
    tmp_path: Path,
    pg_url: str,
    pg_store: Store,
    trained: list[ExampleModel],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A host that runs no daemon (the CLI's, a worker's) had no way to give the store the
    artefacts only its cache held."""
    import json

    from tunewatch._cli import main

    row = _registered_before_the_upgrade(pg_store, tmp_path / "A", trained[0])
    config = tmp_path / "a.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "A"), "store": {"url": pg_url}}))
    assert main(["--config", str(config), "migrate"]) == 0
    assert "kept 2 artefacts cached here in the store" in capsys.readouterr().out
    keys = {(row.artefact_sha256, ".onnx"), (row.details["reference_sha256"], ".npz")}
    assert pg_store.missing_artefacts(keys) == set()
    assert main(["--config", str(config), "migrate"]) == 0
    assert "kept" not in capsys.readouterr().out


@pytest.mark.postgres
def test_drift_reports_cached_before_the_upgrade_are_shared_too(
    tmp_path: Path, pg_store: Store, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only versions' files and reference snapshots were shared: a drift report built on
    a host before the upgrade stayed a 404 on every other host, although migration 0014
    says such artefacts are filled. Read a page at a time (two reports of one window
    straddle a page's edge here)."""
    from tunewatch import _daemon

    legacy = ArtefactStore(tmp_path / "A" / "artefacts")
    Registry(pg_store, legacy).register(
        "credit", trained[0].onnx, trained[0].metadata, actor="test", stage="champion"
    )
    end = datetime(2026, 1, 1, tzinfo=UTC)
    reports = {}
    for i, window_end in enumerate(end + timedelta(hours=h) for h in (0, 0, 1, 2, 3)):
        drift = pg_store.add_evaluation(
            model="credit",
            version=1,
            kind="drift",
            status="ok",
            window_start=window_end - timedelta(hours=1),
            window_end=window_end,
            payload={},
        )
        sha = legacy.put(f"<html>report {i}</html>".encode(), ".html")
        pg_store.add_evaluation(
            model="credit",
            version=1,
            kind="drift_report",
            status="ok",
            window_start=window_end - timedelta(hours=1),
            window_end=window_end,
            payload={"evaluation": drift.id, "sha256": sha, "drifted_columns": []},
        )
        reports[drift.id] = f"<html>report {i}</html>"
    monkeypatch.setattr(_daemon, "DRIFT_REPORTS_PAGE", 2)
    host_a = ArtefactStore(legacy.root, store=pg_store)
    assert _daemon.share_cached_artefacts(pg_store, host_a) == 1 + len(reports)
    host_b = ArtefactStore(tmp_path / "B" / "artefacts", store=pg_store)
    config = build_config({"data_dir": str(tmp_path / "B")}, env={})
    for evaluation_id, html in reports.items():
        assert drift_report(pg_store, host_b, config, _no_baseline, "credit", evaluation_id) == html
    assert _daemon.share_cached_artefacts(pg_store, host_a) == 0


def _no_baseline(champion: object, model: object) -> None:
    """A stored report is served without building a baseline."""
    return None
