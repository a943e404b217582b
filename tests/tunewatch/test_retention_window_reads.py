"""`recording.retention_days` keeps the whole ``evaluation.window_s`` windows an evaluation
reads, not only the ages they end at.

The label-delay alarm reads the ``window_s`` window of requests at least
``label_delay_alarm_s`` old, label drift the one of requests at least ``decay.maturity_s``
old: each reaches back the age plus ``window_s``. A retention of 31 days was accepted with
``window_s`` 30 days and ``label_delay_alarm_s`` 7 days, and the purge turned the alarm's
window of 600 requests over 29 days into 480 over 23."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.tunewatch.store.record_helpers import output_record, request_record
from tunewatch import ConfigError, build_config
from tunewatch._drift_report import aged_window
from tunewatch.store import LabelItem, Store

DAY = 86_400
# the reviewer's model: a 30-day window, the default 7-day label-delay alarm and decay
_WINDOW = {"window_s": 30 * DAY}


def _config(tmp_path: Path, retention_days: float, **evaluation: Any) -> Any:
    raw: dict[str, Any] = {
        "data_dir": str(tmp_path),
        "recording": {"retention_days": retention_days},
        "models": [{"name": "m", "task": "binary", "evaluation": evaluation}],
    }
    return build_config(raw, env={})


def test_retention_shorter_than_the_label_delay_alarm_plus_the_window_is_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, 31, **_WINDOW)
    message = str(info.value)
    assert "`recording.retention_days` (31 days = 2678400 s)" in message, message
    assert "`models.0.evaluation.label_delay_alarm_s` + `models.0.evaluation.window_s`" in message
    assert "(604800 + 2592000 = 3196800 s = 37 days)" in message, message


def test_retention_of_exactly_the_label_delay_alarm_plus_the_window_is_accepted(
    tmp_path: Path,
) -> None:
    assert _config(tmp_path, 37, **_WINDOW).recording.retention_days == 37


def test_retention_shorter_than_the_maturity_plus_the_window_is_refused(tmp_path: Path) -> None:
    evaluation = {**_WINDOW, "label_delay_alarm_s": 3600, "decay": {"maturity_s": 2 * DAY}}
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, 31.5, **evaluation)
    message = str(info.value)
    assert "`models.0.evaluation.decay.maturity_s` + `models.0.evaluation.window_s`" in message
    assert "(172800 + 2592000 = 2764800 s = 32 days)" in message, message
    assert _config(tmp_path, 32, **evaluation).recording.retention_days == 32


def test_retention_shorter_than_the_current_window_names_it(tmp_path: Path) -> None:
    """The alarm's window (an hour old) reaches further back, but a retention shorter
    than the window itself is said as such."""
    evaluation = {"window_s": 40 * DAY, "label_delay_alarm_s": 3600, "decay": {"maturity_s": 0}}
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, 39, **evaluation)
    message = str(info.value)
    assert "`models.0.evaluation.window_s` (3456000 s = 40 days)" in message, message
    accepted = _config(tmp_path, 40 + 1 / 24, **evaluation)
    assert accepted.recording.retention_days == 40 + 1 / 24


def test_a_window_of_rows_is_checked_by_the_ages_alone_as_before(tmp_path: Path) -> None:
    """The newest ``window_rows`` rows reach back as far as the traffic makes them: only
    the age their window ends at is known when the config loads."""
    config = _config(tmp_path, 31, window_rows=5000)
    assert config.recording.retention_days == 31


@pytest.fixture
def store(m_store: Store) -> Store:
    return m_store


def test_a_purge_at_the_retention_bound_leaves_the_label_delay_window_whole(
    store: Store, tmp_path: Path
) -> None:
    """Twenty requests a day for 40 days: the purge at the shortest retention accepted
    deletes none the alarm's window reads; a day shorter, it would."""
    evaluation = _config(tmp_path, 37, **_WINDOW).models[0].evaluation
    now = store.database_now()
    rids = [f"d{d}-{i}" for d in range(1, 41) for i in range(20)]
    store.write_records(
        [
            replace(request_record(rid), received_at=now - timedelta(days=d, minutes=i))
            for d in range(1, 41)
            for i in range(20)
            for rid in [f"d{d}-{i}"]
        ],
        [output_record(rid) for rid in rids],
    )
    store.add_labels("m", [LabelItem(request_id=rid, value=1.0) for rid in rids])
    model = store.get_model("m")

    def alarm_window() -> list[float]:
        age = evaluation.label_delay_alarm_s
        window = aged_window(store, model, evaluation, as_of=now, age_s=age)
        return sorted(window.received_at.tolist())

    before = alarm_window()
    assert len(before) == 30 * 20
    store.purge_records(before=now - timedelta(days=37), keep_job_windows=False)
    assert alarm_window() == before
    store.purge_records(before=now - timedelta(days=36), keep_job_windows=False)
    assert len(alarm_window()) < len(before)
