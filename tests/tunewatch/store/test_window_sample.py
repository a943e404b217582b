"""``Store.window(sample=…)`` on both backends: 1 in ``sample`` requests, chosen by a
hash of the request id, the same at every read; a coarser sample is part of a finer one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tunewatch.store import RequestRecord, Store

N = 4_000
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _requests(store: Store) -> None:
    store.write_records(
        [
            RequestRecord(
                model="m",
                request_id=f"req-{i}",
                received_at=T0 + timedelta(seconds=i),
                source="infer",
                n_rows=1,
                n_cols=2,
                inputs=np.zeros((1, 2), np.float32).tobytes(),
            )
            for i in range(N)
        ],
        [],
    )


def test_a_sample_is_uniform_repeatable_and_nested(model_store: Store) -> None:
    _requests(model_store)
    end = T0 + timedelta(seconds=N)

    def ids(sample: int) -> tuple[str, ...]:
        w = model_store.window("m", n_features=2, start=T0, end=end, sample=sample)
        assert w.sample == sample
        return w.request_ids

    whole, half, quarter = ids(1), ids(2), ids(4)
    assert len(whole) == N
    # binomial spreads: 32 (a half), 27 (a quarter)
    assert abs(len(half) - N / 2) < 200 and abs(len(quarter) - N / 4) < 200
    assert set(quarter) <= set(half) <= set(whole)
    assert ids(4) == quarter
    # uniform in time too: each half of the span holds about half of the sample
    early = sum(int(r.removeprefix("req-")) < N // 2 for r in quarter)
    assert abs(early - len(quarter) / 2) < 150


def test_a_sampled_newest_n_reads_the_newest_of_the_sample(model_store: Store) -> None:
    _requests(model_store)
    w = model_store.window("m", n_features=2, last_n=100, sample=4)
    newest = model_store.window("m", n_features=2, sample=4).request_ids[-100:]
    assert w.request_ids == newest


def test_requests_are_counted_over_a_span(model_store: Store) -> None:
    _requests(model_store)
    assert model_store.count_requests("m") == N
    assert model_store.count_requests("m", start=T0, end=T0 + timedelta(seconds=10)) == 10


def test_a_sample_of_other_than_a_power_of_two_is_refused(model_store: Store) -> None:
    with pytest.raises(ValueError, match="power of two, got 3"):
        model_store.window("m", n_features=2, sample=3)
