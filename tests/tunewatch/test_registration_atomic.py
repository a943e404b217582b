"""A registration is one transaction: refused for any reason, it stores no model, no
regulation change, no audit entry and no version (both store backends)."""

from __future__ import annotations

import base64
import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import holding, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError, InvalidValueError, NotFoundError
from tunewatch._example import ExampleModel
from tunewatch.store import Store


def _daemon(tmp_path: Path, store_url: str) -> Daemon:
    raw = {"data_dir": str(tmp_path / "data"), "store": {"url": store_url}}
    return Daemon(build_config(raw, env={}), env={})


def _audit(store: Store) -> list[tuple[str, str, str]]:
    """The whole audit log, oldest first, as (action, target, actor)."""
    return [(e.action, e.target, e.actor) for e in reversed(store.audit_log(limit=1000))]


@pytest.mark.parametrize("regulated", [None, True], ids=["unflagged", "regulated"])
def test_a_refused_parent_version_leaves_no_new_model(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, regulated: bool | None
) -> None:
    """The model was stored before its first version's parent was refused: the name was
    taken for good with the refused request's task and features (and regulated flag)."""
    daemon = _daemon(tmp_path, store_url)
    try:
        model = trained[0]
        refused = dataclasses.replace(model.metadata, parent_version=1)
        with pytest.raises(InvalidValueError, match="`parent_version`"):
            daemon.registry.register(
                "fresh", model.onnx, refused, actor="alice", regulated=regulated
            )
        with pytest.raises(NotFoundError):
            daemon.store.get_model("fresh")
        assert daemon.store.list_models() == []
        assert _audit(daemon.store) == []
        # the name is free: a first version with other feature names takes it
        renamed = tuple(f"f{i}" for i in range(len(model.metadata.feature_names)))
        other = dataclasses.replace(model.metadata, feature_names=renamed)
        row = daemon.registry.register("fresh", model.onnx, other, actor="bob")
        stored = daemon.store.get_model("fresh")
        assert (row.version, stored.feature_names, stored.regulated) == (1, renamed, False)
    finally:
        daemon.close()


def _refusals(trained: list[ExampleModel]) -> dict[str, tuple[type[Exception], dict[str, Any]]]:
    """Refusals the store makes under the model's lock, after the candidate check: the
    error and the keyword arguments of ``register`` that bring it about (on a model
    whose version 1, of study ``s1``, is its champion)."""
    metadata = trained[1].metadata
    return {
        "parent_version": (
            InvalidValueError,
            {"metadata": dataclasses.replace(metadata, parent_version=7)},
        ),
        "champion_exists": (ConflictError, {"metadata": metadata, "stage": "champion"}),
        "study_registered": (
            ConflictError,
            {
                "metadata": dataclasses.replace(metadata, study="s1"),
                "once_per_study": True,
            },
        ),
    }


@pytest.mark.parametrize("refusal", ["parent_version", "champion_exists", "study_registered"])
def test_a_refused_registration_asking_for_regulation_leaves_the_model_unregulated(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, refusal: str
) -> None:
    """`regulated: true` in a refused request regulated the model for good (regulation
    only tightens), with an audit entry for a change nobody's registration made."""
    daemon = _daemon(tmp_path, store_url)
    try:
        first = dataclasses.replace(trained[0].metadata, study="s1")
        daemon.registry.register("loans", trained[0].onnx, first, actor="t", stage="champion")
        before = (daemon.store.get_model("loans"), daemon.store.list_versions("loans"))
        audit_before = _audit(daemon.store)
        error, kwargs = _refusals(trained)[refusal]
        with pytest.raises(error) as info:
            daemon.registry.register(
                "loans", trained[1].onnx, actor="alice", regulated=True, **kwargs
            )
        if refusal != "parent_version":
            assert getattr(info.value, "code", None) == refusal
        assert daemon.store.get_model("loans").regulated is False
        assert (daemon.store.get_model("loans"), daemon.store.list_versions("loans")) == before
        assert daemon.store.audit_log(action="regulate_model") == []
        assert _audit(daemon.store) == audit_before
        assert daemon.store.verify_audit() is None
    finally:
        daemon.close()


def test_a_refused_registration_over_http_stores_no_model(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """The reviewer's reproduction: 400 invalid_value, then GET showed the model (with
    versions 0), regulated."""
    daemon, tokens = make_daemon(tmp_path / "data", trained, store_url=store_url)
    try:
        with BackgroundServer(daemon.app) as server:
            body = {
                "onnx_base64": base64.b64encode(trained[0].onnx).decode(),
                "task": "binary",
                "feature_names": list(trained[0].metadata.feature_names),
                "parent_version": 1,
                "regulated": True,
            }
            operator = {"Authorization": f"Bearer {tokens['operator']}"}
            viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
            with httpx.Client(base_url=server.url, timeout=60) as client:
                r = client.post("/v1/models/fresh/versions", json=body, headers=operator)
                assert r.status_code == 400, r.text
                assert r.json()["code"] == "invalid_value"
                assert client.get("/v1/models/fresh", headers=viewer).status_code == 404
        assert daemon.store.audit_log(model="fresh") == []
    finally:
        daemon.close()


def test_a_registration_regulating_an_existing_model_still_records_both(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon = _daemon(tmp_path, store_url)
    try:
        daemon.registry.register("loans", trained[0].onnx, trained[0].metadata, actor="t")
        row = daemon.registry.register(
            "loans", trained[1].onnx, trained[1].metadata, actor="alice", regulated=True
        )
        assert (row.version, row.stage) == (2, "shadow")
        assert daemon.store.get_model("loans").regulated is True
        assert _audit(daemon.store) == [
            ("register_version", "loans/v1", "t"),
            ("regulate_model", "loans", "alice"),
            ("register_version", "loans/v2", "alice"),
        ]
        [entry] = daemon.store.audit_log(action="regulate_model")
        assert entry.details == {
            "regulated": True,
            "reason": "a registration asked for regulated=true",
        }
        assert daemon.store.verify_audit() is None
    finally:
        daemon.close()


def test_a_new_model_registered_regulated_is_created_so_with_its_version(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    daemon = _daemon(tmp_path, store_url)
    try:
        model = trained[0]
        row = daemon.registry.register(
            "bank", model.onnx, model.metadata, actor="alice", regulated=True
        )
        stored = daemon.store.get_model("bank")
        assert (stored.task, stored.feature_names, stored.regulated) == (
            "binary",
            model.metadata.feature_names,
            True,
        )
        assert [v.version for v in daemon.store.list_versions("bank")] == [row.version] == [1]
        # created regulated, and audited so: the registration's entry does not say it, and
        # the audit log could not tell when, why or by whom the model became regulated
        assert _audit(daemon.store) == [
            ("regulate_model", "bank", "alice"),
            ("register_version", "bank/v1", "alice"),
        ]
        [entry] = daemon.store.audit_log(action="regulate_model")
        assert entry.details == {
            "regulated": True,
            "reason": "a registration asked for regulated=true",
        }
    finally:
        daemon.close()


def _run_threads(n: int, target: Callable[[int], None]) -> None:
    barrier = threading.Barrier(n, timeout=60)

    def run(i: int) -> None:
        barrier.wait()
        target(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_first_registrations_as_champion_give_exactly_one(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """Four registrations of a new model as its champion at once (each of its own
    dataset: the same version four times is a retry, ``version_exists``): one creates the
    model and its champion, the others find both (``champion_exists``) and store nothing."""
    daemon = _daemon(tmp_path, store_url)
    try:
        model = trained[0]
        inspected = daemon.registry.check("race", model.onnx, model.metadata)
        outcomes: list[object] = []
        lock = threading.Lock()

        def register(i: int) -> None:
            try:
                row: object = daemon.registry.register(
                    "race",
                    model.onnx,
                    dataclasses.replace(model.metadata, dataset_version=f"ds-{i}"),
                    actor=f"worker{i}",
                    stage="champion",
                    inspected=inspected,
                )
            except ConflictError as exc:
                row = exc.code
            with lock:
                outcomes.append(row)

        _run_threads(4, register)
        assert len(outcomes) == 4
        assert sorted(o for o in outcomes if isinstance(o, str)) == ["champion_exists"] * 3
        champion = daemon.store.champion("race")
        assert champion is not None and champion.version == 1
        assert [v.version for v in daemon.store.list_versions("race")] == [1]
        assert [m.name for m in daemon.store.list_models()] == ["race"]
        assert [a for a, _, _ in _audit(daemon.store)] == ["register_version"]
        assert daemon.store.verify_audit() is None
    finally:
        daemon.close()


def test_a_registration_unregulating_a_model_regulated_meanwhile_is_refused(
    trained: list[ExampleModel],
    tmp_path: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two registrations of a new version of an unregulated model, one asking for
    ``regulated: true``, the other for ``false``: the second checked the flag before the
    first regulated the model, and its version was added though the model was regulated
    by then (201, as if it had come first). Held at the store's write, it finds the model
    regulated under its lock: ``regulated_mismatch``, nothing stored."""
    daemon = _daemon(tmp_path, store_url)
    try:
        daemon.registry.register("loans", trained[0].onnx, trained[0].metadata, actor="t")
        model = trained[1]
        inspected = daemon.registry.check("loans", model.onnx, model.metadata)
        outcome: list[object] = []

        def unregulated() -> None:
            try:
                outcome.append(
                    daemon.registry.register(
                        "loans",
                        model.onnx,
                        model.metadata,
                        actor="bob",
                        regulated=False,
                        inspected=inspected,
                    )
                )
            except ConflictError as exc:
                outcome.append(exc)

        with holding(monkeypatch, daemon.store, "register_version", 1) as held:
            thread = threading.Thread(target=unregulated)
            thread.start()
            assert held.entered.acquire(timeout=60), "the registration never reached the store"
            # checked, not yet written: another registration regulates the model first
            row = daemon.registry.register(
                "loans", model.onnx, model.metadata, actor="alice", regulated=True
            )
            held.release.set()
            thread.join()
        [refused] = outcome
        assert isinstance(refused, ConflictError), refused
        assert refused.code == "regulated_mismatch"
        assert daemon.store.get_model("loans").regulated is True
        assert [v.version for v in daemon.store.list_versions("loans")] == [1, row.version]
        assert _audit(daemon.store) == [
            ("register_version", "loans/v1", "t"),
            ("regulate_model", "loans", "alice"),
            ("register_version", "loans/v2", "alice"),
        ]
        assert daemon.store.verify_audit() is None
    finally:
        daemon.close()
