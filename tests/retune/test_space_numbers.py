"""The numbers of a search space: integers a sampler can draw and flags refused as
numbers, each refusal a ``SearchSpaceError`` naming the key path, the rule and the value."""

from __future__ import annotations

import pytest

from retune import SearchSpaceError
from retune.space import FloatParam, parse_search_space, read_yaml

BIG = "1" + "0" * 400


def _load(params: str) -> None:
    parse_search_space(read_yaml(f"name: t\nparams:\n{params}"))


@pytest.mark.parametrize(
    ("declaration", "path"),
    [
        (f"{{type: int, low: 1, high: {BIG}}}", "params.gb_max_depth.high"),
        (f"{{type: int, low: -{BIG}, high: 5}}", "params.gb_max_depth.low"),
        (f"{{type: int, low: 1, high: 5, step: {BIG}}}", "params.gb_max_depth.step"),
        (f"{{type: int, low: 1, high: 5, safe: [1, {BIG}]}}", "params.gb_max_depth.safe.1"),
    ],
    ids=["high", "low", "step", "safe"],
)
def test_an_integer_too_large_to_draw_is_refused_with_its_path(declaration: str, path: str) -> None:
    """A 400-digit bound raised a bare OverflowError (math.isfinite) when the space, or a
    config naming it, loaded."""
    with pytest.raises(SearchSpaceError) as info:
        _load(f"  gb_max_depth: {declaration}\n")
    assert info.value.path == path
    message = str(info.value)
    assert "9007199254740992" in message  # the rule: |n| <= 2**53
    assert "(401 digits)" in message and BIG not in message  # the value, shortened
    assert len(message) < 300


def test_a_numeric_choice_too_large_to_draw_is_refused_with_its_path() -> None:
    with pytest.raises(SearchSpaceError) as info:
        _load(f"  select_k: {{type: categorical, choices: [1, {BIG}]}}\n")
    assert info.value.path == "params.select_k.choices"
    message = str(info.value)
    assert "9007199254740992" in message and "(401 digits)" in message and BIG not in message
    assert len(message) < 300


def test_a_float_bound_past_the_float_range_is_refused_with_the_value_shortened() -> None:
    with pytest.raises(SearchSpaceError) as info:
        _load(f"  C: {{type: float, low: 0.001, high: {BIG}}}\n")
    assert info.value.path == "params.C.high"
    assert "(401 digits)" in str(info.value) and BIG not in str(info.value)


@pytest.mark.parametrize(
    ("declaration", "path"),
    [
        ("gb_max_depth: {type: int, low: true, high: 5}", "params.gb_max_depth.low"),
        ("gb_max_depth: {type: int, low: 1, high: 5, step: true}", "params.gb_max_depth.step"),
        (
            "gb_max_depth: {type: int, low: 1, high: 5, safe: [true, 3]}",
            "params.gb_max_depth.safe.0",
        ),
        ("gb_subsample: {type: float, low: 0.5, high: true}", "params.gb_subsample.high"),
        ("gb_learning_rate: {type: float, low: false, high: 0.5}", "params.gb_learning_rate.low"),
        (
            "gb_subsample: {type: float, low: 0.5, high: 1.0, step: true}",
            "params.gb_subsample.step",
        ),
        (
            "gb_subsample: {type: float, low: 0.5, high: 1.0, safe: [0.6, true]}",
            "params.gb_subsample.safe.1",
        ),
    ],
    ids=[
        "int-low",
        "int-step",
        "int-safe",
        "float-high",
        "float-low",
        "float-step",
        "float-safe",
    ],
)
def test_a_flag_is_not_a_number_of_a_space(declaration: str, path: str) -> None:
    """`low: true` loaded as 1, `safe: [true, 3]` as (1, 3)."""
    with pytest.raises(SearchSpaceError, match="valid integer|not the flag") as info:
        _load(f"  {declaration}\n")
    assert info.value.path == path
    assert "True" in str(info.value) or "False" in str(info.value)


@pytest.mark.parametrize(
    "declaration",
    [
        "gb_max_depth: {type: int, low: 1.0, high: 5}",
        "gb_max_depth: {type: int, low: 1, high: '5'}",
        "gb_max_depth: {type: int, low: 1, high: 5, step: 1.0}",
    ],
    ids=["float-low", "text-high", "float-step"],
)
def test_an_integer_field_takes_integers_only(declaration: str) -> None:
    with pytest.raises(SearchSpaceError, match="valid integer"):
        _load(f"  {declaration}\n")


def test_a_float_field_takes_an_integer_as_a_float() -> None:
    space = parse_search_space(
        read_yaml("name: t\nparams:\n  C: {type: float, low: 1, high: 10, step: 1, safe: [1, 5]}\n")
    )
    c = space.declarations()["C"]
    assert isinstance(c, FloatParam) and c.safe is not None and c.step is not None
    assert (c.low, c.high, c.step, c.safe) == (1.0, 10.0, 1.0, (1.0, 5.0))
    assert all(type(v) is float for v in (c.low, c.high, c.step, *c.safe))


@pytest.mark.parametrize("written", ["1e-3", "+1e-3", "1.0e-3", "0.001"])
def test_a_float_field_takes_an_exponent_the_yaml_reader_keeps_as_text(written: str) -> None:
    """The YAML reader keeps ``1e-3`` as text (as YAML 1.1 does); strict floats refused it,
    so a space that loaded before the upgrade stopped the daemon starting."""
    space = parse_search_space(
        read_yaml(f"name: t\nparams:\n  C: {{type: float, low: {written}, high: 10, log: true}}\n")
    )
    c = space.declarations()["C"]
    assert isinstance(c, FloatParam) and c.low == 0.001
