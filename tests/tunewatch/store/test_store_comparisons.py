"""Comparison tables on both backends: one test per pair, looks that consume each request
exactly once, reads that pair outputs with labels in arrival order, split counts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tunewatch._errors import ConflictError
from tunewatch.store import LabelItem, OutputRecord, RequestRecord, Store, _split_counts
from tunewatch.store._comparison_rows import LATE_COMMIT_MARGIN
from tunewatch.store._comparisons import (
    ComparisonStore,
    LookValues,
    UnitTotal,
    Watermark,
    read_start,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _log(store: Store, n: int, *, challenger: bool = True, champion: bool = True) -> None:
    reqs, outs = [], []
    for i in range(n):
        x = np.full((1, 2), i, dtype=np.float32).tobytes()
        reqs.append(RequestRecord("m", f"r{i}", T0 + timedelta(seconds=i), "infer", 1, 2, x))
        p = np.asarray([[0.4, 0.6]], dtype=np.float32).tobytes()
        if champion:
            outs.append(OutputRecord("m", f"r{i}", 1, "champion", 0.001, 1, 2, p))
        if challenger:
            outs.append(OutputRecord("m", f"r{i}", 2, "challenger", 0.002, 1, 2, p))
    store.write_records(reqs, outs)


def _look(n: int) -> LookValues:
    return LookValues(
        method="confidence_sequence",
        n=n,
        estimate=-0.1,
        ci_low=float("-inf"),
        ci_high=0.2,
        p_value=0.5,
        adjusted_p_value=0.5,
        decision="continue",
        bootstrap_ci=(-0.2, 0.0),
        correction="holm",
    )


def test_each_request_is_consumed_once_and_looks_form_a_history(model_store: Store) -> None:
    comparisons = ComparisonStore(model_store)
    _log(model_store, 5)
    # labels arrive out of request order: r3 first
    model_store.add_labels("m", [LabelItem("r3", 1.0)])
    model_store.add_labels("m", [LabelItem("r0", 0.0), LabelItem("r1", 1.0)])
    test, created = comparisons.get_or_create_test(
        model="m",
        kind="paired",
        champion_version=1,
        challenger_version=2,
        correction="holm",
        state={"a": 1},
    )
    again, created_again = comparisons.get_or_create_test(
        model="m",
        kind="paired",
        champion_version=1,
        challenger_version=2,
        correction="holm",
        state={"a": 2},
    )
    assert created and not created_again and again.id == test.id and again.state == {"a": 1}
    batch = comparisons.read_labelled(
        model="m", answered_by=1, paired_with=2, unconsumed_by=test.id
    )
    assert batch.request_ids == ("r3", "r0", "r1")
    assert batch.labels.tolist() == [1.0, 0.0, 1.0]
    assert batch.paired is not None and batch.paired.shape == (3, 2)
    saved = comparisons.record_look(
        test, consumed=list(batch.request_ids), look=_look(3), state={"a": 3}, status="open"
    )
    assert (saved.n, saved.looks, saved.state) == (3, 1, {"a": 3})
    with pytest.raises(ConflictError) as exc:  # a stale copy may not feed again
        comparisons.record_look(test, consumed=["r4"], look=_look(4), state={}, status="open")
    assert exc.value.code == "comparison_moved_on"
    model_store.add_labels("m", [LabelItem("r4", 1.0)])
    fresh = comparisons.read_labelled(
        model="m", answered_by=1, paired_with=2, unconsumed_by=test.id
    )
    assert fresh.request_ids == ("r4",)
    seen = comparisons.read_labelled(model="m", answered_by=1, paired_with=2, consumed_by=test.id)
    assert seen.looks is not None and seen.looks.tolist() == [1, 1, 1]
    [look] = comparisons.history("m", 2)
    assert look.ci_low is None and look.ci_high == 0.2 and look.bootstrap_ci == (-0.2, 0.0)
    done = comparisons.finish_test(test.id, status="decided", outcome={"action": "promoted"})
    assert done.decided_at is not None and done.outcome == {"action": "promoted"}


def test_a_consumed_batch_moves_the_tests_watermark_and_reads_start_from_it(
    model_store: Store,
) -> None:
    """Each read's watermark is the order key of the last row consumed; a read from it
    less the margin leaves out older labels, and every state write keeps it."""
    comparisons = ComparisonStore(model_store)
    _log(model_store, 4)
    for rid in ("r0", "r1", "r2", "r3"):  # one arrival each, in this order
        model_store.add_labels("m", [LabelItem(rid, 1.0)])
    arrived = {}
    for rid in ("r0", "r1", "r2", "r3"):
        label = model_store.get_label("m", rid)
        assert label is not None
        arrived[rid] = label.received_at
    test, _ = comparisons.get_or_create_test(
        model="m",
        kind="paired",
        champion_version=1,
        challenger_version=2,
        correction="holm",
        state={"a": 1},
    )
    assert read_start(test.state, "labelled", "label") is None  # from the test's start
    first = comparisons.read_labelled(
        model="m", answered_by=1, paired_with=2, unconsumed_by=test.id, limit=1
    )
    assert first.request_ids == ("r0",) and first.last == Watermark("label", arrived["r0"])
    comparisons.consume_unscored(test, first.request_ids, {"labelled": first.last})
    test = comparisons.get_test(test.id)
    assert read_start(test.state, "labelled", "label") == arrived["r0"] - LATE_COMMIT_MARGIN
    assert read_start(test.state, "labelled", "request") is None  # another order key
    second = comparisons.read_labelled(
        model="m",
        answered_by=1,
        paired_with=2,
        unconsumed_by=test.id,
        limit=2,
        order_from=read_start(test.state, "labelled", "label"),
    )
    assert second.request_ids == ("r1", "r2")
    saved = comparisons.record_look(
        test,
        consumed=list(second.request_ids),
        look=_look(2),
        state={"a": 2},
        status="open",
        watermarks={"labelled": second.last},
    )
    assert saved.state["a"] == 2
    assert read_start(saved.state, "labelled", "label") == arrived["r2"] - LATE_COMMIT_MARGIN
    kept = comparisons.write_state(saved, {"a": 3})
    assert read_start(kept.state, "labelled", "label") == arrived["r2"] - LATE_COMMIT_MARGIN
    # a bound past r3's arrival leaves r3 out; at it, r3 is read
    past = arrived["r3"] + timedelta(microseconds=1)
    assert (
        comparisons.read_labelled(
            model="m", answered_by=1, paired_with=2, unconsumed_by=test.id, order_from=past
        ).request_ids
        == ()
    )
    at = comparisons.read_labelled(
        model="m", answered_by=1, paired_with=2, unconsumed_by=test.id, order_from=arrived["r3"]
    )
    assert at.request_ids == ("r3",)
    # reads that wait for labels to mature are ordered, and bounded, by request receipt
    matured = comparisons.read_labelled(
        model="m",
        answered_by=1,
        unconsumed_by=test.id,
        matured_before=T0 + timedelta(days=1),
        order_from=T0 + timedelta(seconds=3),
    )
    assert matured.request_ids == ("r3",)
    assert matured.last == Watermark("request", T0 + timedelta(seconds=3))


def _split_log(store: Store) -> None:
    """r0–r5 answered by the champion (v2 shadowed), r6–r9 by v2 alone; units u0–u2 and
    v0–v1 answer several requests each, r5 and r9 carry no unit key."""
    keys = ["u0", "u0", "u1", "u2", "u2", None, "v0", "v0", "v1", None]
    reqs, outs = [], []
    for i, key in enumerate(keys):
        x = np.zeros((1, 2), dtype=np.float32).tobytes()
        at = T0 + timedelta(seconds=i)
        reqs.append(RequestRecord("m", f"r{i}", at, "infer", 1, 2, x, unit_key=key))
        if i < 6:
            outs.append(OutputRecord("m", f"r{i}", 1, "champion", 0.001, 1, 2, _P))
        outs.append(OutputRecord("m", f"r{i}", 2, "challenger", 0.002, 1, 2, _P))
    store.write_records(reqs, outs)
    store.add_labels("m", [LabelItem(f"r{i}", float(i % 2)) for i in range(10)])


def test_split_arms_count_the_units_each_arm_answered(model_store: Store) -> None:
    """Requests of one unit are one unit of the split, and a request without a unit key
    belongs to neither arm (it was never split): counting requests called an imbalance a
    mismatch whenever unkeyed traffic or heavy users were in the log."""
    _split_log(model_store)
    comparisons = ComparisonStore(model_store)
    counts = comparisons.count_split_arms(model="m", challenger_version=2, since=None)
    assert counts == (3, 2)
    later = comparisons.count_split_arms(
        model="m", challenger_version=2, since=T0 + timedelta(seconds=7)
    )
    assert later == (0, 2)
    # v3 promoted meanwhile: its units are the champion arm's too (counting only the
    # current champion's units called the split a mismatch after every promotion)
    x = np.zeros((1, 2), dtype=np.float32).tobytes()
    model_store.write_records(
        [RequestRecord("m", "r10", T0 + timedelta(seconds=10), "infer", 1, 2, x, unit_key="w0")],
        [OutputRecord("m", "r10", 3, "champion", 0.001, 1, 2, _P)],
    )
    assert comparisons.count_split_arms(model="m", challenger_version=2, since=None) == (4, 2)
    assert model_store.get_request("m", "r0").unit_key == "u0"  # type: ignore[union-attr]


def _keyed(store: Store, name: str, at: datetime, unit: str | None, *, arm: str) -> None:
    """Request ``name`` of ``unit`` answered by the champion (v1) or the split challenger
    (v2, no champion output: see ``tunewatch._split``)."""
    x = np.zeros((1, 2), dtype=np.float32).tobytes()
    version, role = (1, "champion") if arm == "champion" else (2, "challenger")
    store.write_records(
        [RequestRecord("m", name, at, "infer", 1, 2, x, unit_key=unit)],
        [OutputRecord("m", name, version, role, 0.001, 1, 2, _P)],
    )


def test_split_arm_counts_go_on_from_the_last_count(model_store: Store) -> None:
    """A count reads only the requests received since the newest one the last count of
    the same split saw, less ``LATE_COMMIT_MARGIN``, and adds their new units to the
    units it keeps: every tick re-read every request since the split's start (938 ms on
    SQLite and 1,126 ms on PostgreSQL at 400k requests). The cost: a request stamped
    more than the margin before the newest counted one, and recorded after that count,
    is never counted. Another process goes on with the same count; a count of another
    window or challenger starts afresh."""
    comparisons = ComparisonStore(model_store)
    _split_log(model_store)  # the newest, r9, received at T0 + 9 s
    assert comparisons.count_split_arms(model="m", challenger_version=2, since=None) == (3, 2)
    newest = T0 + timedelta(seconds=9)
    _keyed(
        model_store,
        "late",
        newest - LATE_COMMIT_MARGIN + timedelta(seconds=1),
        "u9",
        arm="champion",
    )
    _keyed(
        model_store,
        "old",
        newest - LATE_COMMIT_MARGIN - timedelta(seconds=1),
        "u10",
        arm="champion",
    )
    _keyed(model_store, "again", newest, "u0", arm="champion")  # a unit already counted
    assert comparisons.count_split_arms(model="m", challenger_version=2, since=None) == (4, 2)
    assert ComparisonStore(model_store).count_split_arms(
        model="m", challenger_version=2, since=None
    ) == (4, 2)
    # a count from a later start reads its window afresh; back at the split's start, too
    later = T0 + timedelta(seconds=7)
    assert comparisons.count_split_arms(model="m", challenger_version=2, since=later) == (1, 2)
    assert comparisons.count_split_arms(model="m", challenger_version=2, since=None) == (5, 2)
    assert comparisons.count_split_arms(model="m", challenger_version=3, since=None) == (5, 0)


@pytest.mark.parametrize("optimistic", [True, False], ids=["read-then-write", "locked"])
def test_split_arm_counts_equal_a_recount_tick_after_tick(
    model_store: Store, monkeypatch: pytest.MonkeyPatch, optimistic: bool
) -> None:
    """Counted tick after tick, with requests arriving out of order within the margin and
    units returning, the counts are those of a count of the whole split at each tick;
    counted under the count's lock too (what a count moved by others three times does)."""
    if not optimistic:
        monkeypatch.setattr(_split_counts, "_ATTEMPTS", 0)
    rng = np.random.default_rng(7)
    comparisons = ComparisonStore(model_store)
    seen: dict[str, set[str]] = {"champion": set(), "challenger": set()}
    at = T0
    for tick in range(6):
        for i in range(40):
            at += timedelta(seconds=int(rng.integers(1, 120)))
            stamped = at - timedelta(seconds=int(rng.integers(0, 600)))  # out of order
            unit = None if rng.random() < 0.1 else f"u{int(rng.integers(0, 60))}"
            arm = "challenger" if unit is not None and int(unit[1:]) % 3 == 0 else "champion"
            _keyed(model_store, f"t{tick}-{i}", stamped, unit, arm=arm)
            if unit is not None:
                seen[arm].add(unit)
        counts = comparisons.count_split_arms(model="m", challenger_version=2, since=None)
        assert counts == (len(seen["champion"]), len(seen["challenger"]))


def test_split_checks_keep_the_count_they_judged(model_store: Store) -> None:
    """Each check records where its count of units started and since when its split's
    challenger, salt and share applied. A split whose settings change counts from when a
    check first sees them, or after the newest request recorded by then if that is
    stamped later (by a host whose clock runs ahead)."""
    comparisons = ComparisonStore(model_store)
    assert model_store.latest_split_window("m") is None
    assert model_store.new_split_settings_since("m", T0) == T0  # no request yet
    _split_log(model_store)  # the newest, r9, received at T0 + 9 s
    ahead = T0 + timedelta(seconds=9, microseconds=1)
    assert model_store.new_split_settings_since("m", T0 + timedelta(seconds=3)) == ahead
    later = T0 + timedelta(minutes=1, microseconds=250)
    assert model_store.new_split_settings_since("m", later) == later
    checks = [("exp-1", 50.0, T0, None), ("exp-2", 20.0, later, later)]
    for salt, percent, since, settings_since in checks:
        comparisons.add_split_check(
            model="m",
            champion_version=1,
            challenger_version=2,
            salt=salt,
            percent=percent,
            n_champion=3,
            n_challenger=2,
            chi2=0.2,
            p_value=1.0,
            mismatch=False,
            since=since,
            settings_since=settings_since,
        )
        window = model_store.latest_split_window("m")
        assert window is not None
        assert (window.check.salt, window.check.percent) == (salt, percent)
        assert (window.since, window.settings_since) == (since, settings_since)
    assert comparisons.latest_split_check("m") == window.check


def test_split_reads_keyed_requests_and_keeps_unit_totals(model_store: Store) -> None:
    _split_log(model_store)
    comparisons = ComparisonStore(model_store)
    test, _ = comparisons.get_or_create_test(
        model="m",
        kind="split",
        champion_version=1,
        challenger_version=2,
        correction=None,
        state={},
    )
    batch = comparisons.read_labelled(model="m", answered_by=1, keyed=True)
    assert batch.request_ids == ("r0", "r1", "r2", "r3", "r4")
    assert batch.units == ("u0", "u0", "u1", "u2", "u2")
    everything = comparisons.read_labelled(model="m", answered_by=1)
    assert everything.units[-1] is None and len(everything.request_ids) == 6
    assert comparisons.unit_totals(test.id, "champion", ["u0", "u1"]) == {}
    saved = comparisons.record_look(
        test,
        consumed=["r0", "r1"],
        look=_look(2),
        state={},
        status="open",
        units=[UnitTotal("champion", "u0", 2, 0.5)],
    )
    comparisons.record_look(
        saved,
        consumed=["r2"],
        look=_look(3),
        state={},
        status="open",
        units=[UnitTotal("champion", "u0", 3, 0.75), UnitTotal("champion", "u1", 1, 2.0)],
    )
    assert comparisons.unit_totals(test.id, "champion", ["u0", "u1", "u2"]) == {
        "u0": (3, 0.75),
        "u1": (1, 2.0),
    }
    assert comparisons.unit_totals(test.id, "challenger", ["u0"]) == {}
    with pytest.raises(ConflictError):  # a stale look writes no totals either
        comparisons.record_look(
            saved,
            consumed=["r3"],
            look=_look(4),
            state={},
            status="open",
            units=[UnitTotal("champion", "u2", 1, 9.0)],
        )
    assert comparisons.unit_totals(test.id, "champion", ["u2"]) == {}


def test_rows_that_cannot_be_scored_are_read_to_be_consumed_but_give_no_rows(
    model_store: Store,
) -> None:
    """A binary label of 2.0, or a challenger's NaN output, made every look raise; the
    test re-read the same first batch at every run and never moved again."""
    comparisons = ComparisonStore(model_store)
    _log(model_store, 4)
    nan = np.asarray([[np.nan, np.nan]], dtype=np.float32).tobytes()
    model_store.write_records(
        [RequestRecord("m", "r9", T0, "infer", 1, 2, np.zeros((1, 2), np.float32).tobytes())],
        [
            OutputRecord("m", "r9", 1, "champion", 0.001, 1, 2, _P),
            OutputRecord("m", "r9", 2, "challenger", 0.002, 1, 2, nan),
        ],
    )
    model_store.add_labels(
        "m",
        [
            LabelItem("r0", 0.0),
            LabelItem("r1", 2.0),  # not a binary label
            LabelItem("r2", 1.0),
            LabelItem("r3", 0.5),  # nor this
            LabelItem("r9", 1.0),  # the challenger answered NaN
        ],
    )
    batch = comparisons.read_labelled(model="m", answered_by=1, paired_with=2)
    assert set(batch.request_ids) == {"r0", "r1", "r2", "r3", "r9"}  # all to be consumed
    assert [batch.request_ids[i] for i in batch.rows] == ["r0", "r2"]
    assert batch.labels.tolist() == [0.0, 1.0]
    unpaired = comparisons.read_labelled(model="m", answered_by=1)
    assert [unpaired.request_ids[i] for i in unpaired.rows] == ["r0", "r2", "r9"]
    # rows the objective refuses (MAPE: a label of 0) are read to be consumed, not used
    refused = comparisons.read_labelled(model="m", answered_by=1, valid_rows=lambda y, pred: y != 0)
    assert set(refused.request_ids) == {"r0", "r1", "r2", "r3", "r9"}
    assert [refused.request_ids[i] for i in refused.rows] == ["r2", "r9"]


_P = np.asarray([[0.4, 0.6]], dtype=np.float32).tobytes()


def test_an_output_of_another_width_read_first_does_not_drop_the_rest(model_store: Store) -> None:
    """The batch's width was the first row's: a three-column answer labelled first made
    every other request of the batch unscorable (and consumed)."""
    wide = np.asarray([[0.2, 0.3, 0.5]], dtype=np.float32).tobytes()
    x = np.zeros((1, 2), np.float32).tobytes()
    model_store.write_records(
        [RequestRecord("m", "odd", T0, "mirror", 1, 2, x)],
        [OutputRecord("m", "odd", 1, "external", None, 1, 3, wide)],
    )
    model_store.add_labels("m", [LabelItem("odd", 1.0)])
    _log(model_store, 3, challenger=False)
    model_store.add_labels("m", [LabelItem(f"r{i}", 1.0) for i in range(3)])
    batch = ComparisonStore(model_store).read_labelled(model="m", answered_by=1)
    assert batch.request_ids[0] == "odd"
    assert [batch.request_ids[i] for i in batch.rows] == ["r0", "r1", "r2"]
    window = model_store.window("m", n_features=2)
    assert np.isfinite(window.outputs).all(axis=1).sum() == 3 and window.outputs.shape[1] == 2


def test_split_arm_counts_taken_at_once_by_several_processes_all_answer(
    model_store: Store,
) -> None:
    """A count another process moved between this one's read and its write reads again;
    after three such tries it failed with a 503-class error (5 of 80 calls of two
    back-to-back counters on PostgreSQL). The last try now counts under the count's lock,
    which cannot be moved, and every count equals a recount."""
    _split_log(model_store)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def count(worker: int) -> None:
        comparisons = ComparisonStore(model_store)
        start.wait()
        try:
            for i in range(15):
                at = T0 + timedelta(minutes=1 + i, seconds=worker)
                _keyed(model_store, f"w{worker}-{i}", at, f"w{worker}-{i % 4}", arm="champion")
                comparisons.count_split_arms(model="m", challenger_version=2, since=None)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=count, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = ComparisonStore(model_store).count_split_arms(
        model="m", challenger_version=2, since=None
    )
    assert counts == (3 + 16, 2)
