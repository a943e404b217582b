"""The one convention for version tags (:mod:`tunewatch._tag_rules`): keys, values, the
reserved prefix and the count per version, each refusal naming the key, rule and value."""

from __future__ import annotations

import pytest

from tunewatch._tag_rules import (
    MAX_KEY_LENGTH,
    MAX_TAGS,
    MAX_VALUE_LENGTH,
    TagRuleError,
    check_count,
    check_key,
    check_tag,
)


@pytest.mark.parametrize(
    "key",
    [
        "ticket",
        "validation",
        "a",
        "9lives",
        "team/risk",
        "data.set-v2_final",
        "a/b.c/d-e",
        "k" * MAX_KEY_LENGTH,
    ],
    ids=[
        "word",
        "longer-word",
        "one-letter",
        "digit-first",
        "slash",
        "punctuation",
        "segments",
        "longest",
    ],
)
def test_keys_of_the_convention_pass(key: str) -> None:
    check_key(key)


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "1 to 64"),
        ("k" * (MAX_KEY_LENGTH + 1), "1 to 64"),
        ("Ticket", "[a-z0-9._/-]"),
        ("tick et", "[a-z0-9._/-]"),
        ("ticket=1", "[a-z0-9._/-]"),
        ("clé", "[a-z0-9._/-]"),
        ("-ticket", "start with a letter or digit"),
        ("/ticket", "start with a letter or digit"),
        ("tunewatch.promoted_by", "reserved"),
        # each part between slashes starts with a letter or digit: a URL's dot segments
        # and empty parts are rewritten by clients and proxies (DELETE …/tags/a/../b
        # deleted tag b, and …/q/../../../2/tags/validation another version's tag)
        ("a/../b", "start with a letter or digit"),
        ("a/./b", "start with a letter or digit"),
        ("a//b", "start with a letter or digit"),
        ("team/risk/", "start with a letter or digit"),
    ],
    ids=[
        "empty",
        "too-long",
        "upper-case",
        "space",
        "equals",
        "accent",
        "leading-dash",
        "leading-slash",
        "reserved-prefix",
        "dot-dot-segment",
        "dot-segment",
        "empty-segment",
        "trailing-slash",
    ],
)
def test_keys_outside_the_convention_are_refused_naming_key_and_rule(key: str, rule: str) -> None:
    with pytest.raises(TagRuleError) as info:
        check_key(key)
    assert info.value.code == "invalid_request" and isinstance(info.value, ValueError)
    assert rule in info.value.message and repr(key[:80]) in info.value.message


@pytest.mark.parametrize(
    "value",
    ["", "RISK-123", "passed ✓", "v" * MAX_VALUE_LENGTH],
    ids=["empty", "ticket", "unicode", "longest"],
)
def test_values_of_the_convention_pass(value: str) -> None:
    check_tag("ticket", value)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("v" * (MAX_VALUE_LENGTH + 1), "0 to 256"),
        ("a\x00b", "printable"),
        ("line\nbreak", "printable"),
        ("tab\there", "printable"),
        ("bidi\u202eoverride", "printable"),
        # invisible characters that str.isprintable() lets through: "passedㅤ" read as
        # "passed" wherever it was shown, and "ㅤ" as an empty value
        ("passed\u3164", "invisible"),
        ("passed\ufe0f", "invisible"),
        ("pa\u034fssed", "invisible"),
        ("\u2800", "invisible"),
        ("\u115fpassed", "invisible"),
    ],
    ids=[
        "too-long",
        "nul",
        "newline",
        "tab",
        "bidi-override",
        "hangul-filler",
        "variation-selector",
        "grapheme-joiner",
        "braille-blank",
        "choseong-filler",
    ],
)
def test_values_outside_the_convention_are_refused_naming_the_key(value: str, rule: str) -> None:
    with pytest.raises(TagRuleError) as info:
        check_tag("ticket", value)
    assert rule in info.value.message and "`ticket`" in info.value.message
    assert repr(value[:80]) in info.value.message


def test_a_version_holds_at_most_fifty_tags() -> None:
    check_count("m", 1, "new", held=MAX_TAGS - 1)
    with pytest.raises(TagRuleError) as info:
        check_count("m", 1, "new", held=MAX_TAGS)
    assert "50" in info.value.message and "'new'" in info.value.message
    assert "m/v1" in info.value.message
