"""The latency ratio guardrail compares like with like. A shadow's recorded latency
covered the input cast, the output checks and the primary output besides the run, in a
deprioritised worker thread; the champion's the run alone, on the request path: the same
artefact as champion v1 and shadow v2 read p99 90 against 384 µs, and the ratio refused
it ("4.26x the champion's"). The ratio is now decided by replaying recorded requests
through fresh sessions of both versions, interleaved in one thread; the absolute cap reads
the same replay (the recorded p99 only without one, and says which), and a version's
latencies are read in its role only."""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import shadow._jobs as jobs
from shadow import OnnxModel
from shadow._deployment import LoadedVersion
from shadow._jobs import ShadowJob, score
from tests.tunewatch.conftest import MODEL, make_daemon
from tests.tunewatch.test_comparison_loop import write
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch.comparison import ComparisonConfig, ComparisonRunner, GuardrailSettings
from tunewatch.comparison._guardrails import Guardrails
from tunewatch.store._comparisons import ComparisonStore

LOOSE = GuardrailSettings(max_memory_ratio=None)


@functools.cache
def _forest_onnx() -> bytes:
    from sklearn.ensemble import RandomForestClassifier

    from retune import to_onnx

    x, y = example_data(1500, seed=0)
    rf = RandomForestClassifier(n_estimators=300, random_state=0, n_jobs=1).fit(x, y)
    return to_onnx(rf, 8, name="forest")


def large_forest(trained: list[ExampleModel]) -> ExampleModel:
    """A large random forest on the example problem (trained once): ~8x the logistic
    champion's run per row on this host (50 against 6 µs median), far past 1.2x."""
    meta = replace(trained[1].metadata, hyperparameters={"estimator": "random_forest"})
    return ExampleModel(name="forest", onnx=_forest_onnx(), metadata=meta)


@pytest.fixture
def forest(trained: list[ExampleModel]) -> ExampleModel:
    return large_forest(trained)


def _daemon(tmp_path: Path, champion: ExampleModel, challenger: ExampleModel) -> Daemon:
    d, _ = make_daemon(tmp_path / "data", [champion, challenger])
    return d


@pytest.fixture
def identical(tmp_path: Path, trained: list[ExampleModel]) -> Iterator[Daemon]:
    """The logistic artefact as champion v1 and as shadow v2 (of another dataset version:
    registered again as it was, it is that version again, refused as a retry)."""
    copy = replace(trained[0], metadata=replace(trained[0].metadata, dataset_version="a-copy"))
    d = _daemon(tmp_path, trained[0], copy)
    yield d
    d.close()


@pytest.fixture
def slower(tmp_path: Path, trained: list[ExampleModel], forest: ExampleModel) -> Iterator[Daemon]:
    """The logistic champion v1 and the large forest as shadow v2."""
    d = _daemon(tmp_path, trained[0], forest)
    yield d
    d.close()


def _traffic(
    d: Daemon,
    latency: dict[int, float | None],
    *,
    roles: dict[int, str] | None = None,
    n: int = 300,
) -> None:
    x, y = example_data(n, seed=3)
    answers = {1: np.zeros((n, 2), np.float32), 2: np.zeros((n, 2), np.float32)}
    write(d.store, ids=range(n), x=x, y=y, answers=answers, roles=roles, latency=latency)  # type: ignore[arg-type]


def _runner(d: Daemon, rules: GuardrailSettings = LOOSE) -> ComparisonRunner:
    return ComparisonRunner(
        d.store,
        d.config,
        dispatcher=d.dispatcher,
        metrics=d.metrics,
        settings={MODEL: ComparisonConfig(guardrails=rules)},
        clock=lambda: datetime.now(UTC),
    )


def _guardrails(d: Daemon, rules: GuardrailSettings = LOOSE) -> Any:
    loop = _runner(d, rules)
    champion = d.store.champion(MODEL)
    assert champion is not None
    return loop.guardrails(MODEL, champion, 2, loop.settings(MODEL))


# -- what a shadow's latency covers ------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_shadow_latency_times_the_model_run_alone(
    trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The champion's latency is its ``model.run``; a shadow's also covered the cast, the
    output check and the primary output (here made to take a second of the clock)."""
    clock = _Clock()

    class SlowAround(OnnxModel):
        def run(self, x: Any) -> Any:
            out = super().run(x)
            clock.now += 0.001
            return out

        def primary(self, outputs: Any) -> Any:
            clock.now += 1.0
            return super().primary(outputs)

    monkeypatch.setattr(jobs, "time", types.SimpleNamespace(perf_counter=clock))
    model = SlowAround.from_bytes(trained[0].onnx)
    loaded = LoadedVersion(version=2, model=model, hyperparameter_set="h", role="challenger")
    x, _ = example_data(1, seed=1)
    result = score(ShadowJob(MODEL, "r", x, (loaded,)), loaded)
    assert result.error is None
    assert result.latency_s == pytest.approx(0.001)


# -- a version's latencies in its role -------------------------------------------------------


def test_latencies_read_in_a_role_leave_the_version_s_other_role_out(identical: Daemon) -> None:
    """After a promotion the new champion's read held its shadow-era latencies too."""
    _traffic(identical, {1: 0.001, 2: 0.004}, n=100)  # v2 as a shadow: 4 ms
    x, y = example_data(100, seed=4)
    answers = {2: np.zeros((100, 2), np.float32)}
    write(
        identical.store,
        ids=range(100, 200),
        x=x,
        y=y,
        answers=answers,
        roles={2: "champion"},
        latency={2: 0.0005},
    )
    plain = identical.store.latencies(MODEL, versions=(2,))
    assert plain[2].size == 200
    read = identical.store.latencies(MODEL, versions=(1, 2), roles={2: "champion"})
    assert read[2].size == 100 and set(read[2]) == {0.0005}
    assert read[1].size == 100
    aligned = identical.store.latencies(
        MODEL, versions=(1, 2), newest=50, aligned_to=1, roles={1: "champion", 2: "champion"}
    )
    assert set(aligned.get(2, np.empty(0))) <= {0.0005}


# -- the ratio by replay ---------------------------------------------------------------------


def test_the_same_artefact_as_champion_and_shadow_passes_the_latency_ratio(
    identical: Daemon,
) -> None:
    """Recorded as the reviewer measured it (champion 90 µs, the shadow 384 µs p99): the
    replay finds the two alike, and the notes say what it measured."""
    _traffic(identical, {1: 0.00009, 2: 0.000384})
    result = _guardrails(identical)
    assert result.passed, result.violations
    [note] = [n for n in result.notes if n.startswith("latency ratio by replay")]
    assert "v2 p99" in note and "v1's" in note and "runs each" in note


def test_a_much_slower_challenger_is_refused_on_the_replayed_ratio(slower: Daemon) -> None:
    """Recorded alike (1 ms each), the forest is refused: the replay runs both."""
    _traffic(slower, {1: 0.001, 2: 0.001})
    result = _guardrails(slower)
    assert not result.passed
    assert any(v.startswith("max_latency_p99_ratio") for v in result.violations), result
    assert any(n.startswith("latency ratio by replay") for n in result.notes)


def test_a_mirrored_champion_s_registered_artefact_checks_the_ratio_by_replay(
    slower: Daemon,
) -> None:
    """Mirror mode records the champion's answers without latencies: the ratio was not
    checked at all, and a much slower winner was promoted. Its artefact is registered:
    the replay measures it."""
    _traffic(slower, {1: None, 2: 0.001}, roles={1: "external", 2: "challenger"})
    result = _guardrails(slower)
    assert any(v.startswith("max_latency_p99_ratio") for v in result.violations), result


# -- the absolute cap -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "note"),
    [(1.2, "latency ratio by replay"), (None, "latency by replay")],
    ids=["ratio-on", "ratio-off"],
)
def test_the_same_artefact_as_shadow_passes_a_cap_of_twice_the_champion_s_p99(
    identical: Daemon, ratio: float | None, note: str
) -> None:
    """Recorded as the reviewer measured it (the champion 0.66 ms p99 on the request path,
    the same artefact as shadow 2.12 ms in its worker thread), a cap of twice the
    champion's refused the champion's own artefact. The cap reads the replay (a logistic
    run: some 10 µs), as the ratio does, with the ratio off too."""
    _traffic(identical, {1: 0.00066, 2: 0.00212})
    rules = LOOSE.model_copy(update={"max_latency_p99_s": 0.00132, "max_latency_p99_ratio": ratio})
    result = _guardrails(identical, rules)
    assert result.passed, result.violations
    assert any(n.startswith(note + ": v2 p99 ") for n in result.notes), result.notes


def test_a_much_slower_challenger_is_refused_by_the_cap_on_its_replayed_p99(
    slower: Daemon,
) -> None:
    """Recorded under the cap (2 µs), the 300-tree forest replays far over 5 µs (some
    50 µs a run): refused, and the violation says the figure is the replay's."""
    _traffic(slower, {1: 0.000002, 2: 0.000002})
    rules = LOOSE.model_copy(update={"max_latency_p99_s": 0.000005, "max_latency_p99_ratio": None})
    result = _guardrails(slower, rules)
    [violation] = [v for v in result.violations if v.startswith("max_latency_p99_s")]
    assert "exceeds 5e-06 s (v2's p99 by replay" in violation, violation


def test_without_a_replay_the_cap_reads_the_recorded_p99_and_says_so(identical: Daemon) -> None:
    """The artefact gone, the replay cannot run: the cap reads the recorded p99, and the
    refusal says so and why."""
    _traffic(identical, {1: 0.001, 2: 0.001})
    v2 = identical.store.get_version(MODEL, 2)
    Path(identical.artefacts.path(v2.artefact_sha256)).unlink()
    result = _guardrails(identical, LOOSE.model_copy(update={"max_latency_p99_s": 0.0005}))
    [violation] = result.violations
    assert violation.startswith(
        "max_latency_p99_s: challenger p99 latency 0.001 s exceeds 0.0005 s (v2's recorded p99"
    ), violation
    assert "the replay could not run" in violation, violation


def test_an_open_test_s_preview_caps_the_recorded_p99_and_says_so(identical: Daemon) -> None:
    """A preview does not replay: the cap reads the recorded p99, named as such."""
    _traffic(identical, {1: 0.001, 2: 0.001})
    champion = identical.store.champion(MODEL)
    assert champion is not None
    rules = LOOSE.model_copy(update={"max_latency_p99_s": 0.0005})
    guard = Guardrails(identical.store, identical.config, ComparisonStore(identical.store))
    result = guard.check(MODEL, champion, 2, ComparisonConfig(guardrails=rules), replay=False)
    [violation] = result.violations
    assert "(v2's recorded p99; not replayed: a preview" in violation, violation


def test_without_the_challenger_s_artefact_the_ratio_falls_back_to_the_live_latencies(
    slower: Daemon,
) -> None:
    """A replay that cannot run (the artefact is gone) leaves the ratio to the recorded
    latencies, each version's in its role, and says so."""
    _traffic(slower, {1: 0.001, 2: 0.001})
    v2 = slower.store.get_version(MODEL, 2)
    Path(slower.artefacts.path(v2.artefact_sha256)).unlink()
    result = _guardrails(slower)
    assert result.passed, result.violations
    assert any("replay could not run" in n for n in result.notes), result.notes


def test_an_open_test_s_preview_does_not_replay_and_says_the_ratio_is_decided_later(
    slower: Daemon,
) -> None:
    """The A/B page and ``GET .../comparisons`` show an open test's guardrails at every
    view: replayed there, each view paid up to ``latency_replay_s`` per challenger. The
    preview leaves the ratio to the decision and notes the recorded one."""
    _traffic(slower, {1: 0.001, 2: 0.001})
    loop = _runner(slower)
    loop.run(MODEL)
    [item] = [i for i in loop.summary(MODEL) if i.test.challenger_version == 2]
    assert item.test.status == "open" and item.guardrails is not None
    assert item.guardrails.passed, item.guardrails
    assert not any(n.startswith("latency ratio by replay") for n in item.guardrails.notes)
    [note] = [n for n in item.guardrails.notes if "not checked in this preview" in n]
    assert "1x" in note, note


@pytest.mark.parametrize(
    ("challenger_s", "refused"),
    [(0.00002, False), (0.00004, True)],
    ids=["10us-apart", "30us-apart"],
)
def test_a_p99_within_the_minimum_difference_never_breaks_the_ratio(
    slower: Daemon, challenger_s: float, refused: bool
) -> None:
    """Microseconds apart, a ratio is noise: the example gradient boosting replayed at
    1.02-1.18x the logistic model on a loaded host. Read here from recorded latencies (the
    challenger's artefact gone, so the replay cannot run): 2x the champion's 10 µs is
    within the default 20 µs, 4x is not."""
    _traffic(slower, {1: 0.00001, 2: challenger_s})
    v2 = slower.store.get_version(MODEL, 2)
    Path(slower.artefacts.path(v2.artefact_sha256)).unlink()
    result = _guardrails(slower)
    assert any(v.startswith("max_latency_p99_ratio") for v in result.violations) is refused
    assert any("min_latency_difference_s" in n for n in result.notes) is not refused


def test_the_replay_stops_at_its_time_limit_between_any_two_runs(identical: Daemon) -> None:
    """The limit was read once per pass over the replayed requests: 200 requests ran 200
    runs each past it (a pass of one 4,096-row request ran a forest 5.6 s against 2 s).
    Past a limit already spent, the replay stops at ``min_latency_samples`` runs."""
    _traffic(identical, {1: 0.001, 2: 0.001})
    rules = LOOSE.model_copy(update={"latency_replay_s": 1e-6, "min_latency_samples": 20})
    result = _guardrails(identical, rules)
    [note] = [n for n in result.notes if n.startswith("latency ratio by replay")]
    assert "(20 runs each" in note, note
