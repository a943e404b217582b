"""The A/B page names a rollback watch's versions by their roles: the watch stores the
promoted (current) champion in the challenger slot and the champion it replaced in the
champion slot, and the page used to label them "challenger" and "champion" the other way
round from what an operator sees on the model page."""

from __future__ import annotations

import re

import httpx

from tests.dashboard.scenario import Served, session_cookie
from tunewatch.store._comparison_rows import ComparisonTestRow, TestKind
from tunewatch.store._comparisons import ComparisonStore


def _ab_page(served: Served) -> str:
    r = httpx.get(
        f"{served.url}/dashboard/models/{served.model}/ab",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.text


def _section(page: str, test_id: int) -> str:
    found = re.search(rf'<section class="comparison" data-test="{test_id}".*?</section>', page)
    assert found is not None, f"no section for test #{test_id}"
    return found.group(0)


def _only(served: Served, kind: TestKind) -> ComparisonTestRow:
    tests = ComparisonStore(served.daemon.store).list_tests(served.model, kind=kind)
    assert tests, f"the demo left no {kind} test"
    return max(tests, key=lambda t: t.id)


def test_a_rollback_watch_is_headed_by_the_promoted_and_the_replaced_champion(
    served: Served,
) -> None:
    watch = _only(served, "rollback_watch")  # the demo's, of its own promotion
    champion = served.daemon.store.champion(served.model)
    assert champion is not None and champion.version == watch.challenger_version
    section = _section(_ab_page(served), watch.id)
    promoted, replaced = watch.challenger_version, watch.champion_version
    assert (
        f"<h2>Test #{watch.id} (rollback watch): v{promoted} (promoted champion) vs "
        f"v{replaced} (replaced champion)</h2>"
    ) in section
    assert 'data-kind="rollback_watch"' in section
    assert "(challenger)" not in section
    assert (
        f"estimate is v{promoted} (promoted) minus v{replaced} (replaced): a loss "
        f"difference, below zero favours the promoted champion, above zero the replaced one "
        f"(a decision there rolls back to v{replaced})"
    ) in section


def test_a_challenger_test_keeps_its_challenger_and_champion_heading(served: Served) -> None:
    test = _only(served, "paired")  # the scenario's seeded sequential test
    section = _section(_ab_page(served), test.id)
    assert (
        f"<h2>Test #{test.id}: v{test.challenger_version} (challenger) vs "
        f"v{test.champion_version} (champion)</h2>"
    ) in section
    assert 'data-kind="paired"' in section
    assert "estimate is challenger minus champion" in section
