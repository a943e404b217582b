from __future__ import annotations

import inspect

import retune


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(retune).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(retune.__all__) == public
    assert len(retune.__all__) == len(set(retune.__all__))
