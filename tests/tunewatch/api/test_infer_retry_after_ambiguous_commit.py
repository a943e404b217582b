"""A retry of an inference request whose commit landed although its answer was a 503.

When the connection to the store is lost as a group commit ends (PostgreSQL stopped
after the COMMIT reached it), the request is answered 503 ``store_unavailable`` ("retry
later") while its record is stored. The retry the 503 advises, with the same id, was
refused 409 ``duplicate_request_id``: the client never got its prediction. A retry with
the same inputs (answered by the same version) is now answered as scored again, the
stored record standing; another request reusing the id is still refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._errors import DatabaseUnavailableError
from tunewatch._example import ExampleModel
from tunewatch.api._errors import ApiError
from tunewatch.api._oip import infer
from tunewatch.store import OutputRecord, RequestRecord, RunTally, Store

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
OTHER = [0.0, 0.5, -0.5, 1.0, 0.25, -1.0, 2.0, 0.125]


@pytest.fixture
def serving(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    """The example champion (v1) and shadow (v2) served on each store backend."""
    daemon, tokens = make_daemon(
        tmp_path, trained, store_url=store_url, extra={"scheduler": {"enabled": False}}
    )
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _body(request_id: str, row: list[float]) -> dict[str, Any]:
    return {
        "id": request_id,
        "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": row}],
    }


def _infer(running: Running, request_id: str, row: list[float]) -> httpx.Response:
    return httpx.post(
        f"{running.url}/v2/models/{MODEL}/infer",
        json=_body(request_id, row),
        headers=running.auth("scorer"),
    )


def _lose_reply_of(store: Store, monkeypatch: pytest.MonkeyPatch, request_id: str) -> None:
    """Make the group commit holding ``request_id`` commit and then fail as a connection
    lost before the COMMIT's answer came back does (once): the only way a test can lose
    a reply whose commit landed."""
    write = store.write_records
    lost: list[str] = []

    def committed_then_lost(
        requests: Sequence[RequestRecord],
        outputs: Sequence[OutputRecord],
        shadow_outputs: Sequence[OutputRecord] = (),
        tallies: Sequence[RunTally] = (),
    ) -> list[bool]:
        inserted = write(requests, outputs, shadow_outputs, tallies)
        if not lost and any(r.request_id == request_id for r in requests):
            lost.append(request_id)
            raise DatabaseUnavailableError("store write_records: connection lost at COMMIT")
        return inserted

    monkeypatch.setattr(store, "write_records", committed_then_lost)


def test_retry_of_a_request_stored_behind_a_503_gets_its_prediction(
    serving: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = serving.daemon.store
    _lose_reply_of(store, monkeypatch, "lost-reply")
    first = _infer(serving, "lost-reply", ROW)
    assert first.status_code == 503 and first.json()["code"] == "store_unavailable", first.text
    assert store.count_requests(MODEL) == 1  # the commit landed

    retry = _infer(serving, "lost-reply", ROW)
    assert retry.status_code == 200, retry.text
    assert retry.json()["id"] == "lost-reply" and retry.json()["model_version"] == "1"
    fresh = _infer(serving, "scored-afresh", ROW)
    assert fresh.status_code == 200, fresh.text
    assert retry.json()["outputs"] == fresh.json()["outputs"]

    # the stored record stands, once: nothing was written for the retry
    assert store.count_requests(MODEL) == 2  # lost-reply and scored-afresh
    stored = store.get_request(MODEL, "lost-reply")
    assert stored is not None and stored.source == "infer"
    answers = [o for o in store.get_outputs(MODEL, "lost-reply") if o.role == "champion"]
    assert [o.version for o in answers] == [1]

    other = _infer(serving, "lost-reply", OTHER)
    assert other.status_code == 409 and other.json()["code"] == "duplicate_request_id"
    assert store.count_requests(MODEL) == 2


def test_a_request_reusing_a_mirror_records_id_is_still_refused(serving: Running) -> None:
    """The same inputs under an id the serving stack mirrored are not a retry of a
    request scored here: the stored record holds the other stack's answer."""
    mirrored = httpx.post(
        f"{serving.url}/v1/models/{MODEL}/records",
        json={"records": [{"id": "mirrored", "inputs": [ROW], "outputs": [[0.3, 0.7]]}]},
        headers=serving.auth("scorer"),
    )
    assert mirrored.json()["accepted"] == 1, mirrored.text
    again = _infer(serving, "mirrored", ROW)
    assert again.status_code == 409 and again.json()["code"] == "duplicate_request_id"


def test_a_retry_sharing_the_first_copys_group_commit_gets_its_prediction(
    serving: Running,
) -> None:
    """A retry sent while the first copy's commit is in flight, in the same group: the
    store keeps the first copy, and the retry, told its id is stored once that commit
    ended, reads it back and is answered too (it was refused 409). Two calls gathered on
    one event loop hand their records to the writer in one group."""
    ctx = serving.daemon.app.ctx
    body = orjson.dumps(_body("same-group", ROW))

    async def twice() -> list[bytes | BaseException]:
        return await asyncio.gather(
            infer(ctx, MODEL, None, None, body),
            infer(ctx, MODEL, None, None, body),
            return_exceptions=True,
        )

    first, second = asyncio.run(twice())
    if isinstance(second, ApiError):
        pytest.fail(f"the retry was refused {second.status} {second.code}")
    assert isinstance(first, bytes) and first == second
    assert serving.daemon.store.count_requests(MODEL) == 1
    different = orjson.dumps(_body("same-group", OTHER))
    with pytest.raises(ApiError) as refused:
        asyncio.run(infer(ctx, MODEL, None, None, different))
    assert (refused.value.status, refused.value.code) == (409, "duplicate_request_id")
