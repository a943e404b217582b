"""The A/B page once tests have run long: every look of every shown test got a line, a
circle with its numbers and a tooltip, 400 looks for each of the 20 newest tests, and the
page weighed 3.1 MB. A decided test is now drawn from at most 50 of its looks with no
per-look marks (its band, line and decision marker tell its story); an open test keeps
every detail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.dashboard.scenario import Served, serve, session_cookie
from tunewatch.store._schema import comparison_looks, comparison_tests

MODEL = "long-ab"
LOOKS = 2000
DECIDED = 20
START = datetime(2025, 1, 1, tzinfo=UTC)


def _test(test_id: int, champion: int, challenger: int, decided: bool) -> dict[str, Any]:
    return {
        "id": test_id,
        "model": MODEL,
        "kind": "paired",
        "champion_version": champion,
        "challenger_version": challenger,
        "status": "decided" if decided else "open",
        "decision": "challenger_worse" if decided else "continue",
        "correction": None,
        "n": 50 * LOOKS,
        "looks": LOOKS,
        "state": {},
        "outcome": None,
        "created_at": START,
        "updated_at": START,
        "decided_at": START + timedelta(days=7) if decided else None,
    }


def _looks(test_id: int, champion: int, challenger: int, decided: bool) -> list[dict[str, Any]]:
    rows = []
    for k in range(LOOKS):
        n = 50 * (k + 1)
        half = 2.0 / n**0.5
        estimate = 0.05 + 0.3 / n**0.5 * (-1) ** k
        last = decided and k == LOOKS - 1
        rows.append(
            {"test_id": test_id, "model": MODEL, "kind": "paired",
             "champion_version": champion, "challenger_version": challenger,
             "method": "confidence_sequence", "n": n, "estimate": estimate,
             "ci_low": estimate - half, "ci_high": estimate + half, "p_value": 0.5,
             "adjusted_p_value": 0.5, "decision": "challenger_worse" if last else "continue",
             "fixed_t_p": 0.5, "correction": None, "family_size": 1,
             "created_at": START + timedelta(minutes=5 * k)}
        )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Champion v1 with an open test against shadow v2 (id 1, 2,000 looks), and 20 decided
    tests of 2,000 looks each of older champions (ids 2..21)."""
    with serve(tmp_path_factory.mktemp("ab-size")) as running:
        store = running.daemon.store
        store.ensure_model(name=MODEL, task="binary", feature_names=["a"])
        for stage in ("champion", "shadow"):
            store.add_version(
                model=MODEL,
                artefact_sha256="a" * 64,
                hyperparameters={},
                size_bytes=1,
                actor="t",
                stage=stage,  # type: ignore[arg-type]
            )
        tests = [_test(1, 1, 2, decided=False)]
        tests += [_test(i, 100 + i, 200 + i, decided=True) for i in range(2, DECIDED + 2)]
        with store.engine.begin() as conn:
            conn.execute(comparison_tests.insert(), tests)
            for t in tests:
                conn.execute(
                    comparison_looks.insert(),
                    _looks(t["id"], t["champion_version"], t["challenger_version"],
                           t["status"] == "decided"),
                )  # fmt: skip
        yield running


def _page(served: Served) -> bytes:
    r = httpx.get(
        f"{served.url}/dashboard/models/{MODEL}/ab",
        cookies=session_cookie(served.url, served.tokens["viewer"]),
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.content


def _sections(page: bytes) -> dict[int, str]:
    text = page.decode()
    found = re.findall(r'<section class="comparison" data-test="(\d+)".*?</section>', text, re.S)
    bodies = re.split(r'(?=<section class="comparison" data-test=")', text)[1:]
    return {int(i): body for i, body in zip(found, bodies, strict=True)}


def test_twenty_decided_tests_of_2000_looks_make_a_page_under_a_megabyte(
    served: Served,
) -> None:
    page = _page(served)
    assert len(_sections(page)) == DECIDED + 1
    assert len(page) < 1_000_000, len(page)


def test_a_decided_test_is_drawn_from_few_looks_without_per_look_marks(served: Served) -> None:
    sections = _sections(_page(served))
    for test_id in range(2, DECIDED + 2):
        section = sections[test_id]
        assert 'class="look"' not in section and 'class="ci"' not in section
        assert section.count('class="decision-marker"') == 1
        (line,) = re.findall(r'<polyline class="estimate" points="([^"]*)"', section)
        assert 2 <= len(line.split()) <= 51
    body = httpx.get(
        f"{served.url}/v1/dashboard/models/{MODEL}/ab",
        headers=served.auth("viewer"),
        timeout=120,
    ).json()
    decided = [t for t in body["tests"] if t["status"] == "decided"]
    assert len(decided) == DECIDED
    for t in decided:
        assert t["series_total"] == LOOKS and len(t["series"]) <= 51
        assert t["series"][0]["n"] == 50 and t["series"][-1]["n"] == 50 * LOOKS
        assert t["series"][t["decision_look"]]["decision"] == "challenger_worse"


def test_an_open_test_keeps_every_detail(served: Served) -> None:
    open_test = _sections(_page(served))[1]
    assert open_test.count('class="look"') == 400
    assert open_test.count('class="ci"') == 400
    assert "400 of 2000 looks drawn" in open_test
