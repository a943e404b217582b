"""Mirror records posted now with a ``scored_at`` hours old (a stack's buffer flushed
late, a backfill) are stored at that time, and the challenger in shadow scores them as
they are posted: each carries both versions' outputs and, once labelled, is a pair. A
look read only requests received after the challenger was registered (less an hour), so
a backfill stamped earlier was never fed to any test, with nothing logged or counted.
Each look now reads the labels that arrived since: a label is stamped as it arrives,
after its request was posted and so after the challenger that scored it was
registered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from shadow import OnnxModel
from tests.tunewatch.conftest import MODEL, Running, serving
from tests.tunewatch.test_comparison_loop import (
    copy_daemon,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tunewatch._example import ExampleModel, example_data
from tunewatch.store import LabelItem
from tunewatch.store._schema import labels

CHALLENGER = 2


def _post(
    running: Running,
    trained: list[ExampleModel],
    ids: list[str],
    x: np.ndarray,
    scored_at: datetime | None = None,
) -> None:
    """Mirror ``ids`` (a row of ``x`` each) answered as the champion answers them, then
    wait for the challenger to have scored every one."""
    answers = OnnxModel.from_bytes(trained[0].onnx)
    probs = answers.primary(answers.run(x))
    stamp = {} if scored_at is None else {"scored_at": scored_at.isoformat()}
    records = [
        {"id": rid, "inputs": [x[i].tolist()], "outputs": [probs[i].tolist()], **stamp}
        for i, rid in enumerate(ids)
    ]
    store = running.daemon.store
    before = store.count_outputs(MODEL, CHALLENGER)
    r = httpx.post(
        f"{running.url}/v1/models/{MODEL}/records",
        json={"records": records},
        headers=running.auth("scorer"),
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["accepted"] == len(ids), r.text
    deadline = time.monotonic() + 30
    while store.count_outputs(MODEL, CHALLENGER) < before + len(ids):
        assert time.monotonic() < deadline, "the challenger never scored the records"
        time.sleep(0.01)


def _label(running: Running, ids: list[str], y: np.ndarray) -> None:
    items = [LabelItem(request_id=rid, value=float(y[i])) for i, rid in enumerate(ids)]
    assert set(running.daemon.store.add_labels(MODEL, items)) == {"created"}


@pytest.fixture
def mirrored(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    with serving(tmp_path / "data", trained, store_url=store_url) as running:
        yield running


@pytest.fixture
def auc_mirrored(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Running]:
    models = [{"name": MODEL, "task": "binary", "objective": {"name": "roc_auc"}}]
    with serving(tmp_path / "data", trained, store_url=store_url, extra={"models": models}) as r:
        yield r


def test_a_backfill_scored_before_the_challenger_existed_is_fed_to_its_paired_test(
    mirrored: Running, trained: list[ExampleModel]
) -> None:
    x, y = example_data(400, seed=5)
    live = [f"live-{i}" for i in range(200)]
    _post(mirrored, trained, live, x[:200])
    _label(mirrored, live, y[:200])
    loop = runner(mirrored.daemon)
    [first] = [r for r in loop.run(MODEL) if r.kind == "paired"]
    assert first.fed == 200 and first.look is not None and first.look.n == 200

    hours_ago = datetime.now(UTC) - timedelta(hours=3)
    backfill = [f"bf3h-{i}" for i in range(200)]
    _post(mirrored, trained, backfill, x[200:], scored_at=hours_ago)
    stored = mirrored.daemon.store.get_request(MODEL, backfill[0])
    assert stored is not None and stored.received_at < hours_ago + timedelta(seconds=1)
    _label(mirrored, backfill, y[200:])
    [second] = [r for r in loop.run(MODEL) if r.kind == "paired"]
    assert second.fed == 200, second
    assert second.look is not None and second.look.n == 400


def test_a_backfill_scored_before_the_challenger_existed_counts_in_a_delong_look(
    auc_mirrored: Running, trained: list[ExampleModel]
) -> None:
    x, y = example_data(200, seed=5)
    backfill = [f"bf3h-{i}" for i in range(200)]
    _post(auc_mirrored, trained, backfill, x, scored_at=datetime.now(UTC) - timedelta(hours=3))
    _label(auc_mirrored, backfill, y)
    loop = runner(auc_mirrored.daemon, delong_look_every=200)
    [delong] = [r for r in loop.run(MODEL) if r.kind == "delong"]
    assert delong.fed == 200, delong
    assert delong.look is not None and delong.look.n == 200


@pytest.mark.parametrize("objective", ["log_loss", "roc_auc"])
def test_a_look_reads_no_label_that_arrived_before_both_versions_were_registered(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
    objective: str,
) -> None:
    """Nor the model's whole labelled history (a read took 480 ms at 320k labelled
    requests from before the challenger existed on SQLite, and grew with them): a label
    that arrived before the later registration, less an hour for clocks, is not read.
    (These 300 older requests carry both outputs only so that a read past the bound
    would show.)"""
    d = copy_daemon(
        template,
        tmp_path / "data",
        models=[{"name": MODEL, "task": "binary", "objective": {"name": objective}}],
    )
    try:
        t = traffic(trained, 600, seed=3)
        registered = max(v.created_at for v in d.store.list_versions(MODEL))
        early = registered - timedelta(hours=2)
        for start, at, labelled in [(0, early, False), (300, registered, True)]:
            part = slice(start, start + 300)
            write(
                d.store,
                ids=range(start, start + 300),
                x=t.x[part],
                y=t.y[part],
                answers={1: t.logistic[part], 2: t.gbm[part]},
                received_at=at,
                labelled=[labelled] * 300,
            )
        with d.store.engine.begin() as conn:  # labelled a minute after each was received
            conn.execute(
                sa.insert(labels),
                [
                    {
                        "model": MODEL,
                        "request_id": f"r{i}",
                        "value": float(t.y[i]),
                        "outcome": None,
                        "received_at": early + timedelta(minutes=1),
                    }
                    for i in range(300)
                ],
            )
        loop = runner(d, max_batch=100, delong_look_every=100, delong_looks=10)
        fed = [sum(r.fed for r in loop.run(MODEL)) for _ in range(7)]
        assert sum(fed) == 300, fed
    finally:
        d.close()
