"""A page of models with their line-ups (``model_page``), on SQLite and PostgreSQL: the
models after a name, ascending by name compared code point by code point on both
backends, each with its champion's and shadows' numbers and its count of versions, all
read in one statement however many models the page holds.

``GET /v1/models`` read every model, then each model's row again and its line-up: two
statements a model (3,000 models, 6,001 statements, 2.7 s)."""

from __future__ import annotations

import pytest

from tests.tunewatch.store_reads import reads
from tunewatch._errors import InvalidValueError
from tunewatch.store import MAX_MODEL_NAME, Store

SHA = "ab" * 32
# "Beta" before "alpha" (code points; en-US collation puts it after), "é" after "z"
NAMES = ["Beta", "alpha", "b", "m", "z", "é"]


def _add(store: Store, model: str, stage: str) -> int:
    return store.add_version(
        model=model,
        artefact_sha256=SHA,
        hyperparameters={"C": 1.0},
        size_bytes=100,
        actor="alice",
        details={"folds": [0.8] * 40},
        stage=stage,  # type: ignore[arg-type]
    ).version


@pytest.fixture
def models(store: Store) -> Store:
    """``NAMES``, registered out of order: ``alpha`` with a champion, two shadows and a
    retired version, ``m`` with a retired version only, ``z`` with a shadow, the rest
    with none."""
    for name in reversed(NAMES):
        store.ensure_model(name=name, task="binary", feature_names=["a", "b"])
    _add(store, "alpha", "retired")
    _add(store, "alpha", "shadow")
    _add(store, "alpha", "champion")
    _add(store, "alpha", "shadow")
    _add(store, "m", "retired")
    _add(store, "z", "shadow")
    return store


def _shown(store: Store, limit: int, after: str | None = None) -> list[tuple[object, ...]]:
    return [
        (s.model.name, s.lineup.champion, s.lineup.challengers, s.lineup.total)
        for s in store.model_page(limit=limit, after=after)
    ]


def test_model_page_lists_models_after_the_cursor_with_their_lineups(models: Store) -> None:
    assert _shown(models, 100) == [
        ("Beta", None, (), 0),
        ("alpha", 3, (2, 4), 4),
        ("b", None, (), 0),
        ("m", None, (), 1),
        ("z", None, (1,), 1),
        ("é", None, (), 0),
    ]
    assert [n for n, *_ in _shown(models, 2)] == ["Beta", "alpha"]
    assert [n for n, *_ in _shown(models, 2, after="alpha")] == ["b", "m"]
    assert [n for n, *_ in _shown(models, 2, after="m")] == ["z", "é"]
    assert _shown(models, 2, after="é") == []
    # a cursor naming no model is a place in the order all the same
    assert [n for n, *_ in _shown(models, 100, after="a")] == ["alpha", "b", "m", "z", "é"]


def test_model_page_rows_are_the_models_and_lineups_read_one_by_one(models: Store) -> None:
    for summary in models.model_page(limit=100):
        assert summary.model == models.get_model(summary.model.name)
        assert summary.lineup == models.version_lineup(summary.model.name)


def test_model_page_reads_one_statement_and_no_version_whole(models: Store) -> None:
    for i in range(40):
        models.ensure_model(name=f"n{i:02}", task="regression", feature_names=["x"])
        _add(models, f"n{i:02}", "champion")
    page, read = reads(models, lambda: models.model_page(limit=30))
    assert len(page) == 30
    assert read.statements == (2 if models.dialect == "sqlite" else 1)  # and SQLite's BEGIN
    assert read.details == 0
    # a row per served version, or one for a model serving none: Beta, alpha's three,
    # b, m and n00..n25's champions
    assert read.rows == 30 + 2


@pytest.mark.parametrize(
    "after", ["", "a\x00b", "x" * (MAX_MODEL_NAME + 1)], ids=["empty", "nul", "too_long"]
)
def test_model_page_refuses_a_cursor_no_model_could_be_named(store: Store, after: str) -> None:
    rule = f"`after` must be 1 to {MAX_MODEL_NAME} printable characters"
    with pytest.raises(InvalidValueError, match=rule):
        store.model_page(limit=10, after=after)
