"""Migrations: idempotent, and they build exactly the tables ``_schema.metadata`` declares."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError

from shadow.stats import TwoSampleSequentialTest
from tunewatch.store import (
    LabelItem,
    OutputRecord,
    RequestRecord,
    SafeBound,
    Store,
    StoredSafeRanges,
    metadata,
)
from tunewatch.store._audit import append_audit_in
from tunewatch.store._comparisons import ComparisonStore
from tunewatch.store._migrate import alembic_config
from tunewatch.store._records import _label_value
from tunewatch.store._schema import audit_head, comparison_consumed, comparison_tests, labels

# about making and migrating stores: each begins with no store file (not a migrated copy)
pytestmark = pytest.mark.new_store


def test_migrate_is_idempotent_and_matches_metadata(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        store.migrate()
        store.migrate()
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (head,)
            ]
            assert head is not None and int(head) >= 2
            assert conn.execute(sa.text("SELECT id, hash FROM audit_head")).all() == [(1, "0" * 64)]
    finally:
        store.close()


def test_a_migration_is_logged_in_one_line_and_a_current_store_logs_none(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Alembic logs a line per revision, some of them paragraphs: the CLI keeps those for
    ``--verbose``, and the store says in one line what changed."""
    with caplog.at_level("INFO", logger="tunewatch.store._migrate"):
        store = Store.open(store_url)
    try:
        with caplog.at_level("INFO", logger="tunewatch.store._migrate"):
            with store.engine.connect() as conn:
                head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
            first = [r.getMessage() for r in caplog.records if r.name == "tunewatch.store._migrate"]
            caplog.clear()
            store.migrate()
            again = [r.getMessage() for r in caplog.records if r.name == "tunewatch.store._migrate"]
    finally:
        store.close()
    assert first == [f"store schema created at revision {head}"]
    assert again == []


def test_an_older_store_s_upgrade_names_both_revisions(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(store_url)
    try:
        store.migrate()
        with store.engine.begin() as conn:
            head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
            command.downgrade(alembic_config(conn), "0016")
        with caplog.at_level("INFO", logger="tunewatch.store._migrate"):
            store.migrate()
    finally:
        store.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "tunewatch.store._migrate"]
    assert logged == [f"store schema upgraded from revision 0016 to {head}"]


def test_open_split_tests_start_again_per_unit(store_url: str) -> None:
    """Revision 0008: a split test counted requests as independent units. An open one
    restarts (config kept), and so does one decided but not acted on (its promotion was
    blocked or still to come: it would act on the old statistics); one that acted stays."""
    engine = sa.create_engine(store_url)
    legacy = {
        "format_version": 1,
        "kind": "two_sample_sequential_test",
        "config": {
            "alpha": 0.05,
            "method": "confidence_sequence",
            "planned_n": 1000,
            "min_n": 500,
            "mixing_sd": None,
            "greater_is_better": False,
        },
        "stats": [[900, 300.0, 200.0], [800, 250.0, 190.0]],
        "p_value": 0.2,
        "ci_low": -0.1,
        "ci_high": 0.3,
        "decision": "continue",
        "history": [],
    }
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0007")
            conn.execute(
                sa.text(
                    "INSERT INTO models (name, task, feature_names, regulated, created_at) "
                    "VALUES ('m', 'binary', '[]', false, CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO hyperparameter_sets (id, params, created_at) "
                    "VALUES ('hp', '{}', CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO model_versions (model, version, artefact_sha256, "
                    "hyperparameter_set_id, stage, details, size_bytes, created_at, "
                    "stage_changed_at) VALUES ('m', 1, :sha, 'hp', 'champion', '{}', 1, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"sha": "0" * 64},
            )
            tests = [
                (1, "open", "continue", None),
                (1, "decided", "challenger_better", {"action": "blocked_srm"}),
                (1, "decided", "challenger_better", {"action": "promoted"}),
                # against a champion since replaced: nothing would ever look at it again
                (7, "decided", "challenger_better", {"action": "blocked_srm"}),
            ]
            for version, (champion, status, decision, outcome) in enumerate(tests, start=2):
                conn.execute(
                    sa.text(
                        "INSERT INTO comparison_tests (model, kind, champion_version, "
                        "challenger_version, status, decision, n, looks, state, outcome, "
                        "created_at, updated_at, decided_at) VALUES ('m', 'split', :c, :v, "
                        ":status, :decision, 1700, 3, :state, :outcome, CURRENT_TIMESTAMP, "
                        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    ),
                    {
                        "c": champion,
                        "v": version,
                        "status": status,
                        "decision": decision,
                        "state": json.dumps(legacy),
                        "outcome": None if outcome is None else json.dumps(outcome),
                    },
                )
    finally:
        engine.dispose()
    store = Store.open(store_url)
    try:
        comparisons = ComparisonStore(store)
        [opened, blocked, acted, former] = comparisons.list_tests("m", kind="split")
        assert (former.status, former.n) == ("decided", 1700)
        for test in (opened, blocked):
            assert (test.status, test.decision, test.outcome) == ("open", "continue", None)
            assert (test.n, test.looks, test.decided_at) == (0, 3, None)
            restarted = TwoSampleSequentialTest.from_dict(test.state)
            assert restarted.min_n == 500 and restarted.history == ()
            assert restarted.update(champion=np.ones(3)).n_champion == 3
        assert acted.n == 1700 and acted.state["stats"] == legacy["stats"]
        assert acted.outcome == {"action": "promoted"}
    finally:
        store.close()


def test_downgrading_0008_leaves_states_the_older_code_can_read(store_url: str) -> None:
    """Also with a labelled request stored: SQLite rebuilds ``requests`` to drop
    ``unit_key``, and dropping the old table failed on the label's foreign key."""
    rng = np.random.default_rng(3)
    watch = TwoSampleSequentialTest(min_n=5)
    watch.update(champion=rng.normal(size=40), challenger=rng.normal(size=30))
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        store.write_records(
            [RequestRecord("m", "r1", datetime.now(UTC), "infer", 1, 1, b"\0" * 4, "user-1")], []
        )
        assert store.add_labels("m", [LabelItem("r1", 1.0)]) == ["created"]
        comparisons = ComparisonStore(store)
        for kind, version in (("rollback_watch", 2), ("split", 3)):
            comparisons.get_or_create_test(
                model="m",
                kind=kind,
                champion_version=1,
                challenger_version=version,
                correction=None,
                state=watch.to_dict(),
            )
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0007")
            rows = conn.execute(sa.text("SELECT kind, state FROM comparison_tests ORDER BY id"))
            states = {
                kind: state if isinstance(state, dict) else json.loads(state)
                for kind, state in rows
            }
        assert store.get_label("m", "r1").value == 1.0  # type: ignore[union-attr]
        store.migrate()
        assert store.add_labels("m", [LabelItem("r1", 1.0)]) == ["duplicate"]
    finally:
        store.close()
    expected = [
        [40, *watch.to_dict()["stats"][0][2:5:2]],
        [30, *watch.to_dict()["stats"][1][2:5:2]],
    ]
    assert np.allclose(states["rollback_watch"]["stats"], expected)  # (n, sum, sum of squares)
    assert np.asarray(states["split"]["stats"]).shape == (2, 3)


def test_an_audit_log_written_before_0009_still_verifies_and_is_protected(
    store_url: str,
) -> None:
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0008")
            written = [
                append_audit_in(conn, actor="alice", action="x", target=f"t{i}", details={"i": i})
                for i in range(3)
            ]
    finally:
        engine.dispose()
    store = Store.open(store_url)
    try:
        assert store.audit_log() == written[::-1]
        assert store.verify_audit() is None
        with (
            pytest.raises(IntegrityError, match="audit_head only moves forward"),
            store.engine.begin() as conn,
        ):
            conn.execute(sa.update(audit_head).values(hash=written[1].hash))
        appended = store.append_audit(actor="bob", action="y", target="t", details={})
        assert appended.prev_hash == written[2].hash
        assert store.verify_audit() is None
    finally:
        store.close()


def test_downgrading_0009_keeps_the_entries_append_only_and_upgrading_restores_it(
    store_url: str,
) -> None:
    store = Store.open(store_url)
    try:
        entries = [
            store.append_audit(actor="alice", action="x", target="t", details={"i": i})
            for i in range(2)
        ]
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0008")
            conn.execute(sa.update(audit_head).values(hash=entries[0].hash))  # 0008 allowed it
            conn.execute(sa.update(audit_head).values(hash=entries[1].hash))
        with pytest.raises(IntegrityError, match="append-only"), store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM audit_entries"))  # revision 0001's triggers
        store.migrate()
        with (
            pytest.raises(IntegrityError, match="audit_head only moves forward"),
            store.engine.begin() as conn,
        ):
            conn.execute(sa.update(audit_head).values(hash=entries[0].hash))
        assert store.verify_audit() is None
        store.append_audit(actor="bob", action="y", target="t", details={})
        assert store.verify_audit() is None
    finally:
        store.close()


def _labels_at_0009(store_url: str, sent: dict[str, str]) -> dict[str, float | list[float]]:
    """A store at revision 0009 with the labels ``sent`` (request id -> JSON text), and
    the values they read back as there."""
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0009")
            conn.execute(
                sa.text(
                    "INSERT INTO models (name, task, feature_names, regulated, created_at) "
                    "VALUES ('m', 'regression', '[\"a\"]', false, CURRENT_TIMESTAMP)"
                )
            )
            for rid, text in sent.items():
                rows = len(json.loads(text)) if text.startswith("[") else 1
                conn.execute(
                    sa.text(
                        "INSERT INTO requests (model, request_id, received_at, source, n_rows, "
                        "n_cols, inputs) VALUES ('m', :rid, CURRENT_TIMESTAMP, 'infer', :rows, "
                        "1, :inputs)"
                    ),
                    {"rid": rid, "rows": rows, "inputs": np.zeros(rows, np.float32).tobytes()},
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO labels (model, request_id, value, received_at) "
                        "VALUES ('m', :rid, :value, CURRENT_TIMESTAMP)"
                    ),
                    {"rid": rid, "value": text},
                )
            stored = conn.execute(sa.select(labels.c.request_id, labels.c.value)).all()
    finally:
        engine.dispose()
    return {rid: _label_value(value) for rid, value in stored}


_SENT = {
    "hard": "2.434619594169251",  # SQLite's parser stores 2.4346195941692512
    "tiny": "5.463067962873653e-09",
    "whole": "1.0",  # stored by SQLite as INTEGER 1
    "plain": "0.1",
    "rows": "[0.5, 2.434619594169251]",  # array text: never converted
}


def test_labels_stored_before_0010_read_back_unchanged_and_replay_as_duplicates(
    store_url: str,
) -> None:
    before = _labels_at_0009(store_url, _SENT)
    store = Store.open(store_url)
    try:
        after = {rid: store.get_label("m", rid) for rid in _SENT}
        for rid, value in before.items():
            label = after[rid]
            assert label is not None and json.dumps(label.value) == json.dumps(value)
        assert after["rows"].value == [0.5, 2.434619594169251]  # type: ignore[union-attr]
        replay = [LabelItem(rid, value) for rid, value in before.items()]
        assert store.add_labels("m", replay) == ["duplicate"] * len(replay)
        if store.dialect == "sqlite":
            with store.engine.connect() as conn:
                stored = dict(conn.execute(sa.text("SELECT request_id, value FROM labels")).all())
                kinds = conn.execute(sa.text("SELECT DISTINCT typeof(value) FROM labels"))
                assert kinds.scalars().all() == ["text"]
            assert stored["hard"] == repr(before["hard"]) == "2.4346195941692512"
            assert stored["whole"] == "1.0" and stored["plain"] == "0.1"
            assert stored["rows"] == _SENT["rows"]
        # a label sent from now on is kept exactly
        store.write_records(
            [RequestRecord("m", "new", datetime.now(UTC), "infer", 1, 1, b"\0" * 4)], []
        )
        sent = LabelItem("new", 2.434619594169251)
        assert store.add_labels("m", [sent, sent]) == ["created", "duplicate"]
        assert store.get_label("m", "new").value == 2.434619594169251  # type: ignore[union-attr]
    finally:
        store.close()


def test_downgrading_0010_keeps_every_label_readable(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="regression", feature_names=["a"])
        store.write_records(
            [
                RequestRecord("m", rid, datetime.now(UTC), "infer", n, 1, b"\0" * 4 * n)
                for rid, n in (("one", 1), ("two", 2))
            ],
            [],
        )
        store.add_labels("m", [LabelItem("one", 0.1), LabelItem("two", [0.5, 1.5])])
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0009")
        assert store.get_label("m", "one").value == 0.1  # type: ignore[union-attr]
        assert store.get_label("m", "two").value == [0.5, 1.5]  # type: ignore[union-attr]
        store.migrate()
        assert store.add_labels("m", [LabelItem("one", 0.1)]) == ["duplicate"]
        assert store.get_label("m", "two").value == [0.5, 1.5]  # type: ignore[union-attr]
    finally:
        store.close()


def test_episodes_whose_retune_was_suppressed_before_0011_are_open_again(
    store_url: str,
) -> None:
    """Before the fix a suppressed retune closed its alert episode for good; after the
    upgrade the next delivery of a still-firing one gets its job."""
    engine = sa.create_engine(store_url)
    decisions = {
        "quota": ("firing", "retune suppressed: quota: 2 tuning jobs active"),
        "cooling": ("firing", "retune suppressed: cool-down: 12 min left (60 min)"),
        "resolved": ("resolved", "retune suppressed: quota: 2 tuning jobs active"),
        "taken": ("firing", "retune taken (job 3): alert_received recorded for retune"),
    }
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0010")
            for fingerprint, (status, decision) in decisions.items():
                conn.execute(
                    sa.text(
                        "INSERT INTO alert_episodes (fingerprint, starts_at, model, alertname, "
                        "status, labels, received_at, decision) VALUES (:f, 't0', 'm', 'A', "
                        ":status, '{}', CURRENT_TIMESTAMP, :decision)"
                    ),
                    {"f": fingerprint, "status": status, "decision": decision},
                )
            command.upgrade(alembic_config(conn), "0011")
            after = dict(
                conn.execute(sa.text("SELECT fingerprint, decision FROM alert_episodes")).all()
            )
    finally:
        engine.dispose()
    assert after == {
        "quota": None,
        "cooling": None,
        "resolved": decisions["resolved"][1],
        "taken": decisions["taken"][1],
    }
    store = Store.open(store_url)
    try:
        claim = store.claim_alert_episode(
            fingerprint="quota", starts_at="t0", model="m", alertname="A", labels={}
        )
        assert claim is not None  # the next delivery of the still-firing alert acts
    finally:
        store.close()


def test_0012_keeps_an_index_the_operator_built_beforehand(store_url: str) -> None:
    """On a large PostgreSQL store an operator builds the outputs index ahead with
    ``CREATE INDEX CONCURRENTLY`` (no write lock); the upgrade keeps it, then verifies."""
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0011")
            conn.execute(
                sa.text(
                    "CREATE INDEX ix_outputs_model_version_created_at ON outputs "
                    "(model, version, created_at) WHERE latency_s IS NOT NULL"
                )
            )
            command.upgrade(alembic_config(conn), "head")
            indexes = {
                i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("outputs")
            }
    finally:
        engine.dispose()
    assert indexes["ix_outputs_model_version_created_at"] == ["model", "version", "created_at"]
    assert "ix_outputs_model_created_at" not in indexes


_INDEXES_0015 = {
    "evaluations": ("ix_evaluations_model_window_end_id", ["model", "window_end", "id"]),
    "comparison_looks": ("ix_comparison_looks_test_id_id", ["test_id", "id"]),
    "labels": ("ix_labels_model_received_at", ["model", "received_at"]),
}


def _indexes(conn: sa.Connection, table: str) -> dict[str, list[str | None]]:
    return {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes(table)}


def test_0015_keeps_an_index_the_operator_built_beforehand(store_url: str) -> None:
    """``labels`` is as large as the scoring history: on PostgreSQL an operator builds its
    index ahead with ``CREATE INDEX CONCURRENTLY``; the upgrade keeps it, builds the rest."""
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0014")
            conn.execute(
                sa.text("CREATE INDEX ix_labels_model_received_at ON labels (model, received_at)")
            )
            command.upgrade(alembic_config(conn), "head")
            indexes = {table: _indexes(conn, table) for table in _INDEXES_0015}
    finally:
        engine.dispose()
    for table, (name, columns) in _INDEXES_0015.items():
        assert indexes[table][name] == columns, (table, indexes[table])


def test_downgrading_0015_drops_its_indexes_and_upgrading_builds_them_again(
    store_url: str,
) -> None:
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
            command.downgrade(alembic_config(conn), "0014")
            downgraded = {table: _indexes(conn, table) for table in _INDEXES_0015}
            command.upgrade(alembic_config(conn), "head")
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    for table, (name, _) in _INDEXES_0015.items():
        assert name not in downgraded[table], (table, downgraded[table])
    assert differences == []


def test_watches_before_0013_keep_their_promotion_and_a_pair_promoted_again_gets_its_own(
    store_url: str,
) -> None:
    """Revision 0013: v2 over v1, back to v1, v2 again. Each watch written before it is
    tied to the promotion it was started for, and the second promotion of v2 over v1 may
    have a watch of its own (the pair's first one held the only place). A downgrade keeps
    each pair's newest watch, deleting the older one with what points at it."""
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0012")
        promotions = [
            store.add_event(model="m", type="promoted", payload={"version": v, "previous": p})
            for v, p in ((2, 1), (1, 2), (2, 1))
        ]
        watched = promotions[:2]  # before 0013 the third got no watch
        with store.engine.begin() as conn:
            for event in watched:
                payload = event.payload
                conn.execute(
                    sa.insert(comparison_tests).values(
                        model="m",
                        kind="rollback_watch",
                        champion_version=payload["previous"],
                        challenger_version=payload["version"],
                        status="closed",
                        decision="continue",
                        n=0,
                        looks=0,
                        state={"promoted_at": event.created_at.isoformat()},
                        created_at=event.created_at + timedelta(seconds=1),
                        updated_at=event.created_at + timedelta(seconds=1),
                    )
                )
            [first_id] = conn.execute(sa.select(sa.func.min(comparison_tests.c.id))).one()
            conn.execute(
                sa.insert(comparison_consumed).values(test_id=first_id, request_id="r0", look=1)
            )
            command.upgrade(alembic_config(conn), "head")
        comparisons = ComparisonStore(store)
        first, back = comparisons.list_tests("m", kind="rollback_watch")
        assert (first.promotion_id, back.promotion_id) == (promotions[0].id, promotions[1].id)
        again, created = comparisons.get_or_create_test(
            model="m",
            kind="rollback_watch",
            champion_version=1,
            challenger_version=2,
            correction=None,
            state={},
            promotion_id=promotions[2].id,
        )
        assert created and again.id != first.id and again.status == "open"
        paired, _ = comparisons.get_or_create_test(
            model="m",
            kind="paired",
            champion_version=1,
            challenger_version=2,
            correction=None,
            state={},
        )
        assert paired.promotion_id == 0
        with store.engine.begin() as conn:
            conn.execute(
                sa.insert(comparison_consumed).values(test_id=back.id, request_id="r1", look=1)
            )
            command.downgrade(alembic_config(conn), "0012")
            kept = conn.execute(sa.text("SELECT id FROM comparison_tests ORDER BY id")).all()
            consumed = conn.execute(sa.text("SELECT test_id FROM comparison_consumed")).all()
            command.upgrade(alembic_config(conn), "head")
        assert kept == [(back.id,), (again.id,), (paired.id,)]
        assert consumed == [(back.id,)]  # the deleted watch's went with it
        assert [t.promotion_id for t in comparisons.list_tests("m")] == [
            promotions[1].id,
            promotions[2].id,  # the newest of its pair before it was created
            0,
        ]
    finally:
        store.close()


def test_split_checks_before_0016_have_no_count_start_and_a_downgrade_keeps_them(
    store_url: str,
) -> None:
    """Revision 0016: each split check records where its count started and since when
    its split's settings applied. A check stored before reads both as unknown (``None``);
    a downgrade drops the columns and keeps the checks."""
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0015")
            conn.execute(
                sa.text(
                    "INSERT INTO split_checks (model, champion_version, challenger_version, "
                    "salt, percent, n_champion, n_challenger, chi2, p_value, mismatch, "
                    "created_at) VALUES ('m', 1, 2, 'exp-1', 50.0, 5300, 4700, 36.0, 1e-5, "
                    "true, CURRENT_TIMESTAMP)"
                )
            )
            command.upgrade(alembic_config(conn), "head")
        older = store.latest_split_window("m")
        assert older is not None and (older.since, older.settings_since) == (None, None)
        assert (older.check.salt, older.check.n_champion, older.check.mismatch) == (
            "exp-1",
            5300,
            True,
        )
        start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
        ramped = start + timedelta(hours=5, microseconds=123)
        ComparisonStore(store).add_split_check(
            model="m",
            champion_version=1,
            challenger_version=2,
            salt="exp-1",
            percent=20.0,
            n_champion=80,
            n_challenger=20,
            chi2=0.0,
            p_value=1.0,
            mismatch=False,
            since=ramped,
            settings_since=ramped,
        )
        newer = store.latest_split_window("m")
        assert newer is not None and (newer.since, newer.settings_since) == (ramped, ramped)
        assert newer.check.percent == 20.0
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0015")
            kept = conn.execute(
                sa.text("SELECT percent, n_champion FROM split_checks ORDER BY id")
            ).all()
            command.upgrade(alembic_config(conn), "head")
        assert kept == [(50.0, 5300), (20.0, 80)]
    finally:
        store.close()


def test_a_split_logged_before_0017_is_counted_whole_once_and_a_downgrade_drops_its_count(
    store_url: str,
) -> None:
    """Revision 0017: a split's units are counted incrementally from a stored count. A
    store upgraded with a split running has no count yet: the first check counts the
    whole split, and the next ones go on from there. A downgrade drops the count; upgraded
    again, the split is counted whole again."""
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0016")
        start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
        x = np.zeros((1, 1), dtype=np.float32).tobytes()
        p = np.asarray([[0.5, 0.5]], dtype=np.float32).tobytes()
        store.write_records(
            [
                RequestRecord(
                    "m", f"r{i}", start - timedelta(days=3 - i), "infer", 1, 1, x, unit_key=f"u{i}"
                )
                for i in range(3)
            ],
            [
                OutputRecord(
                    "m", f"r{i}", 1 + i % 2, ("champion", "challenger")[i % 2], 0.001, 1, 2, p
                )
                for i in range(3)
            ],
        )
        with store.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        comparisons = ComparisonStore(store)
        assert comparisons.count_split_arms(model="m", challenger_version=2, since=None) == (2, 1)
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0016")
            tables = set(sa.inspect(conn).get_table_names())
            command.upgrade(alembic_config(conn), "head")
        assert "split_counts" not in tables and "split_count_units" not in tables
        assert comparisons.count_split_arms(model="m", challenger_version=2, since=None) == (2, 1)
    finally:
        store.close()


def test_a_downgrade_below_0021_drops_the_stored_safe_ranges_and_an_upgrade_starts_empty(
    store_url: str,
) -> None:
    """Revision 0021: the promotion safe ranges a daemon stored from its config. A
    downgrade drops them, models untouched; upgraded again, the table is empty until a
    daemon starts and stores them again."""
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        ranges = StoredSafeRanges(safe_ranges={"C": SafeBound(low=0.01, high=5.0)})
        assert store.set_safe_ranges("m", ranges, actor="ci", reason="config")
        assert store.get_model("m").stored_safe_ranges == ranges
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0020")
            tables = set(sa.inspect(conn).get_table_names())
            models = conn.execute(sa.text("SELECT name FROM models")).all()
            command.upgrade(alembic_config(conn), "head")
        assert "promotion_safe_ranges" not in tables and models == [("m",)]
        assert store.get_model("m").stored_safe_ranges is None
        assert store.stored_safe_ranges("m") is None
        assert store.set_safe_ranges("m", ranges, actor="ci", reason="config")
    finally:
        store.close()


@pytest.mark.postgres
def test_processes_opening_one_new_postgres_store_together_all_get_it(pg_url: str) -> None:
    """Replicas started together on an empty database each migrate it. Without the
    migration's advisory lock, 3 of 4 processes racing a first start failed ("relation
    ... already exists", a duplicate ``alembic_version`` row)."""
    import multiprocessing

    from store_openers import open_together

    ctx = multiprocessing.get_context("spawn")  # fork is unsafe in a threaded test process
    barrier, outcomes = ctx.Barrier(4, timeout=120), ctx.Queue()
    processes = [
        ctx.Process(target=open_together, args=(pg_url, barrier, outcomes)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    reported = [outcomes.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert reported == [None] * 4
    store = Store.open(pg_url)
    try:
        with store.engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
            assert list(stored) == [
                ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
            ]
    finally:
        store.close()
