"""Values the database cannot hold are a caller's error (400), not a store failure (500),
and both backends agree on them."""

from __future__ import annotations

import pytest

from tunewatch._errors import NotFoundError
from tunewatch.store import Store


@pytest.mark.parametrize("name", ["a\x00b", "x" * 201, ""])
def test_a_model_name_the_store_cannot_hold_is_refused_as_a_value_error(
    model_store: Store, name: str
) -> None:
    with pytest.raises(ValueError):
        model_store.ensure_model(name=name, task="binary", feature_names=["a"])


@pytest.mark.parametrize("name", ["a\x00b", "x" * 5000])
def test_looking_up_an_impossible_name_finds_nothing_or_is_a_value_error(
    model_store: Store, name: str
) -> None:
    with pytest.raises((NotFoundError, ValueError)):
        model_store.get_model(name)
