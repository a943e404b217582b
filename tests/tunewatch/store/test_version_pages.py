"""Bounded reads of a model's versions, on SQLite and PostgreSQL: a page of them newest
first before a version number (``version_page``), and the model's champion, shadows and
version count without reading any version whole (``version_lineup``).

``list_versions`` read every version with its details: ``GET /v1/models/{m}/versions``
answered all 2,003 of a model (8.3 MB, 4 s) and ``GET /v1/models`` read them all to
count them."""

from __future__ import annotations

from typing import Any

from tunewatch.store import Store, VersionRow

DETAILS = {"fold_scores": [0.2, 0.3, 0.25], "warm_start_plan": {"trials": list(range(20))}}


def _add(store: Store, i: int, **kw: Any) -> VersionRow:
    return store.add_version(
        model="m",
        artefact_sha256="ab" * 32,
        hyperparameters={"C": float(i)},
        size_bytes=100,
        actor="alice",
        details=DETAILS,
        **kw,
    )


def test_version_page_lists_the_newest_first_before_the_cursor(model_store: Store) -> None:
    assert model_store.version_page("m", limit=5) == []
    for i in range(12):
        _add(model_store, i, stage="retired")
    every = list(reversed(model_store.list_versions("m")))

    assert model_store.version_page("m", limit=5) == every[:5]  # whole rows, v12..v8
    assert [v.version for v in model_store.version_page("m", limit=5, before=8)] == [7, 6, 5, 4, 3]
    assert [v.version for v in model_store.version_page("m", limit=5, before=3)] == [2, 1]
    assert model_store.version_page("m", limit=5, before=1) == []
    assert model_store.version_page("m", limit=100) == every
    assert model_store.version_page("m", limit=100, before=99) == every  # past the newest
    assert model_store.version_page("other", limit=5) == []


def test_version_lineup_names_the_champion_and_shadows_and_counts_every_version(
    model_store: Store,
) -> None:
    lineup = model_store.version_lineup("m")
    assert (lineup.champion, lineup.challengers, lineup.total) == (None, (), 0)

    _add(model_store, 0, stage="retired")
    _add(model_store, 1)  # shadow
    lineup = model_store.version_lineup("m")
    assert (lineup.champion, lineup.challengers, lineup.total) == (None, (2,), 2)

    _add(model_store, 2, stage="champion")
    _add(model_store, 3)
    _add(model_store, 4, stage="retired")
    _add(model_store, 5)
    model_store.set_stage("m", 4, "retired", actor="alice", reason="lost")
    lineup = model_store.version_lineup("m")
    assert (lineup.champion, lineup.challengers, lineup.total) == (3, (2, 6), 6)

    model_store.promote("m", 6, actor="alice", reason="won")  # v3 is replaced
    every = model_store.list_versions("m")
    lineup = model_store.version_lineup("m")
    assert lineup.champion == next(v.version for v in every if v.stage == "champion") == 6
    assert lineup.challengers == tuple(v.version for v in every if v.stage == "shadow")
    assert lineup.total == len(every)
    other = model_store.version_lineup("other")
    assert (other.champion, other.challengers, other.total) == (None, (), 0)
