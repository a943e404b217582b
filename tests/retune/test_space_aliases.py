"""A search space's error shows the offending input bounded: a few hundred bytes of
nested YAML aliases (each level ten references to the one before, 10**9 elements if
expanded) took time and memory exponential in their depth while the message was built."""

from __future__ import annotations

import pytest

from retune import SearchSpaceError
from retune.space import parse_search_space, read_yaml

DEPTH = 9


def test_extra_key_holding_nested_aliases_is_refused_with_a_short_message() -> None:
    items = ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, DEPTH)
    ]
    text = "format_version: 1\nname: s\nparams: {}\na: [" + ", ".join(items) + "]\n"
    assert len(text) < 1024
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(read_yaml(text))
    assert info.value.path == "a"
    message = str(info.value)
    assert "Extra inputs are not permitted (input [[1, 1, 1, 1, 1, 1, 1, 1, ...]" in message
    assert len(message) < 2048


def test_a_long_string_in_the_input_is_shown_shortened() -> None:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space({"name": "s", "params": {}, "a": ["x" * 100_000]})
    message = str(info.value)
    assert "xxx...xxx" in message and len(message) < 1024
