"""A warm start learns from the model's earlier studies still in the Optuna storage. A
succeeded job's study the storage does not hold (tuned on another host's default
`<data_dir>/optuna.db`, before a failover) used to be dropped without a word: the plan
now says how many were missing and why, and the log warns."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from monitor.objectives import make_objective
from retune.space import load_search_space
from tests.tunewatch.tuning_plan import MODEL
from tunewatch._shipped_spaces import default_search_space
from tunewatch._tuning_plan import warm_start_plan
from tunewatch._tuning_results import study_name
from tunewatch.store import Store


def _succeeded_job(store: Store) -> str:
    """A succeeded retune of ``MODEL``; its study's name."""
    job, _ = store.create_job(model=MODEL, kind="retune", trigger={}, spec={})
    store.claim_job(job.id, "elsewhere")
    study = study_name(job)
    store.finish_job(job.id, status="succeeded", result={"study": study}, worker="elsewhere")
    return study


def test_a_plan_over_a_storage_missing_an_earlier_study_notes_how_many_and_why(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = _succeeded_job(store)
    storage = f"sqlite:///{tmp_path / 'this-host-optuna.db'}"
    with caplog.at_level(logging.WARNING, logger="tunewatch._tuning_plan"):
        plan = warm_start_plan(
            store,
            storage,
            MODEL,
            kind="combined",
            space=load_search_space(default_search_space("binary")),
            objective=make_objective("log_loss", task="binary"),
        )
    assert plan is not None
    assert plan.history_studies == ()
    [note] = plan.notes
    assert note.startswith("left out 1 earlier study not in this Optuna storage")
    assert study in note
    assert "tuning.storage_url" in note
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert study in warning and MODEL in warning
