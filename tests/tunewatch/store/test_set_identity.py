"""A hyperparameter set's id is the hash of the pipeline it builds
(:func:`retune.space.pipeline_parameters`), whatever names and number types its record
spells out; revision 0027 re-keys the sets an older store holds under the hash of their
spelling, merging those of one pipeline. The same pipeline had one id per search space
that tuned it and another when registered by hand, and ``C: 1`` was another set than
``C: 1.0``: Grafana's ``hp`` legend, the dashboard and the report could not tell two
versions were one configuration."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from alembic import command

from tunewatch.store import Store, canonical_json, hyperparameter_set_id
from tunewatch.store._migrate import alembic_config

DEMO = {"estimator": "logistic", "C": 1.0}
TUNED = {"scaler": "none", "estimator": "logistic", "C": 1.0, "selector": "none"}
BY_HAND = {"estimator": "logistic", "C": 1}
ELSEWHERE = {"C": 1.0, "penalty": "l2"}  # a model trained elsewhere: names of its own


def _spelling_id(params: dict[str, object]) -> str:
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()


def test_one_pipeline_is_one_set_id_however_it_is_recorded() -> None:
    assert hyperparameter_set_id(DEMO) == hyperparameter_set_id(TUNED)
    assert hyperparameter_set_id(DEMO) == hyperparameter_set_id(BY_HAND)
    assert hyperparameter_set_id({"C": 1, "estimator": "ridge", "alpha": 0}) == (
        hyperparameter_set_id({"estimator": "ridge", "alpha": -0.0})
    )
    assert hyperparameter_set_id(DEMO) != hyperparameter_set_id({**DEMO, "C": 2.0})
    # a set the pipeline does not build as recorded is known by its spelling
    assert hyperparameter_set_id(ELSEWHERE) == _spelling_id(ELSEWHERE)
    assert hyperparameter_set_id({}) == _spelling_id({})


@pytest.mark.new_store
def test_versions_of_one_pipeline_share_its_set_and_an_upgrade_re_keys_older_sets(
    store_url: str,
) -> None:
    store = Store.open(store_url)
    try:
        store.ensure_model(name="m", task="binary", feature_names=["a"])
        for i, params in enumerate((DEMO, TUNED, BY_HAND, ELSEWHERE), start=1):
            store.add_version(
                model="m",
                artefact_sha256=f"{i:064d}",
                hyperparameters=params,
                size_bytes=1,
                actor="ci",
            )
        ids = [store.get_version("m", v).hyperparameter_set_id for v in (1, 2, 3, 4)]
        assert ids[0] == ids[1] == ids[2] != ids[3]
        with store.engine.begin() as conn:  # as a store before 0027 held them
            command.downgrade(alembic_config(conn), "0026")
            for version, params in ((1, DEMO), (2, TUNED), (3, BY_HAND)):
                old = _spelling_id(params)
                conn.execute(
                    sa.text(
                        "INSERT INTO hyperparameter_sets (id, params, created_at) "
                        "SELECT :old, :params, created_at FROM hyperparameter_sets "
                        "WHERE id = :new"
                    ),
                    {"old": old, "params": canonical_json(params), "new": ids[0]},
                )
                conn.execute(
                    sa.text(
                        "UPDATE model_versions SET hyperparameter_set_id = :old "
                        "WHERE model = 'm' AND version = :v"
                    ),
                    {"old": old, "v": version},
                )
            conn.execute(
                sa.text("DELETE FROM hyperparameter_sets WHERE id = :new"), {"new": ids[0]}
            )
            before = {r[0] for r in conn.execute(sa.text("SELECT id FROM hyperparameter_sets"))}
            command.upgrade(alembic_config(conn), "head")
            after = {r[0] for r in conn.execute(sa.text("SELECT id FROM hyperparameter_sets"))}
        assert len(before) == 4 and after == {ids[0], ids[3]}
        assert [store.get_version("m", v).hyperparameter_set_id for v in (1, 2, 3, 4)] == ids
        shown = [store.get_version("m", v).hyperparameters for v in (1, 2, 3)]
        assert shown[0] == shown[1] == shown[2] and shown[0] in (DEMO, TUNED, BY_HAND)
    finally:
        store.close()
