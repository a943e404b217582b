"""A version lookup names what is missing: an unknown model is ``model_not_found`` on
every route, as documented; it answered ``version_not_found`` on the version routes and
a bare ``not_found`` on a comparison's history."""

from __future__ import annotations

import pytest

from tunewatch._errors import NotFoundError
from tunewatch.store import Store


def test_a_version_of_an_unknown_model_is_model_not_found(model_store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        model_store.get_version("nope", 1)
    assert info.value.code == "model_not_found"


def test_an_unknown_version_of_a_model_is_version_not_found(model_store: Store) -> None:
    with pytest.raises(NotFoundError) as info:
        model_store.get_version("m", 99)
    assert info.value.code == "version_not_found"
