"""Merge keys (``<<``) in the YAML every tunewatch file is read in. PyYAML 6 keeps one of
two merged mappings' values for a key by the key string's identity, so which one won
depended on CPython's interning: `{<<: [{disabled: false}, {disabled: true}]}` read
`disabled` as true, where the YAML merge spec keeps the first, false."""

from __future__ import annotations

from pathlib import Path

import pytest

from retune import SearchSpaceError
from retune.space import DuplicateKeyError, load_search_space, read_yaml


@pytest.mark.parametrize(
    ("text", "path", "lines"),
    [
        ("auth:\n  <<: {disabled: false}\n  <<: {disabled: true}\n", "auth.disabled", (2, 3)),
        ("auth:\n  <<: [{disabled: false}, {disabled: true}]\n", "auth.disabled", (2, 2)),
        ("server:\n  <<: [{host: 127.0.0.1}, {host: 0.0.0.0}]\n", "server.host", (2, 2)),
        (
            "a: &a {port: 8080}\nb: &b {port: 9090}\nserver: {<<: [*a, *b], host: h}\n",
            "server.port",
            (1, 2),
        ),
        (
            "a: &a {port: 8080}\nb: &b {<<: *a}\nc: &c {port: 9090}\nserver: {<<: [*b, *c]}\n",
            "server.port",
            (1, 3),
        ),
    ],
    ids=["two-merge-keys", "merge-list", "merge-list-long-key", "aliases", "nested-merge"],
)
def test_a_key_two_merged_mappings_give_is_refused_naming_its_path(
    text: str, path: str, lines: tuple[int, int]
) -> None:
    with pytest.raises(DuplicateKeyError) as info:
        read_yaml(text)
    assert info.value.path == path
    assert info.value.detail.startswith(
        f"merged mappings disagree: both give it, at lines {lines[0]} and {lines[1]}"
    )


def test_a_second_merge_key_is_refused_even_when_its_mappings_do_not_overlap() -> None:
    with pytest.raises(DuplicateKeyError) as info:
        read_yaml("auth:\n  <<: {disabled: false}\n  <<: {token: t}\n")
    assert info.value.path == "auth.<<"
    assert "got it at lines 2 and 3" in info.value.detail
    assert "<<: [*a, *b]" in info.value.detail


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("base: &b {host: h, port: 1}\ns: {<<: *b, host: x}\n", {"host": "x", "port": 1}),
        ("a: &a {port: 1}\nb: &b {port: 2}\ns: {<<: [*a, *b], port: 3}\n", {"port": 3}),
        ("a: &a {host: h}\nb: &b {port: 2}\ns: {<<: [*a, *b]}\n", {"host": "h", "port": 2}),
        ("a: &a {port: 1}\ns: {<<: [*a, *a]}\n", {"port": 1}),
        ("a: &a {port: 1}\nb: &b {<<: *a}\ns: {<<: [*a, *b]}\n", {"port": 1}),
    ],
    ids=["overridden", "overlap-overridden", "disjoint", "same-mapping-twice", "diamond"],
)
def test_merges_without_a_disagreement_read_as_the_merge_spec_says(
    text: str, read: dict[str, object]
) -> None:
    """Overriding a merged key in the mapping itself is what merge keys are for; a key
    only one merged value gives (the same mapping merged twice) is not ambiguous."""
    assert read_yaml(text)["s"] == read


def test_a_search_space_s_merged_mappings_that_disagree_are_a_search_space_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "name: s\n"
        "narrow: &narrow {type: float, low: 0.1, high: 1.0}\n"
        "wide: &wide {type: float, low: 0.001, high: 100.0}\n"
        "params:\n"
        "  C: {<<: [*narrow, *wide]}\n"
    )
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(path)
    assert info.value.path == "params.C.type"
