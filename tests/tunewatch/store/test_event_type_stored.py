"""``Store.event_type_stored``: whether any event of a type is stored, the check that
lets ``GET /v1/events?type=`` filter on a type an earlier version recorded and this one
no longer does (:mod:`tunewatch._event_types`), on both backends."""

from __future__ import annotations

from tunewatch.store import Store


def test_a_type_with_no_event_is_not_stored(model_store: Store) -> None:
    model_store.add_event(model="m", type="drift_detected", payload={})
    assert not model_store.event_type_stored("legacy_note")
    assert not model_store.event_type_stored("legacy_note", model="m")


def test_a_stored_type_is_found_with_or_without_its_model(model_store: Store) -> None:
    model_store.add_event(model="m", type="legacy_note", payload={"i": 1})
    assert model_store.event_type_stored("legacy_note")
    assert model_store.event_type_stored("legacy_note", model="m")


def test_a_type_stored_for_another_model_is_still_stored(model_store: Store) -> None:
    """Stored is stored: the type filters (an empty page for this model), not a 400."""
    model_store.add_event(model="m", type="legacy_note", payload={})
    model_store.add_event(model=None, type="daemon_note", payload={})
    assert model_store.event_type_stored("legacy_note", model="other")
    assert model_store.event_type_stored("daemon_note", model="m")


def test_a_type_holding_a_nul_is_not_stored(model_store: Store) -> None:
    """No stored type holds one (PostgreSQL refuses one in a query: not asked)."""
    model_store.add_event(model="m", type="legacy_note", payload={})
    assert not model_store.event_type_stored("legacy\x00note")
    assert not model_store.event_type_stored("legacy_note", model="a\x00b")
