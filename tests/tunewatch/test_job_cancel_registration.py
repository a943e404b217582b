"""A job cancelled while its worker registers the winner registers nothing.

The worker checked for a cancellation before registering, but the registration's
sandboxed load of the candidate takes about a second: a job cancelled in that window
ended ``cancelled`` while its study registered a shadow version (which could then be
promoted). The registration now names its job (``for_job``), and the store refuses it
(``ConflictError`` ``job_cancelled``) in the transaction that would insert the version,
the job's row locked. A cancellation that comes after the version's insert is refused
(``job_finished``, naming the version): the job is finishing as succeeded, and a job
``cancelled`` holding a registered version said what had not happened."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.tunewatch.conftest import MODEL
from tests.tunewatch.test_job_cancel import LOGISTIC
from tests.tunewatch.test_tuning import _config, _daemon
from tunewatch._artefacts import ArtefactStore
from tunewatch._errors import ConflictError
from tunewatch._example import ExampleModel
from tunewatch._registry import Registry
from tunewatch._tuning import TuningJobRunner
from tunewatch.store import Store, VersionRow


def _job(store: Store, model: str) -> tuple[int, str]:
    job, created = store.create_job(model=model, kind="retune", trigger={}, spec={})
    assert created
    return job.id, str(job.spec["study"])


def _register(store: Store, study: str, for_job: int) -> VersionRow:
    return store.register_version(
        model="a",
        task="binary",
        feature_names=["x"],
        artefact_sha256="0" * 64,
        hyperparameters={"C": 1.0},
        size_bytes=10,
        actor=f"job:{for_job}",
        study=study,
        stage="shadow",
        once_per_study=True,
        for_job=for_job,
    )


def test_a_registration_for_a_cancelled_job_is_refused_and_stores_nothing(
    store_with_model_a: Store,
) -> None:
    store = store_with_model_a
    job_id, study = _job(store, "a")
    store.claim_job(job_id, "w1")
    # the worker checked before registering; the cancel lands before the version's insert
    store.cancel_job(job_id, actor="alice", reason="queued by mistake")

    with pytest.raises(ConflictError) as caught:
        _register(store, study, job_id)

    assert caught.value.code == "job_cancelled"
    assert f"job {job_id}" in caught.value.message and "cancelled" in caught.value.message
    assert store.list_versions("a") == []
    assert store.audit_log(action="register_version") == []
    assert store.get_job(job_id).status == "cancelled"


def test_a_registration_for_a_running_job_is_stored(store_with_model_a: Store) -> None:
    store = store_with_model_a
    job_id, study = _job(store, "a")
    store.claim_job(job_id, "w1")

    row = _register(store, study, job_id)

    assert (row.version, row.study, row.stage) == (1, study, "shadow")


def test_cancelling_a_job_whose_study_registered_its_version_is_refused(
    store_with_model_a: Store,
) -> None:
    store = store_with_model_a
    job_id, study = _job(store, "a")
    store.claim_job(job_id, "w1")
    _register(store, study, job_id)  # its worker has not finished the job yet

    with pytest.raises(ConflictError) as caught:
        store.cancel_job(job_id, actor="alice", reason="too late")

    assert caught.value.code == "job_finished"
    assert "version 1" in caught.value.message
    job = store.get_job(job_id)
    assert job.status == "running"
    assert store.audit_log(action="cancel_job") == []
    assert store.finish_job(job_id, status="succeeded", worker="w1").status == "succeeded"


def test_the_registry_refuses_a_candidate_of_a_cancelled_job(
    trained: list[ExampleModel], store_url: str, tmp_path: Path
) -> None:
    store = Store.open(store_url)
    try:
        registry = Registry(store, ArtefactStore(tmp_path / "artefacts"))
        registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t", stage="champion")
        job_id, study = _job(store, MODEL)
        store.claim_job(job_id, "w1")
        store.cancel_job(job_id, actor="alice", reason="queued by mistake")
        metadata = trained[1].metadata
        metadata = type(metadata)(
            task=metadata.task,
            feature_names=metadata.feature_names,
            hyperparameters=dict(metadata.hyperparameters),
            study=study,
        )

        with pytest.raises(ConflictError) as caught:
            registry.register(
                MODEL,
                trained[1].onnx,
                metadata,
                actor=f"job:{job_id}",
                once_per_study=True,
                for_job=job_id,
            )

        assert caught.value.code == "job_cancelled"
        assert [v.version for v in store.list_versions(MODEL)] == [1]
    finally:
        store.close()


class _CancelledWhileRegistering(Registry):
    """A registry whose registration is overtaken by the job's cancellation: the cancel
    lands after the worker's last check, before the store inserts the version (in
    production: during the candidate's sandboxed load)."""

    job_id: int | None = None

    def register(self, *args: object, **kwargs: object) -> VersionRow:
        assert self.job_id is not None
        self._store.cancel_job(self.job_id, actor="alice", reason="queued by mistake")
        return super().register(*args, **kwargs)  # type: ignore[arg-type]


def test_a_job_cancelled_during_its_registration_registers_nothing(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    space = tmp_path / "logistic.yaml"
    space.write_text(yaml.safe_dump(LOGISTIC))
    d = _daemon(_config(tmp_path, search_space=str(space), max_trials=2), trained)
    try:
        outcome = d.dispatcher.handle(MODEL, "manual", {"reason": "test"})
        assert outcome.job_id is not None
        registry = _CancelledWhileRegistering(d.store, d.artefacts)
        registry.job_id = outcome.job_id
        runner = TuningJobRunner(
            store=d.store, registry=registry, artefacts=d.artefacts, config=d.config, worker="w"
        )

        job = runner.run(outcome.job_id)  # returns: the worker exits 0

        assert job.status == "cancelled" and job.result is None
        assert job.progress["phase"] == "cancelled"
        assert [v.version for v in d.store.list_versions(MODEL)] == [1]
        types = {e.type for e in d.store.list_events(model=MODEL)}
        assert "retune_cancelled" in types
        assert not types & {"challenger_registered", "retune_failed"}
    finally:
        d.close()
