"""Posting mirror records (``POST /v1/models/{m}/records``) to a test daemon: a row of
the example model's eight features, the answer a stack gives for it, and the call."""

from __future__ import annotations

import httpx

from tests.tunewatch.conftest import MODEL, Running

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
ANSWER = [0.4, 0.6]


def post_records(running: Running, *records: dict[str, object]) -> httpx.Response:
    """Post ``records`` to the example model as its scorer."""
    return httpx.post(
        f"{running.url}/v1/models/{MODEL}/records",
        json={"records": list(records)},
        headers=running.auth("scorer"),
        timeout=60,
    )


def mirror_record(rid: str, **extra: object) -> dict[str, object]:
    """A record of one row, :data:`ROW` answered :data:`ANSWER`, with ``extra`` fields."""
    return {"id": rid, "inputs": [ROW], "outputs": [ANSWER], **extra}
