"""The events page's audit filters stay bounded however many tuning jobs the log holds:
every job is audited under an actor of its own (``job:<id>``), and the actor filter
listed one chip per job (1,809 chips, 224 KB of a 285 KB page, after 1,800 jobs). The
jobs are one chip, ``job:*``, which filters by every job's entries; each list holds the
most recent values up to a cap, plus the one selected; and the values come from the
newest entries of the log, not from a scan of all of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.dashboard.test_long_histories import Served, _serve
from tunewatch.store import Store
from tunewatch.store._audit import (
    FACET_LIMIT,
    JOB_ACTORS,
    append_audit_in,
    audit_facets,
)

MODEL = "busy"
JOBS = 1000
PEOPLE = 30  # more than the cap on their own


def _append(store: Store, entries: list[tuple[str, str, str]]) -> None:
    """Append (actor, action, target) entries to the hash chain in one transaction."""
    with store.engine.begin() as conn:
        for actor, action, target in entries:
            append_audit_in(conn, actor=actor, action=action, target=target, details={})


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Model ``busy``: ``PEOPLE`` people's stage changes, then ``JOBS`` tuning jobs'
    registrations, each under its own actor."""
    with _serve(tmp_path_factory.mktemp("busy-audit")) as running:
        running.store.ensure_model(name=MODEL, task="binary", feature_names=["a"])
        people = [(f"ops-{i:02d}", "set_stage", f"{MODEL}/v{i + 1}") for i in range(PEOPLE)]
        jobs = [(f"job:{i}", "register_version", f"{MODEL}/v{i + 1}") for i in range(JOBS)]
        _append(running.store, people + jobs)
        yield running


def _actor_chips(page: str) -> list[str]:
    group = re.search(r'<p class="chips" data-filter-group="actor">.*?</p>', page, re.S)
    assert group is not None, "no actor filter on the page"
    return re.findall(r'data-value="([^"]*)"', group.group(0))


def test_the_events_page_lists_at_most_the_cap_of_actors_with_every_job_as_one(
    busy: Served,
) -> None:
    body = busy.get(f"/v1/dashboard/models/{MODEL}/events").json()
    actors = body["audit_actors"]
    assert len(actors) <= FACET_LIMIT
    assert JOB_ACTORS in actors
    assert not [a for a in actors if a.startswith("job:") and a != JOB_ACTORS]
    assert "ops-29" in actors  # the most recent people's
    assert body["audit_actions"] == ["register_version", "set_stage"]
    chips = _actor_chips(busy.page(f"/dashboard/models/{MODEL}/events").text)
    assert len(chips) <= FACET_LIMIT and JOB_ACTORS in chips


def test_the_job_chip_filters_the_audit_log_by_every_job_s_entries(busy: Served) -> None:
    page = busy.page(f"/dashboard/models/{MODEL}/events").text
    (href,) = re.findall(r'<a href="([^"]*)"[^>]*data-value="job:\*"', page)
    query = parse_qs(urlsplit(href.replace("&amp;", "&")).query)
    assert query == {"actor": [JOB_ACTORS]}

    filtered = busy.page(urlsplit(href).path, actor=JOB_ACTORS, limit="1000").text
    listed = re.findall(r"<tr><td>\d+</td><td>[^<]*</td><td>([^<]*)</td>", filtered)
    assert sorted(listed) == sorted(f"job:{i}" for i in range(JOBS))
    assert 'class="current" data-filter="actor" data-value="job:*"' in filtered

    body = busy.get(f"/v1/dashboard/models/{MODEL}/events", actor=JOB_ACTORS, limit="1000").json()
    assert len(body["audit"]) == JOBS
    assert {a["action"] for a in body["audit"]} == {"register_version"}
    one = busy.get(f"/v1/dashboard/models/{MODEL}/events", actor="job:7").json()
    assert [a["actor"] for a in one["audit"]] == ["job:7"]  # one job's, as before


def test_a_selected_actor_or_action_the_lists_leave_out_is_still_listed(busy: Served) -> None:
    body = busy.get(f"/v1/dashboard/models/{MODEL}/events", actor="ops-00").json()
    assert "ops-00" in body["audit_actors"] and len(body["audit_actors"]) <= FACET_LIMIT + 1
    assert [a["actor"] for a in body["audit"]] == ["ops-00"]
    chips = _actor_chips(busy.page(f"/dashboard/models/{MODEL}/events", actor="ops-00").text)
    assert "ops-00" in chips
    body = busy.get(f"/v1/dashboard/models/{MODEL}/events", action="rollback").json()
    assert "rollback" in body["audit_actions"] and body["audit"] == []


# -- the store, on both backends ------------------------------------------------------------


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()


def test_job_actors_are_one_value_of_the_facets_and_one_filter(store: Store) -> None:
    store.ensure_model(name="m", task="binary", feature_names=["a"])
    entries = [("alice", "set_stage", "m/v1"), ("jobs-bot", "set_stage", "m/v1")]
    entries += [(f"job:{i}", "register_version", f"m/v{i + 1}") for i in range(40)]
    entries += [("job:99", "register_version", "other/v1")]  # another model's job
    _append(store, entries)

    assert store.audit_facets("m") == (
        ["register_version", "set_stage"],
        ["alice", JOB_ACTORS, "jobs-bot"],
    )
    found = store.audit_log(100, model="m", actor=JOB_ACTORS)
    assert sorted(a.actor for a in found) == sorted(f"job:{i}" for i in range(40))
    assert {a.actor for a in store.audit_log(100, actor=JOB_ACTORS)} >= {"job:99"}
    assert [a.actor for a in store.audit_log(100, model="m", actor="job:3")] == ["job:3"]
    assert store.audit_log(100, model="m", actor="job:") == []  # exact, as any other


def test_the_facets_hold_the_most_recent_values_up_to_the_cap(store: Store) -> None:
    store.ensure_model(name="m", task="binary", feature_names=["a"])
    _append(store, [(f"person-{i:02d}", f"action_{i:02d}", "m") for i in range(FACET_LIMIT + 5)])
    actions, actors = store.audit_facets("m")
    assert actors == [f"person-{i:02d}" for i in range(5, FACET_LIMIT + 5)]
    assert actions == [f"action_{i:02d}" for i in range(5, FACET_LIMIT + 5)]


def test_the_facets_are_read_from_the_newest_entries_of_the_log(store: Store) -> None:
    """Only the newest ``window`` entries of the whole log are read (an id range: the
    read stays bounded however long the log grows), whichever model they are about."""
    store.ensure_model(name="m", task="binary", feature_names=["a"])
    _append(
        store,
        [("early", "promote", "m/v1")]
        + [("other", "set_stage", "n/v1")] * 5
        + [("late", "set_stage", "m/v2")],
    )
    with store.engine.connect() as conn:
        assert audit_facets(conn, "m", window=6) == (["set_stage"], ["late"])
        assert audit_facets(conn, "m", window=7) == (["promote", "set_stage"], ["early", "late"])
        assert audit_facets(conn, None, window=6) == (["set_stage"], ["late", "other"])
