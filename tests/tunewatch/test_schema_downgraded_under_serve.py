"""A rollback that downgrades the store's schema (``tunewatch migrate --to``) while
replicas of this release still serve: they cannot record, so they answer 503
``store_unavailable`` with the fixed message and say so at their readiness routes, and
serve again once the store is upgraded back.

Every inference was a 500 ``store_error`` whose body held the database's SQL
(``relation "run_tallies" does not exist``, ``INSERT INTO run_tallies …``) with a
traceback logged twice per request, and ``/readyz`` stayed 200, so a load balancer kept
routing to the broken replicas (an upgrade review: 396 of 396 requests 500 in 26 s).
A store upgraded past this release (a newer replica starting during a rolling upgrade)
leaves it ready: its migrations add, so this release still records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.tunewatch.conftest import MODEL, Running, serving
from tunewatch._errors import StoreError
from tunewatch._example import ExampleModel
from tunewatch.api._errors import describe
from tunewatch.store import Store
from tunewatch.store._migrate import MIGRATIONS_DIR

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
READY_ROUTES = ("/readyz", "/v2/health/ready", f"/v2/models/{MODEL}/ready")


@pytest.fixture
def replica(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    with serving(tmp_path / "data", trained, store_url=store_url) as served:
        yield served


def _revisions() -> list[str]:
    """This build's revisions, oldest first (the migrations are numbered)."""
    return sorted(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("0*.py"))


#: The revision that added ``run_tallies``, a table recording writes: a store downgraded
#: below it cannot record (a later revision's downgrade may leave recording working).
RECORDING_NEEDS = "0020"


def _below_recording() -> str:
    revisions = _revisions()
    return revisions[revisions.index(RECORDING_NEEDS) - 1]


def _newest() -> str:
    return _revisions()[-1]


def _infer(running: Running, request_id: str) -> httpx.Response:
    body = {
        "id": request_id,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": ROW}],
    }
    return httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer", json=body, headers=running.auth("scorer")
    )


def _ready(running: Running) -> list[int]:
    return [httpx.get(f"{running.url}{route}").status_code for route in READY_ROUTES]


def test_a_store_downgraded_under_a_serving_replica_is_503_and_not_ready(
    replica: Running, store_url: str
) -> None:
    assert _infer(replica, "before").status_code == 200
    assert _ready(replica) == [200, 200, 200]
    with Store(store_url) as other:  # another host's `tunewatch migrate --to`
        other.migrate(to=_below_recording())
        answers = [_infer(replica, f"during-{i}") for i in range(3)]
        for r in answers:
            assert r.status_code == 503, r.text
            assert r.json() == {
                "error": "the store is unavailable; retry later",
                "code": "store_unavailable",
            }
        assert _ready(replica) == [503, 503, 503]
        other.migrate()  # upgraded back
    assert _infer(replica, "after").status_code == 200
    assert _ready(replica) == [200, 200, 200]


def test_a_store_upgraded_past_this_release_leaves_it_serving(
    replica: Running, store_url: str
) -> None:
    """A newer release starting during a rolling upgrade migrates the store past this
    one's newest revision (adding): this release keeps recording, so it stays ready."""
    with Store(store_url) as other, other.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    try:
        assert _ready(replica) == [200, 200, 200]
        assert _infer(replica, "mixed").status_code == 200
    finally:
        with Store(store_url) as other, other.engine.begin() as conn:
            conn.execute(text(f"UPDATE alembic_version SET version_num = '{_newest()}'"))


def test_an_unexpected_store_failure_answers_a_fixed_message() -> None:
    """A store failure that is not an outage is a 500 whose message stays in the log:
    it held the database's SQL, or a server path (an artefact's)."""
    status, code, message = describe(
        StoreError("artefact ab12 at /srv/tw/artefacts/ab12 is corrupt")
    )
    assert (status, code) == (500, "store_error")
    assert "/srv" not in message and "artefact" not in message
