"""The tuning page's first view after a restart: every finished study it shows is read
from the real Optuna storage through one storage opened once (each opening an RDB
storage took ~0.2 s: 100 studies, 12 s), a study that cannot be read is still skipped
and tried again after the retry period, and two viewers of the cold page do not both
read the studies."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import optuna
import pytest
from optuna.distributions import FloatDistribution

from retune._optuna import close_storage, load_history, make_storage
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch.dashboard._data import Sources, TrialCache, tuning
from tunewatch.store._schema import jobs

MODEL = "tuned"
STUDIES = 40
TRIALS = 3
WHEN = datetime(2025, 6, 1, tzinfo=UTC)


@dataclass
class Opener:
    """Opens the real storage for reading, as the default does, and counts the openings.
    With ``hold``, the first opening sets ``holding`` and waits for ``release``; any
    later one sets ``decided``."""

    opened: list[str] = field(default_factory=list)
    hold: bool = False
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    decided: threading.Event = field(default_factory=threading.Event)

    def __call__(self, url: str) -> optuna.storages.BaseStorage:
        self.opened.append(url)
        if self.hold and len(self.opened) == 1:
            self.holding.set()
            assert self.release.wait(60), "the test never released the first opening"
        elif self.hold:
            self.decided.set()
        return make_storage(url, heartbeat_interval=None)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    raw = {
        "data_dir": str(tmp_path_factory.mktemp("tuning-reads")),
        "scheduler": {"enabled": False},
        "tuning": {"workers": 0},
    }
    running = Daemon(build_config(raw, env={}), env={})
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def tuned(daemon: Daemon) -> list[str]:
    """Model ``tuned``: one succeeded job per study, each study in the tuning storage."""
    names = [f"{MODEL}-study-{i}" for i in range(STUDIES)]
    _model_with_studies(daemon, MODEL, names, made=STUDIES)
    return names


def _sources(daemon: Daemon) -> Sources:
    return Sources(
        store=daemon.store,
        runner=daemon.comparisons,
        tuning_storage=daemon.config.tuning_storage_url,
    )


def _values(i: int) -> list[float]:
    return [0.5 - 0.01 * i - 0.1 * k for k in range(TRIALS)]


def _make_studies(storage_url: str, names: list[str]) -> None:
    """Small finished studies, made through one storage."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(storage_url, heartbeat_interval=None)
    try:
        dist = {"x": FloatDistribution(0.0, 1.0)}
        for i, name in enumerate(names):
            study = optuna.create_study(study_name=name, storage=storage)
            study.add_trials(
                [
                    optuna.trial.create_trial(params={"x": k / 10}, distributions=dist, value=v)
                    for k, v in enumerate(_values(i))
                ]
            )
    finally:
        close_storage(storage)


def _model_with_studies(daemon: Daemon, model: str, names: list[str], *, made: int) -> None:
    """``model`` with one succeeded job per study in ``names``; the first ``made`` of
    them exist in the tuning storage."""
    daemon.store.ensure_model(name=model, task="binary", feature_names=["a"])
    _make_studies(daemon.config.tuning_storage_url, names[:made])
    row = {"kind": "retune", "status": "succeeded", "trigger": {}, "spec": {}, "progress": {}}
    with daemon.store.engine.begin() as conn:
        conn.execute(
            jobs.insert(),
            [{**row, "model": model, "result": {"study": n}, "created_at": WHEN} for n in names],
        )


def _trials_by_study(page: dict[str, object]) -> dict[str, list[float] | None]:
    out: dict[str, list[float] | None] = {}
    for job in page["jobs"]:  # type: ignore[attr-defined]
        found = job["trials"]
        out[job["study"]] = None if found is None else [t["value"] for t in found]
    return out


def _cache(opener: Opener, clock: Callable[[], float] | None = None) -> TrialCache:
    load = functools.partial(load_history, open_storage=opener)
    if clock is None:
        return TrialCache(load=load)
    return TrialCache(load=load, clock=clock, retry_after_s=300.0)


def test_a_cold_tuning_page_reads_every_study_through_one_storage_opening(
    daemon: Daemon, tuned: list[str]
) -> None:
    opener = Opener()
    cache = _cache(opener)

    page = tuning(_sources(daemon), MODEL, trial_cache=cache)

    assert len(opener.opened) == 1, f"{len(opener.opened)} storage openings"
    assert opener.opened[0] == daemon.config.tuning_storage_url
    assert _trials_by_study(page) == {n: _values(i) for i, n in enumerate(tuned)}
    again = tuning(_sources(daemon), MODEL, trial_cache=cache)
    assert len(opener.opened) == 1  # finished studies never change: cached
    assert again["jobs"] == page["jobs"]


def test_a_study_that_cannot_be_read_is_skipped_and_read_again_only_after_the_retry_period(
    daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    model = "half-gone"
    names = [f"{model}-study-{i}" for i in range(10)] + [f"{model}-gone"]
    _model_with_studies(daemon, model, names, made=10)
    opener, clock = Opener(), _Clock()
    cache = _cache(opener, clock)
    caplog.set_level(logging.WARNING, logger="tunewatch.dashboard._data")

    first = _trials_by_study(tuning(_sources(daemon), model, trial_cache=cache))

    assert first == {**{n: _values(i) for i, n in enumerate(names[:10])}, names[10]: None}
    warned = [r.getMessage() for r in caplog.records if "cannot read the trials" in r.message]
    assert len(warned) == 1 and repr(names[10]) in warned[0]
    read = len(opener.opened)
    clock.now += 299.0
    assert _trials_by_study(tuning(_sources(daemon), model, trial_cache=cache)) == first
    assert len(opener.opened) == read  # nothing read again within the retry period

    _make_studies(daemon.config.tuning_storage_url, [names[10]])
    clock.now += 2.0
    after = _trials_by_study(tuning(_sources(daemon), model, trial_cache=cache))
    assert len(opener.opened) == read + 1  # only the study that failed is read again
    assert after == {**first, names[10]: _values(0)}


class _Waiting(logging.Handler):
    """Sets ``seen`` when the cache says a view waits for another view's read."""

    def __init__(self, seen: threading.Event) -> None:
        super().__init__(logging.DEBUG)
        self.seen = seen

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting for another view" in record.getMessage():
            self.seen.set()


def test_two_viewers_of_a_cold_tuning_page_read_the_studies_once(
    daemon: Daemon, tuned: list[str]
) -> None:
    opener = Opener(hold=True)
    cache = _cache(opener)
    pages: list[dict[str, object]] = []
    waiting = _Waiting(opener.decided)
    logger = logging.getLogger("tunewatch.dashboard._data")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(waiting)

    def view() -> None:
        pages.append(tuning(_sources(daemon), MODEL, trial_cache=cache))

    first, second = threading.Thread(target=view), threading.Thread(target=view)
    try:
        first.start()
        assert opener.holding.wait(60)  # the first view is reading, its storage opening
        second.start()
        # the second view waits for the first's read (or, reading too, opens a storage)
        assert opener.decided.wait(60)
    finally:
        opener.release.set()
        first.join(60)
        second.join(60)
        logger.removeHandler(waiting)
        logger.setLevel(level)

    assert len(opener.opened) == 1, f"{len(opener.opened)} storage openings"
    assert opener.opened[0] == daemon.config.tuning_storage_url
    assert len(pages) == 2 and pages[0]["jobs"] == pages[1]["jobs"]
    assert _trials_by_study(pages[1]) == {n: _values(i) for i, n in enumerate(tuned)}
