"""Promotion gates on a real store (SQLite and PostgreSQL): what a promotion decided on
one reading of the model does when the model changes before it lands."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunewatch import _approval_rules as approval_rules
from tunewatch import _governance as governance
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, build_config
from tunewatch._errors import ConflictError
from tunewatch._example import ExampleModel
from tunewatch.store import ModelRow, Store, VersionRow

CONFIG = build_config({}, source="<test>")


@pytest.fixture
def artefacts(tmp_path: Path, trained: list[ExampleModel]) -> ArtefactStore:
    """The artefacts of ``m``'s versions: a promotion reads the one it puts in service."""
    store = ArtefactStore(tmp_path / "artefacts")
    for model in trained:
        store.put(model.onnx)
    return store


@pytest.fixture
def store(store_url: str, artefacts: ArtefactStore, trained: list[ExampleModel]) -> Iterator[Store]:
    """Model ``m``, unregulated: v1 champion, v2 shadow."""
    s = Store.open(store_url)
    s.ensure_model(name="m", task="binary", feature_names=["a", "b"])
    for stage, model in zip(("champion", "shadow"), trained, strict=True):
        s.add_version(
            model="m",
            artefact_sha256=hashlib.sha256(model.onnx).hexdigest(),
            hyperparameters={},
            size_bytes=10,
            actor="ci",
            stage=stage,  # type: ignore[arg-type]
        )
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize(
    "expected_champion", [None, 1], ids=["promoted_by_hand", "promoted_by_the_comparison_loop"]
)
def test_a_model_regulated_while_its_promotion_is_decided_waits_for_an_approver(
    store: Store,
    artefacts: ArtefactStore,
    monkeypatch: pytest.MonkeyPatch,
    expected_champion: int | None,
) -> None:
    """The rules were read outside the store's transaction and the store never read the
    flag again: a model regulated in between (a registration with `regulated: true`, a
    replica starting with a config that regulates it) was promoted with no approver. The
    comparison loop promotes through the same call, with the champion it compared."""
    rules = approval_rules.promotion_rules

    def regulated_meanwhile(model: ModelRow, version: VersionRow, config: Config) -> list[str]:
        found = rules(model, version, config)
        store.regulate_model("m", actor="bob", reason="a replica's config regulates it")
        return found

    monkeypatch.setattr(governance, "promotion_rules", regulated_meanwhile)
    outcome = governance.promote(
        store,
        CONFIG,
        "m",
        2,
        actor="alice",
        reason="it won",
        expected_champion=expected_champion,
        artefacts=artefacts,
    )
    assert outcome.status == "pending_approval" and outcome.champion is None
    assert outcome.approval is not None
    assert (outcome.approval.requested_by, outcome.approval.reason) == ("alice", "it won")
    assert outcome.approval.rules == ("regulated model",)
    assert store.champion("m").version == 1  # type: ignore[union-attr]
    assert store.audit_log(limit=10, action="promote") == []
    decided, promoted = store.decide_approval(
        outcome.approval.id, approver="carol", approve=True, reason="checked"
    )
    assert decided.status == "approved" and promoted is not None
    assert store.champion("m").version == 2  # type: ignore[union-attr]
    assert store.verify_audit() is None


@pytest.mark.parametrize(
    ("hyperparameters", "rule"),
    [
        ({"C": 1000.0}, "outside safe range: `C` = 1000.0 is outside its safe range [0.001, 10.0]"),
        (
            {"estimator": "logistic", "model__C": 1000.0},
            "safe ranges not checked: unknown pipeline parameter(s) ['model__C']",
        ),
        (
            {"estimator": "gradient_boosting", "model__max_depth": 50},
            "safe ranges not checked: unknown pipeline parameter(s) ['model__max_depth']",
        ),
    ],
    ids=["C-without-its-estimator", "sklearn-style-C", "sklearn-style-max-depth"],
)
def test_hyperparameters_the_safe_ranges_did_not_read_make_a_promotion_wait(
    store: Store,
    artefacts: ArtefactStore,
    trained: list[ExampleModel],
    hyperparameters: dict[str, object],
    rule: str,
) -> None:
    """The default space (binary_tabular.yaml) bounds C to [0.001, 10]: `{'C': 1000.0}`
    builds LogisticRegression(C=1000) (the default estimator), and the gate, which skipped
    C without its `estimator` and skipped names it did not know, promoted it at once."""
    row = store.add_version(
        model="m",
        artefact_sha256=hashlib.sha256(trained[0].onnx).hexdigest(),
        hyperparameters=hyperparameters,
        size_bytes=10,
        actor="ci",
    )
    outcome = governance.promote(
        store, CONFIG, "m", row.version, actor="alice", reason="it won", artefacts=artefacts
    )
    assert outcome.status == "pending_approval" and outcome.approval is not None
    assert len(outcome.approval.rules) == 1 and outcome.approval.rules[0].startswith(rule)
    assert store.champion("m").version == 1  # type: ignore[union-attr]
    with pytest.raises(ConflictError) as info:
        approval_rules.check_champion_registration(
            store, CONFIG, "n", task="binary", regulated=None, hyperparameters=hyperparameters
        )
    assert info.value.code == "approval_required"


@pytest.mark.parametrize(
    "hyperparameters", [{}, {"alpha": 0.5}], ids=["nothing-recorded", "ridge-alpha-only"]
)
def test_a_regression_model_registered_by_hand_without_an_estimator_needs_no_approver(
    store: Store, hyperparameters: dict[str, object]
) -> None:
    """Read at the pipeline's defaults, a regression version recording no estimator was
    the default ``logistic`` one, never a safe regression choice: `register --stage
    champion` of a first regression model was refused (``approval_required``)."""
    approval_rules.check_champion_registration(
        store, CONFIG, "prices", task="regression", regulated=None, hyperparameters=hyperparameters
    )
