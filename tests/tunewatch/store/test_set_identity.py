"""A hyperparameter set's id is the hash of the pipeline it builds
(:func:`retune.space.pipeline_parameters`), whatever names and number types its record
spells out, and the set stores that pipeline form; each version keeps the record it was
registered with. Revision 0027 re-keys the sets an older store holds under the hash of
their spelling, merging those of one pipeline, and gives each version its own record
first. The same pipeline had one id per search space that tuned it and another when
registered by hand, and ``C: 1`` was another set than ``C: 1.0``: Grafana's ``hp``
legend, the dashboard and the report could not tell two versions were one
configuration."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from retune.space import pipeline_parameters
from tunewatch.store import Store, canonical_json, hyperparameter_set_id
from tunewatch.store._migrate import alembic_config

DEMO = {"estimator": "logistic", "C": 1.0}
TUNED = {"scaler": "none", "estimator": "logistic", "C": 1.0, "selector": "none"}
BY_HAND = {"estimator": "logistic", "C": 1}
ELSEWHERE = {"C": 1.0, "penalty": "l2"}  # a model trained elsewhere: names of its own
RECORDS = (DEMO, TUNED, BY_HAND, ELSEWHERE, {"alpha": 1.0}, {"alpha": 5000.0})


def _spelling_id(params: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()


def test_one_pipeline_is_one_set_id_however_it_is_recorded() -> None:
    assert hyperparameter_set_id(DEMO) == hyperparameter_set_id(TUNED)
    assert hyperparameter_set_id(DEMO) == hyperparameter_set_id(BY_HAND)
    assert hyperparameter_set_id({"estimator": "ridge", "alpha": 0}) == (
        hyperparameter_set_id({"estimator": "ridge", "alpha": -0.0, "C": 5.0})
    )
    assert hyperparameter_set_id(DEMO) != hyperparameter_set_id({**DEMO, "C": 2.0})
    # a set that does not say it is the pipeline's, or that it would not build so, is
    # known by its spelling: a regressor's {"alpha": 5000.0} registered by hand was read
    # as the default logistic model, one set with {"alpha": 1.0}
    for spelt in (ELSEWHERE, {}, {"alpha": 1.0}, {"alpha": 5000.0}):
        assert hyperparameter_set_id(spelt) == _spelling_id(spelt)


def _stored_sets(conn: sa.Connection) -> dict[str, Any]:
    rows = conn.execute(sa.text("SELECT id, params FROM hyperparameter_sets")).all()
    return {i: json.loads(p) if isinstance(p, str) else p for i, p in rows}  # SQLite: text


@pytest.mark.new_store
def test_versions_keep_their_records_and_an_upgrade_re_keys_older_sets(store_url: str) -> None:
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        for i, params in enumerate(RECORDS, start=1):
            store.add_version(
                model="m",
                artefact_sha256=f"{i:064d}",
                hyperparameters=params,
                size_bytes=1,
                actor="ci",
            )
        versions = range(1, len(RECORDS) + 1)
        rows = [store.get_version("m", v) for v in versions]
        ids = [r.hyperparameter_set_id for r in rows]
        assert ids[0] == ids[1] == ids[2] and len(set(ids)) == 4
        assert [r.hyperparameters for r in rows] == list(RECORDS)  # each its own record
        pipeline = pipeline_parameters(DEMO)
        with store.engine.begin() as conn:
            sets = _stored_sets(conn)
            assert sets[ids[0]] == pipeline and sets[ids[3]] == ELSEWHERE
            command.downgrade(alembic_config(conn), "0026")  # as before: sets by spelling
            before = _stored_sets(conn)
            command.upgrade(alembic_config(conn), "head")
            after = _stored_sets(conn)
        assert before == {_spelling_id(r): r for r in RECORDS}
        assert after == sets
        again = [store.get_version("m", v) for v in versions]
        assert [r.hyperparameter_set_id for r in again] == ids
        assert [r.hyperparameters for r in again] == list(RECORDS)
    finally:
        store.close()


def test_a_version_an_older_replica_registered_reads_its_set_s_parameters(
    store_url: str,
) -> None:
    """During a rolling upgrade a replica of the release before 0027 registers versions
    with no record of their own, on the set of their spelling: reading one raised
    ``TypeError`` (``dict(None)``), a 500 on every answer naming the version."""
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="regression", feature_names=["a"])
        store.add_version(
            model="m",
            artefact_sha256="1" * 64,
            hyperparameters={"alpha": 5000.0},
            size_bytes=1,
            actor="older-replica",
        )
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE model_versions SET hyperparameters = NULL"))
        assert store.get_version("m", 1).hyperparameters == {"alpha": 5000.0}
        assert [v.hyperparameters for v in store.list_versions("m")] == [{"alpha": 5000.0}]
    finally:
        store.close()
