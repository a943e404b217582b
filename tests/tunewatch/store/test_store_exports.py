"""The package's public face: ``__all__`` lists exactly the public names it defines."""

from __future__ import annotations

import tunewatch.store as store_pkg


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name for name in vars(store_pkg) if not name.startswith("_") and name != "annotations"
    }
    assert set(store_pkg.__all__) == public
    assert sorted(store_pkg.__all__) == store_pkg.__all__
