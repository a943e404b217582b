"""`History.with_objectives`: a caller that knows from elsewhere what an older study's
losses mean (a study that recorded no objective) says so; a recorded one is kept."""

from __future__ import annotations

from monitor.objectives import make_objective
from retune.warmstart import History, HistoryTrial

LOG_LOSS = {"name": "log_loss", "params": {}}
BRIER = {"name": "brier", "params": {}}


def _history() -> History:
    trials = [
        HistoryTrial(study_name=s, number=i, params={"C": float(i + 1)}, value=v)
        for s in ("old", "pinned")
        for i, v in enumerate((0.3, 0.2))
    ]
    return History.from_trials(trials, objectives={"old": None, "pinned": BRIER})


def test_a_study_that_recorded_no_objective_takes_the_one_given_and_is_tuned_for_it() -> None:
    history = _history().with_objectives({"old": LOG_LOSS, "absent": LOG_LOSS})
    assert dict(history.objectives) == {"old": LOG_LOSS, "pinned": BRIER}
    same = history.tuned_for(make_objective("log_loss", task="binary"))
    assert same.study_names == ("old",)
    assert [t.rank for t in same.trials] == [1.0, 0.0]


def test_a_study_that_recorded_its_objective_keeps_it() -> None:
    history = _history().with_objectives({"pinned": LOG_LOSS})
    assert history.objectives["pinned"] == BRIER
    assert history.objectives["old"] is None
    assert history.tuned_for(make_objective("log_loss", task="binary")).study_names == ()
