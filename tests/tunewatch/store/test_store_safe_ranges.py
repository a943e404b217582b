"""The promotion safe ranges a daemon stores from its config (``promotion_safe_ranges``):
kept by model name, read back with the model's row, written and audited only when they
change, and never read as "none" when this build cannot read them. Both backends."""

from __future__ import annotations

import sqlalchemy as sa

from tunewatch.store import SafeBound, Store, StoredSafeRanges

RANGES = StoredSafeRanges(
    safe_ranges={"C": SafeBound(low=0.01, high=5.0), "class_weight": SafeBound(choices=("x",))},
    search_space={"C": SafeBound(low=0.001, high=10.0), "flag": SafeBound(choices=(True, 1))},
)


def _write_raw(store: Store, model: str, text: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO promotion_safe_ranges (model, ranges, updated_at) "
                "VALUES (:m, :r, CURRENT_TIMESTAMP)"
            ),
            {"m": model, "r": text},
        )


def test_ranges_stored_before_the_model_registers_read_back_with_its_row(store: Store) -> None:
    assert store.stored_safe_ranges("m") is None
    assert store.set_safe_ranges("m", RANGES, actor="tunewatch", reason="config")
    assert store.stored_safe_ranges("m") == RANGES
    store.ensure_model(name="m", task="binary", feature_names=["a"])
    store.ensure_model(name="other", task="binary", feature_names=["a"])
    assert store.get_model("m").stored_safe_ranges == RANGES
    assert store.get_model("other").stored_safe_ranges is None
    assert {m.name: m.stored_safe_ranges for m in store.list_models()} == {
        "m": RANGES,
        "other": None,
    }
    assert [lineup.model.stored_safe_ranges for lineup in store.lineups()] == [RANGES, None]
    # a flag stays a flag, a number a number
    stored = store.get_model("m").stored_safe_ranges
    assert stored is not None
    assert [type(c) for c in stored.search_space["flag"].choices or ()] == [bool, int]


def test_ranges_stored_as_before_are_neither_written_nor_audited_again(store: Store) -> None:
    assert store.set_safe_ranges("m", RANGES, actor="tunewatch", reason="config")
    assert not store.set_safe_ranges("m", RANGES, actor="tunewatch", reason="config")
    narrower = StoredSafeRanges(safe_ranges={"C": SafeBound(low=0.01, high=2.0)})
    assert store.set_safe_ranges("m", narrower, actor="tunewatch", reason="config changed")
    changed, first = store.audit_log(limit=10, action="set_safe_ranges")
    assert (first.target, first.details["old"]) == ("m", None)
    assert changed.details["old"] == first.details["new"]
    assert changed.details["new"]["safe_ranges"] == {
        "C": {"low": 0.01, "high": 2.0, "choices": None}
    }
    assert changed.details["reason"] == "config changed"
    assert store.stored_safe_ranges("m") == narrower
    assert store.verify_audit() is None


def test_ranges_in_a_newer_format_read_as_unreadable_not_as_none(store: Store) -> None:
    _write_raw(store, "m", '{"format_version":2,"ranges":{}}')
    stored = store.stored_safe_ranges("m")
    assert stored is not None and stored.unreadable is not None
    assert "format 2" in stored.unreadable and "newer" in stored.unreadable


def test_damaged_ranges_read_as_unreadable_and_a_daemon_s_write_replaces_them(
    store: Store,
) -> None:
    _write_raw(store, "m", '{"format_version":1,"safe_ranges":{"C":{"low":"x"}}}')
    stored = store.stored_safe_ranges("m")
    assert stored is not None and stored.unreadable is not None
    assert stored.unreadable.startswith("stored safe ranges are damaged")
    assert store.set_safe_ranges("m", RANGES, actor="tunewatch", reason="config")
    [entry] = store.audit_log(limit=10, action="set_safe_ranges")
    assert entry.details["old"] == {"format_version": 1, "safe_ranges": {"C": {"low": "x"}}}
    assert store.stored_safe_ranges("m") == RANGES
