"""A registration identical to a live version of the model (in shadow or champion) is
refused, nothing changed: the same artefact, hyperparameters record, dataset version,
parent, study and reference. A registration is slow (its candidate runs in a sandboxed
subprocess), so a CI pipeline times out and sends it again: each retry added one more
identical challenger, scored on every request and one more test in the Holm correction.

Runs on both store backends (``store_url``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tunewatch._errors import ConflictError
from tunewatch.store import Store, VersionRow

MODEL = "m"
SHA = "ab" * 32
OTHER_SHA = "cd" * 32
REFERENCE = "ef" * 32


def _register(store: Store, **kw: Any) -> VersionRow:
    """Register a version of model ``m`` as an HTTP or CLI registration does (the model
    added unless it exists, under its lock), ``kw`` overriding the retried request's."""
    fields: dict[str, Any] = {
        "artefact_sha256": SHA,
        "hyperparameters": {"estimator": "logistic", "C": 0.5},
        "dataset_version": "ds-2026-12-07",
        "parent_version": None,
        "study": None,
        "details": {"opset": 17, "reference_sha256": REFERENCE, "reference_rows": 100},
        **kw,
    }
    return store.register_version(
        model=MODEL,
        task="binary",
        feature_names=["a", "b"],
        size_bytes=100,
        actor="ci",
        **fields,
    )


def _numbers(store: Store) -> dict[int, str]:
    return {v.version: v.stage for v in store.list_versions(MODEL)}


def test_a_retried_registration_is_refused_naming_the_live_version(store: Store) -> None:
    first = _register(store)
    audited = len(store.audit_log(1000))
    with pytest.raises(ConflictError) as refused:
        _register(store)
    assert refused.value.code == "version_exists"
    message = refused.value.message
    assert f"model {MODEL!r} version {first.version} (shadow)" in message, message
    assert "retire it first" in message and "a retried registration" in message, message
    assert _numbers(store) == {1: "shadow"}  # nothing changed: no version, no audit entry
    assert len(store.audit_log(1000)) == audited


def test_a_retried_registration_with_hyperparameters_in_another_order_is_refused(
    store: Store,
) -> None:
    _register(store, hyperparameters={"estimator": "logistic", "C": 0.5})
    with pytest.raises(ConflictError, match="version 1"):
        _register(store, hyperparameters={"C": 0.5, "estimator": "logistic"})


def test_a_retried_champion_registration_names_the_champion(store: Store) -> None:
    _register(store, stage="champion")
    with pytest.raises(ConflictError) as refused:
        _register(store, stage="champion")
    assert refused.value.code == "version_exists"  # not `champion_exists`: it is the one
    assert f"model {MODEL!r} version 1 (champion)" in refused.value.message


def test_a_shadow_identical_to_the_champion_is_refused(store: Store) -> None:
    _register(store, stage="champion")
    with pytest.raises(ConflictError, match="version 1 \\(champion\\)"):
        _register(store)
    assert _numbers(store) == {1: "champion"}


@pytest.mark.parametrize(
    "differs",
    [
        pytest.param({"artefact_sha256": OTHER_SHA}, id="artefact"),
        pytest.param(
            {"hyperparameters": {"estimator": "logistic", "C": 1.0}}, id="hyperparameters"
        ),
        pytest.param({"dataset_version": "ds-2026-12-08"}, id="dataset_version"),
        pytest.param({"dataset_version": None}, id="no-dataset_version"),
        pytest.param({"study": "by-hand"}, id="study"),
        pytest.param({"details": {"opset": 17}}, id="no-reference"),
        pytest.param(
            {"details": {"opset": 17, "reference_sha256": "01" * 32, "reference_rows": 100}},
            id="reference",
        ),
    ],
)
def test_a_registration_that_differs_from_the_live_version_is_registered(
    store: Store, differs: dict[str, Any]
) -> None:
    _register(store)
    row = _register(store, **differs)
    assert (row.version, row.stage) == (2, "shadow")


def test_true_is_another_hyperparameter_record_than_one(store: Store) -> None:
    """Compared as the JSON stored, not as Python values (where ``True == 1``)."""
    _register(store, hyperparameters={"estimator": "logistic", "fit_intercept": 1})
    row = _register(store, hyperparameters={"estimator": "logistic", "fit_intercept": True})
    assert row.version == 2


def test_a_registration_under_another_parent_is_registered(store: Store) -> None:
    _register(store, artefact_sha256=OTHER_SHA)  # v1, the parent
    _register(store)  # v2, no parent
    row = _register(store, parent_version=1)
    assert row.version == 3 and row.parent_version == 1


def test_other_details_do_not_make_a_retry_another_version(store: Store) -> None:
    """A caller's free-form details (a CI run's id) are not what the version is."""
    _register(store)
    with pytest.raises(ConflictError) as refused:
        _register(
            store,
            details={
                "opset": 17,
                "reference_sha256": REFERENCE,
                "reference_rows": 100,
                "ci_run": "4812",
            },
        )
    assert refused.value.code == "version_exists"


@pytest.mark.parametrize("stage", ["retired", "rolled_back"])
def test_a_version_out_of_service_does_not_block_registering_it_again(
    store: Store, stage: str
) -> None:
    _register(store)
    store.set_stage(MODEL, 1, stage, actor="alice", reason="out")  # type: ignore[arg-type]
    row = _register(store)
    assert (row.version, row.stage) == (2, "shadow")


def test_a_registration_out_of_service_is_not_refused(store: Store) -> None:
    """A bundle's version its source retired arrives retired: no challenger is added."""
    _register(store)
    row = _register(store, stage="retired")
    assert (row.version, row.stage) == (2, "retired")


def test_a_tuning_study_is_refused_as_registered_not_as_a_duplicate(store: Store) -> None:
    """Workers sharing a job's study each finish with the same winner: the second is
    ``study_registered``, which the worker reads as registered elsewhere."""
    _register(store, study="m-job7-0123abcd", once_per_study=True)
    with pytest.raises(ConflictError) as refused:
        _register(store, study="m-job7-0123abcd", once_per_study=True)
    assert refused.value.code == "study_registered"


def test_another_tuning_job_with_the_same_winner_registers(store: Store) -> None:
    _register(store, study="m-job7-0123abcd", once_per_study=True)
    row = _register(store, study="m-job8-4567cdef", once_per_study=True)
    assert row.version == 2


def _at_once(n: int, target: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """``target`` called from ``n`` threads released together: what each returned or
    raised."""
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        try:
            results.append(target())
        except BaseException as exc:  # collected for the main thread's asserts
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_registrations_sent_at_once_register_one_version(store: Store) -> None:
    _register(store, artefact_sha256=OTHER_SHA)  # the model exists: its row is locked
    results, errors = _at_once(3, lambda: _register(store))
    assert [r.version for r in results] == [2]
    assert [(type(e), getattr(e, "code", None)) for e in errors] == [
        (ConflictError, "version_exists")
    ] * 2
    assert _numbers(store) == {1: "shadow", 2: "shadow"}


def test_first_registrations_of_a_model_sent_at_once_register_one_version(store: Store) -> None:
    results, errors = _at_once(3, lambda: _register(store))
    assert [r.version for r in results] == [1]
    assert {getattr(e, "code", None) for e in errors} == {"version_exists"}
    assert _numbers(store) == {1: "shadow"}
