"""A job's Optuna study name says which model it tunes: a model name too long to fit is
cut and ends with a hash of the whole name, so two long names sharing their first 186
characters no longer share the study names' model part (the study of ``"m" * 200`` was
not told from that of ``"m" * 199 + "n"``). Names that fit are as before."""

from __future__ import annotations

import hashlib
import re

import pytest

from tunewatch._errors import RegistrationError
from tunewatch._registry import check_caller_study
from tunewatch.store import Store
from tunewatch.store._job_queue import new_study_name

# a version row's ``study`` records the name
MAX_LEN = 200


def _model_part(study: str) -> str:
    return study.rsplit("-job", 1)[0]


def test_long_names_that_differ_at_the_end_get_study_names_that_differ_before_job() -> None:
    a, b = "m" * 200, "m" * 199 + "n"
    sa, sb = new_study_name(a, 3), new_study_name(b, 3)
    assert len(sa) <= MAX_LEN and len(sb) <= MAX_LEN
    assert _model_part(sa) != _model_part(sb)
    for model, study in ((a, sa), (b, sb)):
        digest = hashlib.sha256(model.encode()).hexdigest()[:16]
        assert re.fullmatch(rf"m+~{digest}-job3-[0-9a-f]{{8}}", study), study


def test_a_cut_name_fills_the_column_whatever_the_job_number() -> None:
    for job_id in (1, 12345, 10**12):
        study = new_study_name("x" * 500, job_id)
        assert len(study) == MAX_LEN
        assert study.startswith("x" * 100)


def test_a_short_model_name_is_kept_whole() -> None:
    assert re.fullmatch(r"credit-job7-[0-9a-f]{8}", new_study_name("credit", 7))


def test_a_name_that_just_fits_is_not_cut() -> None:
    model = "m" * (MAX_LEN - len("-job3-01234567"))
    study = new_study_name(model, 3)
    assert len(study) == MAX_LEN and _model_part(study) == model


def test_jobs_of_long_model_names_record_studies_that_fit_and_tell_them_apart(
    store: Store,
) -> None:
    studies = []
    for model in ("m" * 200, "m" * 199 + "n"):
        store.ensure_model(name=model, task="binary", feature_names=["a", "b"])
        job, _ = store.create_job(model=model, kind="retune", trigger={}, spec={})
        studies.append(store.get_job(job.id).spec["study"])
    sa, sb = studies
    assert len(sa) <= MAX_LEN and len(sb) <= MAX_LEN
    assert _model_part(sa) != _model_part(sb)


@pytest.mark.parametrize("length", [200, 195])
def test_a_caller_cannot_register_under_a_long_named_model_s_job_study(length: int) -> None:
    """A long model name's job studies end with its hash: a version registered by hand
    under one would stand in for that job's winner; another model's stays free."""
    model = "m" * length
    study = new_study_name(model, 7)
    with pytest.raises(RegistrationError, match="reserved for the studies"):
        check_caller_study(model, study)
    check_caller_study("m" * (length - 1) + "n", study)
