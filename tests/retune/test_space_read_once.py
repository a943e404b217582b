"""A search-space file is parsed once per process for as long as its text is unchanged:
a daemon loads its models' spaces for its safe ranges and for every approval rule it
checks, and each load parsed the YAML again (~5 ms of CPU for the shipped space)."""

from __future__ import annotations

from pathlib import Path

import pytest

import retune.space._space as space_module
from retune import SearchSpaceError
from retune.space import load_search_space

SHIPPED = Path(__file__).parents[2] / "configs" / "search_spaces" / "binary_tabular.yaml"


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    read = space_module.read_yaml

    def counted(text: str) -> object:
        reads.append(text)
        return read(text)

    monkeypatch.setattr(space_module, "read_yaml", counted)
    return reads


def test_a_space_whose_text_is_unchanged_is_parsed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SHIPPED.read_text(encoding="utf-8"))
    reads = _counted(monkeypatch)
    first = load_search_space(path)
    assert load_search_space(path) is first
    assert len(reads) == 1


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    text = SHIPPED.read_text(encoding="utf-8")
    path.write_text(text)
    first = load_search_space(path)
    path.write_text(text.replace(f"name: {first.name}", "name: edited", 1))
    assert load_search_space(path).name == "edited"


def test_a_broken_space_is_refused_at_every_load_naming_its_file(tmp_path: Path) -> None:
    for name in ("a.yaml", "a.yaml", "b.yaml"):  # the same text from another file: its name
        (tmp_path / name).write_text("params: [")
        with pytest.raises(SearchSpaceError, match=name):
            load_search_space(tmp_path / name)
