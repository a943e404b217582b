"""Which version answered a mirror record naming none. With ``scored_at``, the version
that was the model's champion at that time (its promotions and rollbacks, as the store
recorded them); without, the champion being served, unless the champion changed within
the grace (:data:`~tunewatch.api._mirror_time.CHAMPION_CHANGE_GRACE_S`): the record may
have been scored by either, so it is refused (409 ``version_ambiguous``) unless already
recorded. A stack's records buffered across a promotion, scored by v1 and posted without
a version, were stored as v2's answers, and the rollback watch paired v1 with itself."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.api.mirror_records import mirror_record, post_records
from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._example import ExampleModel
from tunewatch.api._mirror_time import ambiguous_since
from tunewatch.store import ChampionHistory


@pytest.fixture
def mirroring(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    with serving(tmp_path, trained, store_url=store_url) as running:
        yield running


def _answered_by(running: Running, rid: str) -> int:
    [answer] = [o for o in running.daemon.store.get_outputs(MODEL, rid) if o.role == "external"]
    return answer.version


def test_a_record_naming_no_version_is_the_champion_of_its_scoring_time(
    mirroring: Running,
) -> None:
    before = post_records(mirroring, mirror_record("buffered"))
    assert before.json()["accepted"] == 1, before.text
    scored_by_v1 = datetime.now(UTC)
    promoted = httpx.post(
        f"{mirroring.url}/v1/models/{MODEL}/versions/2/promote",
        json={"reason": "it won"},
        headers=mirroring.auth("operator"),
    )
    assert promoted.status_code == 200 and promoted.json()["status"] == "promoted", promoted.text
    scored_by_v2 = datetime.now(UTC)
    r = post_records(
        mirroring,
        mirror_record("v1-time", scored_at=scored_by_v1.isoformat()),
        mirror_record("v2-time", scored_at=scored_by_v2.isoformat()),
        # before v1 was registered (a stack onboarding its logs): the first champion's
        mirror_record("onboarding", scored_at=(scored_by_v1 - timedelta(days=1)).isoformat()),
        mirror_record("named", version=1),
        mirror_record("buffered"),  # recorded before the promotion: a replay, not attributed again
    )
    assert r.json() == {"accepted": 4, "duplicates": ["buffered"], "conflicts": []}, r.text
    assert [
        _answered_by(mirroring, rid) for rid in ("v1-time", "v2-time", "onboarding", "named")
    ] == [1, 2, 1, 1]


def test_a_record_naming_neither_version_nor_time_just_after_a_promotion_is_refused(
    mirroring: Running,
) -> None:
    assert (
        post_records(mirroring, mirror_record("early")).json()["accepted"] == 1
    )  # no change yet: v1
    promoted = httpx.post(
        f"{mirroring.url}/v1/models/{MODEL}/versions/2/promote",
        json={"reason": "it won"},
        headers=mirroring.auth("operator"),
    )
    assert promoted.status_code == 200, promoted.text
    r = post_records(mirroring, mirror_record("fine", version=2), mirror_record("unsure"))
    assert r.status_code == 409 and r.json()["code"] == "version_ambiguous", r.text
    error = r.json()["error"]
    assert error.startswith("records[1] names no version"), error
    assert "`version` or `scored_at`" in error and "v1 to v2" in error, error
    assert mirroring.daemon.store.get_request(MODEL, "fine") is None
    assert _answered_by(mirroring, "early") == 1
    refused = mirroring.daemon.runtime.metrics.registry.get_sample_value(
        "tunewatch_mirror_records_total", {"model": MODEL, "outcome": "refused"}
    )
    assert refused == 2


def _history(*changes: tuple[datetime, int], before: int | None = 1) -> ChampionHistory:
    return ChampionHistory(before=before, changes=changes)


NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_the_champion_at_a_time_is_the_last_change_before_it() -> None:
    history = _history((NOW - timedelta(hours=2), 2), (NOW - timedelta(hours=1), 1))
    assert history.at(NOW - timedelta(days=9)) == 1  # before any change: the first champion
    assert history.at(NOW - timedelta(hours=2)) == 2
    assert history.at(NOW - timedelta(minutes=90)) == 2
    assert history.at(NOW) == 1
    assert history.current == 1
    assert _history(before=None).at(NOW) is None  # never had a champion


def test_only_a_champion_change_within_the_grace_makes_a_versionless_record_ambiguous() -> None:
    grace = 300.0
    recent = _history((NOW - timedelta(seconds=grace - 1), 2))
    assert ambiguous_since(recent, NOW, grace) == NOW - timedelta(seconds=grace - 1)
    assert ambiguous_since(_history((NOW - timedelta(seconds=grace), 2)), NOW, grace) is None
    # a first champion registered just now replaced none: nothing was scored by another
    assert ambiguous_since(_history(before=2), NOW, grace) is None
