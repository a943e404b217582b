"""The safe-range rule applies whichever process promotes: the daemon stores each
configured model's safe ranges when it starts (its config's ``safe_ranges`` and its search
space's ``safe:`` bounds), and every promotion checks them as well as its own config's.

A ``tunewatch promote`` run with only the store's URL (no config, so the model's defaults)
promoted at once a version the daemon holds for an approver; a replica on an older, wider
config did the same. Both backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tunewatch import _approval_rules as approval_rules
from tunewatch import _governance as governance
from tunewatch._artefacts import ArtefactStore
from tunewatch._config import Config, build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError
from tunewatch._example import ExampleModel
from tunewatch.store import Store

MODEL = "credit"
NARROW_C = {"C": {"low": 0.01, "high": 5}}
#: v2's: outside [0.01, 5], inside the default search space's safe [0.001, 10]
UNSAFE = {"estimator": "logistic", "C": 7.0}
STORED_RULE = "outside safe range (stored by the daemon): C=7.0 not in [0.01, 5.0]"

_NARROW_SPACE = """\
format_version: 1
name: narrow
params:
  estimator:
    type: categorical
    choices: [logistic, gradient_boosting]
    when:
      logistic:
        C: {type: float, low: 1.0e-3, high: 10.0, log: true, safe: [1.0e-3, 5.0]}
      gradient_boosting:
        gb_n_estimators: {type: int, low: 20, high: 80, step: 20}
"""


def _config(tmp_path: Path, store_url: str, name: str, model: dict[str, Any] | None) -> Config:
    raw: dict[str, Any] = {"data_dir": str(tmp_path / name), "store": {"url": store_url}}
    if model is not None:
        raw["models"] = [{"name": MODEL, "task": "binary", **model}]
    return build_config(raw, env={})


def _start_daemon(tmp_path: Path, store_url: str, model: dict[str, Any]) -> None:
    """A daemon whose config sets ``model``'s rules starts (and stores them) and stops."""
    Daemon(_config(tmp_path, store_url, "daemon", model), env={}).close()


@pytest.fixture
def artefacts(tmp_path: Path, trained: list[ExampleModel]) -> ArtefactStore:
    store = ArtefactStore(tmp_path / "artefacts")
    for model in trained:
        store.put(model.onnx)
    return store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()


def _versions(store: Store, trained: list[ExampleModel]) -> None:
    """``credit``: v1 champion (C = 1), v2 in shadow (C = 7)."""
    store.ensure_model(name=MODEL, task="binary", feature_names=["a", "b"])
    for stage, model, params in zip(
        ("champion", "shadow"), trained, ({"estimator": "logistic", "C": 1.0}, UNSAFE), strict=True
    ):
        store.add_version(
            model=MODEL,
            artefact_sha256=hashlib.sha256(model.onnx).hexdigest(),
            hyperparameters=params,
            size_bytes=10,
            actor="ci",
            stage=stage,  # type: ignore[arg-type]
        )


def test_a_promotion_without_the_daemon_s_config_waits_for_the_ranges_it_stored(
    tmp_path: Path,
    store_url: str,
    store: Store,
    artefacts: ArtefactStore,
    trained: list[ExampleModel],
) -> None:
    """`tunewatch promote credit 2` with only the store's URL: its config does not list
    the model, whose defaults let C = 7 in, and the champion changed with no approver."""
    _start_daemon(tmp_path, store_url, {"safe_ranges": NARROW_C})
    _versions(store, trained)
    bare = _config(tmp_path, store_url, "cli", None)
    outcome = governance.promote(
        store, bare, MODEL, 2, actor="alice", reason="via CLI, no config", artefacts=artefacts
    )
    assert outcome.status == "pending_approval"
    assert outcome.approval is not None and list(outcome.approval.rules) == [STORED_RULE]
    assert store.champion(MODEL).version == 1  # type: ignore[union-attr]
    assert [a.version for a in store.list_approvals(model=MODEL, status="pending")] == [2]


def test_a_promotion_under_a_wider_config_waits_for_the_narrower_stored_ranges(
    tmp_path: Path,
    store_url: str,
    store: Store,
    artefacts: ArtefactStore,
    trained: list[ExampleModel],
) -> None:
    """A replica still on the older config (C up to 10) during a rolling change."""
    _start_daemon(tmp_path, store_url, {"safe_ranges": NARROW_C})
    _versions(store, trained)
    wider = _config(
        tmp_path, store_url, "replica", {"safe_ranges": {"C": {"low": 0.01, "high": 10}}}
    )
    outcome = governance.promote(
        store, wider, MODEL, 2, actor="alice", reason="old replica", artefacts=artefacts
    )
    assert outcome.status == "pending_approval"
    assert outcome.approval is not None and list(outcome.approval.rules) == [STORED_RULE]
    assert store.champion(MODEL).version == 1  # type: ignore[union-attr]


def test_a_rule_both_configs_find_is_shown_once_in_the_caller_s_words(
    tmp_path: Path, store_url: str, store: Store, trained: list[ExampleModel]
) -> None:
    _start_daemon(tmp_path, store_url, {"safe_ranges": NARROW_C})
    _versions(store, trained)
    same = _config(tmp_path, store_url, "same", {"safe_ranges": NARROW_C})
    rules = approval_rules.promotion_rules(
        store.get_model(MODEL), store.get_version(MODEL, 2), same
    )
    assert rules == ["outside safe range: C=7.0 not in [0.01, 5.0]"]


def test_the_stored_search_space_bounds_hold_a_promotion_without_the_daemon_s_config(
    tmp_path: Path,
    store_url: str,
    store: Store,
    artefacts: ArtefactStore,
    trained: list[ExampleModel],
) -> None:
    """The daemon's model tunes in a narrower space than the task's default, which a
    process without its config reads instead."""
    space = tmp_path / "narrow.yaml"
    space.write_text(_NARROW_SPACE)
    _start_daemon(tmp_path, store_url, {"tuning": {"search_space": str(space)}})
    _versions(store, trained)
    bare = _config(tmp_path, store_url, "cli", None)
    outcome = governance.promote(
        store, bare, MODEL, 2, actor="alice", reason="no config", artefacts=artefacts
    )
    assert outcome.status == "pending_approval"
    assert outcome.approval is not None and list(outcome.approval.rules) == [
        "outside safe range (stored by the daemon): `C` = 7.0 is outside its safe range "
        "[0.001, 5.0]"
    ]


def test_a_champion_registration_of_a_model_not_yet_registered_reads_the_stored_ranges(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    """The daemon stores the ranges of the models its config lists whether or not they
    are registered yet: the first version, registered as the champion by a process
    without the config, skips promotion and must pass the same gate."""
    _start_daemon(tmp_path, store_url, {"safe_ranges": NARROW_C})
    bare = _config(tmp_path, store_url, "cli", None)
    with pytest.raises(ConflictError) as info:
        approval_rules.check_champion_registration(
            store, bare, MODEL, task="binary", regulated=None, hyperparameters=UNSAFE
        )
    assert info.value.code == "approval_required"
    assert STORED_RULE in info.value.message


def test_a_change_of_the_stored_ranges_is_audited_with_old_and_new_values(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    _start_daemon(tmp_path, store_url, {"safe_ranges": NARROW_C})
    [first] = store.audit_log(limit=10, action="set_safe_ranges")
    assert (first.actor, first.target) == ("tunewatch", MODEL)
    assert first.details["old"] is None
    assert first.details["new"]["safe_ranges"] == {"C": {"low": 0.01, "high": 5.0, "choices": None}}
    assert "config" in first.details["reason"]
    _start_daemon(tmp_path, store_url, {"safe_ranges": NARROW_C})  # unchanged: no entry
    assert len(store.audit_log(limit=10, action="set_safe_ranges")) == 1
    _start_daemon(tmp_path, store_url, {"safe_ranges": {"C": {"low": 0.01, "high": 8}}})
    changed, _ = store.audit_log(limit=10, action="set_safe_ranges")
    assert changed.details["old"] == first.details["new"]
    assert changed.details["new"]["safe_ranges"] == {
        "C": {"low": 0.01, "high": 8.0, "choices": None}
    }
    assert changed.details["new"]["search_space"] == first.details["new"]["search_space"]
    assert store.verify_audit() is None


def test_stored_ranges_this_build_cannot_read_make_a_promotion_wait(
    tmp_path: Path, store_url: str, store: Store, trained: list[ExampleModel]
) -> None:
    """Ranges a newer tunewatch stored are not read as "none stored"."""
    _versions(store, trained)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO promotion_safe_ranges (model, ranges, updated_at) "
                "VALUES (:m, :r, CURRENT_TIMESTAMP)"
            ),
            {"m": MODEL, "r": '{"format_version":2}'},
        )
    bare = _config(tmp_path, store_url, "cli", None)
    [rule] = approval_rules.promotion_rules(
        store.get_model(MODEL), store.get_version(MODEL, 1), bare
    )
    assert rule.startswith(
        "safe ranges not checked (stored by the daemon): stored safe ranges are in format 2"
    )
