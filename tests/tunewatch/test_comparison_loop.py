"""The comparison loop on a real store with the example ONNX models: paired tests that
promote a clearly better challenger, leave an equal one alone and survive a restart;
guardrails and the approval gate; the rollback watch."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.objectives import _base as objectives_base
from monitor.objectives import make_objective
from shadow import OnnxModel
from shadow.stats import PairedSequentialTest, StatsError
from shadow.stats import _paired as paired_module
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch import _governance as governance
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch.comparison import ComparisonConfig, ComparisonRunner, GuardrailSettings
from tunewatch.store import LabelItem, OutputRecord, RequestRecord, Store
from tunewatch.store._comparisons import ComparisonStore

# A challenger scoring the true probabilities beats the logistic champion by ~0.05 nats
# per request (sd ~0.3): fed 100 labelled requests per run (seed 7) the always-valid test
# (alpha 0.05, confidence sequence tuned for 1000) declares it better at the look with
# n = 900; the acceptance bound is 1000.
BETTER_AT = 900
BETTER_WITHIN = 1000
BATCH = 100


def oracle(x: np.ndarray) -> np.ndarray:
    """The data-generating probability of ``example_data`` (the best possible model)."""
    logit = 1.5 * x[:, 0] - x[:, 1] + 0.8 * x[:, 2] * x[:, 3] + 0.5 * np.sin(3 * x[:, 4])
    p = 1.0 / (1.0 + np.exp(-logit))
    return np.column_stack([1.0 - p, p]).astype(np.float32)


@dataclass
class Traffic:
    """Seeded example rows, labels, and what each ONNX model says about them."""

    x: np.ndarray
    y: np.ndarray
    logistic: np.ndarray
    gbm: np.ndarray


def traffic(trained: list[ExampleModel], n: int, seed: int) -> Traffic:
    x, y = example_data(n, seed=seed)
    outs = []
    for model in trained:
        session = OnnxModel.from_bytes(model.onnx)
        outs.append(session.primary(session.run(x)))
    return Traffic(x=x, y=y, logistic=outs[0], gbm=outs[1])


def write(
    store: Store,
    *,
    ids: Sequence[int],
    x: np.ndarray,
    y: np.ndarray,
    answers: dict[int, np.ndarray],
    roles: dict[int, str] | None = None,
    latency: dict[int, float] | None = None,
    received_at: datetime | None = None,
    model: str = MODEL,
    units: Sequence[str | None] | None = None,
    labelled: Sequence[bool] | None = None,
) -> None:
    """Write requests ``ids`` (one row each) with each version's output and the labels,
    the way the daemon records them (champion inline, challengers from the shadow queue);
    ``units`` gives each request's unit key (default none), ``labelled`` which requests
    have their label yet (default all)."""
    roles = roles or {}
    latency = latency or {}
    at = received_at or datetime.now(UTC)
    reqs, outs = [], []
    for j, i in enumerate(ids):
        rid = f"r{i}"
        row = np.ascontiguousarray(x[j : j + 1], dtype=np.float32)
        unit = None if units is None else units[j]
        reqs.append(
            RequestRecord(
                model, rid, at + timedelta(milliseconds=j), "infer", 1, 8, row.tobytes(), unit
            )
        )
        for version, values in answers.items():
            v = np.ascontiguousarray(values[j : j + 1], dtype=np.float32)
            role = roles.get(version, "champion" if version == min(answers) else "challenger")
            outs.append(
                OutputRecord(
                    model,
                    rid,
                    version,
                    role,
                    latency.get(version, 0.001),
                    1,
                    v.shape[1],
                    v.tobytes(),
                )  # type: ignore[arg-type]
            )
    store.write_records(reqs, outs)
    store.add_labels(
        model,
        [
            LabelItem(f"r{i}", float(y[j]))
            for j, i in enumerate(ids)
            if labelled is None or labelled[j]
        ],
    )


LOOSE = GuardrailSettings(max_memory_ratio=100.0)
# The watch against the previous champion's losses before the promotion (these tests
# write no shadow outputs of the previous champion; test_comparison_watch.py: paired).
UNPAIRED = {"paired": False, "min_n": 300}  # v1 answered 400 labelled requests


def runner(
    d: Daemon,
    model: str = MODEL,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    lineup_changed: Callable[[str], object] | None = None,
    **settings: object,
) -> ComparisonRunner:
    """A runner with these settings; after a promotion or rollback it reloads the lineup,
    or calls ``lineup_changed`` (``d.comparisons.on_lineup_change``: as the daemon does)."""
    settings = {"guardrails": LOOSE, "bootstrap_resamples": 0, **settings}
    cfg = ComparisonConfig.model_validate(settings)
    return ComparisonRunner(
        d.store,
        d.config,
        dispatcher=d.dispatcher,
        metrics=d.metrics,
        on_lineup_change=lineup_changed or d.runtime.load,
        settings={model: cfg},
        clock=clock,
    )


@pytest.fixture(scope="module")
def template(trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with the example champion (v1) and challenger (v2) registered once;
    each test works on its own copy."""
    path = tmp_path_factory.mktemp("template")
    d, _ = make_daemon(path, trained)
    d.close()
    return path


def copy_daemon(template: Path, target: Path, **extra: object) -> Daemon:
    shutil.copytree(template, target)
    config = build_config(
        {"data_dir": str(target), "scheduler": {"enabled": False}, **extra}, env={}
    )
    return Daemon(config, env={})


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


@pytest.fixture
def auc_daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:
    """The example models with ROC AUC as the objective: compared by group-sequential
    DeLong tests."""
    d = copy_daemon(
        template,
        tmp_path / "auc",
        models=[{"name": MODEL, "task": "binary", "objective": {"name": "roc_auc"}}],
    )
    yield d
    d.close()


def feed_better(d: Daemon, t: Traffic, start: int, stop: int, **kw: object) -> None:
    write(
        d.store,
        ids=range(start, stop),
        x=t.x[start:stop],
        y=t.y[start:stop],
        answers={1: t.logistic[start:stop], 2: oracle(t.x[start:stop])},
        **kw,  # type: ignore[arg-type]
    )


def promote_actions(d: Daemon) -> list[tuple[str, str]]:
    """The recorded outcomes of ``do: promote`` (oldest first): event type and reason."""
    return [
        (e.type, e.payload["reason"])
        for e in reversed(d.store.list_events(model=MODEL, limit=200))
        if e.type.startswith("action_") and e.payload.get("action") == "promote"
    ]


def test_better_challenger_is_promoted_within_documented_requests(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = traffic(trained, 2000, seed=7)
    loop = runner(daemon)
    promoted_at = None
    for start in range(0, 2000, BATCH):
        feed_better(daemon, t, start, start + BATCH)
        results = loop.run(MODEL)
        [paired] = [r for r in results if r.kind == "paired"]
        assert paired.fed == BATCH
        if paired.action == "promoted":
            assert paired.look is not None and paired.look.decision == "challenger_better"
            promoted_at = paired.look.n
            break
        assert paired.decision == "continue"
    assert promoted_at == BETTER_AT <= BETTER_WITHIN
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2
    assert daemon.runtime.model(MODEL).deployment.lineup.champion.version == 2  # type: ignore[union-attr]
    history = loop.history(MODEL, 2)
    assert [h.n for h in history] == list(range(BATCH, promoted_at + 1, BATCH))
    assert all(h.correction == "holm" and h.family_size == 1 for h in history)
    assert history[-1].ci_high is not None and history[-1].ci_high < 0
    # Decided once: the next run neither re-fires nor re-promotes.
    events = [e.type for e in daemon.store.list_events(model=MODEL, limit=50)]
    assert events.count("challenger_better") == 1 and events.count("promoted") == 1
    [(taken, reason)] = promote_actions(daemon)
    assert taken == "action_taken" and "v2 beat v1" in reason
    loop.run(MODEL)
    events = [e.type for e in daemon.store.list_events(model=MODEL, limit=50)]
    assert events.count("challenger_better") == 1


def test_a_report_that_cannot_be_written_does_not_stop_an_automatic_promotion(
    daemon: Daemon, trained: list[ExampleModel], caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon writes the new champion's report after the promotion is committed; when
    that raised, the exception escaped into the comparison run, past the lineup reload's
    caller and the rest of the run. It is logged instead: the report is rebuilt from the
    store on request."""
    (Path(daemon.config.data_dir) / "reports").write_text("not a folder")
    t = traffic(trained, 2000, seed=7)
    loop = runner(daemon, lineup_changed=daemon.comparisons.on_lineup_change)
    actions = []
    with caplog.at_level(logging.WARNING, logger="tunewatch._report"):
        for start in range(0, 2000, BATCH):
            feed_better(daemon, t, start, start + BATCH)
            actions += [r.action for r in loop.run(MODEL) if r.kind == "paired"]
            if "promoted" in actions:
                break
    assert actions[-1] == "promoted"
    assert daemon.runtime.model(MODEL).deployment.lineup.champion.version == 2  # type: ignore[union-attr]
    failures = [r for r in caplog.records if "rationale report" in r.getMessage()]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in failures)
    # the new champion's report and the replaced one's (which still said champion)
    assert [r.args[:2] for r in failures] == [(MODEL, 2), (MODEL, 1)]


def test_equal_challenger_is_not_declared_better(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The two example models' outputs, swapped between champion and challenger by a
    seeded coin per request: the losses are exchangeable, the true difference is zero."""
    t = traffic(trained, 2000, seed=11)
    swap = np.random.default_rng(5).random(2000) < 0.5
    champ = np.where(swap[:, None], t.gbm, t.logistic)
    chall = np.where(swap[:, None], t.logistic, t.gbm)
    loop = runner(daemon)
    for start in range(0, 2000, 250):
        s = slice(start, start + 250)
        write(
            daemon.store,
            ids=range(start, start + 250),
            x=t.x[s],
            y=t.y[s],
            answers={1: champ[s], 2: chall[s]},
        )
        [paired] = loop.run(MODEL)
        assert paired.decision == "continue" and paired.action == "none"
    assert paired.look is not None and paired.look.n == 2000
    assert paired.look.ci_low is not None and paired.look.ci_high is not None
    assert paired.look.ci_low < 0 < paired.look.ci_high
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1


def test_paired_state_survives_a_restart(daemon: Daemon, trained: list[ExampleModel]) -> None:
    t = traffic(trained, 600, seed=3)
    swap = np.random.default_rng(1).random(600) < 0.5
    champ = np.where(swap[:, None], t.gbm, t.logistic)
    chall = np.where(swap[:, None], t.logistic, t.gbm)
    for start, loop in ((0, runner(daemon)), (300, runner(daemon))):  # a new instance: restart
        s = slice(start, start + 300)
        write(
            daemon.store,
            ids=range(start, start + 300),
            x=t.x[s],
            y=t.y[s],
            answers={1: champ[s], 2: chall[s]},
        )
        loop.run(MODEL)
        assert loop.run(MODEL)[0].fed == 0  # nothing is fed twice
    history = runner(daemon).history(MODEL, 2)
    assert [h.n for h in history] == [300, 600]
    # The same test fed without interruption reaches the same evidence.
    reference = PairedSequentialTest(
        alpha=0.05, planned_n=1000, min_n=30, bootstrap_resamples=0, seed=2
    )
    loss = make_objective("log_loss")
    d = loss.per_request_loss(t.y, chall) - loss.per_request_loss(t.y, champ)
    reference.update(d[:300])
    look = reference.update(d[300:])
    assert history[-1].p_value == pytest.approx(look.p_value)
    assert history[-1].estimate == pytest.approx(look.estimate)


def test_guardrails_refuse_a_slow_large_winner(daemon: Daemon, trained: list[ExampleModel]) -> None:
    """v3 is a large forest: the latency ratio is decided by replaying recorded requests
    through both versions (the recorded latencies, 2 and 6 ms, are not what decides)."""
    from tests.tunewatch.test_latency_guardrail_replay import large_forest

    champion = daemon.store.get_version(MODEL, 1)
    assert champion.load_memory_bytes
    daemon.store.set_stage(MODEL, 2, "retired", actor="test", reason="replaced by v3")
    forest = large_forest(trained)
    daemon.store.add_version(
        model=MODEL,
        artefact_sha256=daemon.artefacts.put(forest.onnx),
        hyperparameters=dict(forest.metadata.hyperparameters),
        size_bytes=len(forest.onnx),
        actor="test",
        load_memory_bytes=champion.load_memory_bytes * 10,
    )
    t = traffic(trained, 2000, seed=7)
    loop = runner(
        daemon, guardrails=GuardrailSettings(max_latency_p99_ratio=1.2, max_memory_ratio=1.5)
    )
    result = None
    for start in range(0, 2000, BATCH):
        write(
            daemon.store,
            ids=range(start, start + BATCH),
            x=t.x[start : start + BATCH],
            y=t.y[start : start + BATCH],
            answers={1: t.logistic[start : start + BATCH], 3: oracle(t.x[start : start + BATCH])},
            latency={1: 0.002, 3: 0.006},
        )
        [result] = [r for r in loop.run(MODEL) if r.challenger_version == 3]
        if result.decision != "continue":
            break
    assert result is not None and result.action == "refused"
    assert any(v.startswith("max_latency_p99_ratio") for v in result.detail)
    assert any(v.startswith("max_memory_ratio") for v in result.detail)
    [refused] = daemon.store.list_events(model=MODEL, type="promotion_refused")
    assert any("x the champion" in v for v in refused.payload["violations"])
    assert any(
        n.startswith("latency ratio by replay") for n in refused.payload["guardrails"]["notes"]
    )
    champion_now = daemon.store.champion(MODEL)
    assert champion_now is not None and champion_now.version == 1
    # the log says what happened: refused, not a promotion taken
    [(refused_action, reason)] = promote_actions(daemon)
    assert refused_action == "action_refused" and "max_memory_ratio" in reason
    loop.run(MODEL)
    assert len(daemon.store.list_events(model=MODEL, type="promotion_refused")) == 1


def test_regulated_winner_waits_for_an_approver(
    trained: list[ExampleModel], template: Path, tmp_path: Path
) -> None:
    d = copy_daemon(
        template, tmp_path / "data", models=[{"name": MODEL, "task": "binary", "regulated": True}]
    )
    try:
        t = traffic(trained, 2000, seed=7)
        loop = runner(d)
        actions = []
        for start in range(0, 2000, BATCH):
            feed_better(d, t, start, start + BATCH)
            actions += [r.action for r in loop.run(MODEL)]
            if "pending_approval" in actions:
                break
        assert actions.count("pending_approval") == 1
        [approval] = d.store.list_approvals(model=MODEL, status="pending")
        assert approval.version == 2 and approval.requested_by == "tunewatch"
        assert "regulated model" in approval.rules
        champion = d.store.champion(MODEL)
        assert champion is not None and champion.version == 1
        [(pending, reason)] = promote_actions(d)
        assert pending == "action_pending_approval" and f"approval {approval.id}" in reason
        loop.run(MODEL)
        assert len(d.store.list_approvals(model=MODEL)) == 1
    finally:
        d.close()


def _promote_a_worse_version(d: Daemon, trained: list[ExampleModel], n: int = 1400) -> Traffic:
    """v1 answers 400 labelled requests an hour ago; v2 is promoted (seeded traffic of
    ``n`` rows in all); v2 then answers with inverted probabilities (far worse than v1
    was) in the tests that feed it so."""
    t = traffic(trained, n, seed=21)
    write(
        d.store,
        ids=range(0, 400),
        x=t.x[:400],
        y=t.y[:400],
        answers={1: t.logistic[:400]},
        received_at=datetime.now(UTC) - timedelta(hours=1),
    )
    outcome = governance.promote(d.store, d.config, MODEL, 2, actor="test", reason="try v2")
    assert outcome.status == "promoted"
    return t


def _feed_worse(d: Daemon, t: Traffic, start: int, stop: int) -> None:
    bad = oracle(t.x[start:stop])[:, ::-1].copy()
    write(d.store, ids=range(start, stop), x=t.x[start:stop], y=t.y[start:stop], answers={2: bad})


def test_rollback_watch_restores_the_previous_champion(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_a_worse_version(daemon, trained)
    loop = runner(daemon, rollback=UNPAIRED)
    watch = None
    for start in range(400, 1400, BATCH):
        _feed_worse(daemon, t, start, start + BATCH)
        [watch] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        if watch.action != "none":
            break
    assert watch is not None and watch.action == "rolled_back"
    assert watch.look is not None and watch.look.decision == "challenger_worse"
    assert watch.look.estimate is not None and watch.look.estimate > 0
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 1
    assert daemon.store.get_version(MODEL, 2).stage == "rolled_back"
    [event] = daemon.store.list_events(model=MODEL, type="rollback_triggered")
    assert event.payload["restored"] == 1 and event.payload["baseline_n"] == 400
    assert daemon.runtime.model(MODEL).deployment.lineup.champion.version == 1  # type: ignore[union-attr]


def test_an_automatic_rollback_rewrites_the_reports_of_both_versions(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """After a rollback the daemon wrote only the restored champion's report: the
    rolled-back version's copy still said it was champion, with no rollback in it."""
    t = _promote_a_worse_version(daemon, trained)
    loop = runner(daemon, rollback=UNPAIRED, lineup_changed=daemon.comparisons.on_lineup_change)
    actions = []
    for start in range(400, 1400, BATCH):
        _feed_worse(daemon, t, start, start + BATCH)
        actions += [r.action for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        if "rolled_back" in actions:
            break
    assert actions[-1] == "rolled_back"
    folder = Path(daemon.config.data_dir) / "reports"
    rolled_back = (folder / f"{MODEL}-v2.md").read_text(encoding="utf-8")
    assert "- **stage**: rolled_back" in rolled_back
    assert "| rollback (v2 rolled back, v1 restored) | tunewatch | rollback watch" in rolled_back
    assert "- **stage**: champion" in (folder / f"{MODEL}-v1.md").read_text(encoding="utf-8")


def test_rollback_without_a_previous_champion_is_recorded_not_raised(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_a_worse_version(daemon, trained)
    # Someone already rolled the previous champion back: nothing is left to restore.
    daemon.store.set_stage(MODEL, 1, "rolled_back", actor="test", reason="bad too")
    loop = runner(daemon, rollback=UNPAIRED)
    actions = []
    for start in range(400, 1400, BATCH):
        _feed_worse(daemon, t, start, start + BATCH)
        actions += [r.action for r in loop.run(MODEL)]
        if "rollback_failed" in actions:
            break
    assert "rollback_failed" in actions
    [event] = daemon.store.list_events(model=MODEL, type="rollback_failed")
    assert event.payload["code"] == "no_previous_champion"
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2
    assert [r.action for r in loop.run(MODEL)] == []  # decided once, not retried every run


def test_cli_compare_and_comparisons_print_the_looks(
    template: Path, tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    from tunewatch._cli import main

    d = copy_daemon(template, tmp_path / "data")
    try:
        feed_better(d, traffic(trained, 200, seed=7), 0, 200)
    finally:
        d.close()
    env = ["--config", str(tmp_path / "cfg.yaml")]
    (tmp_path / "cfg.yaml").write_text(f"data_dir: {tmp_path / 'data'}\n", encoding="utf-8")
    assert main([*env, "compare", MODEL]) == 0
    assert "v2 vs v1" in capsys.readouterr().out
    assert main([*env, "comparisons", MODEL, "--challenger", "2"]) == 0
    assert "n=200" in capsys.readouterr().out


def test_auc_objective_uses_group_sequential_delong_and_promotes_a_better_ranker(
    auc_daemon: Daemon, trained: list[ExampleModel]
) -> None:
    d = auc_daemon
    t = traffic(trained, 2500, seed=11)
    loop = runner(d, delong_look_every=500, delong_looks=5)
    decided = None
    for start in range(0, 2500, 500):
        feed_better(d, t, start, start + 500)
        results = [r for r in loop.run(MODEL) if r.kind == "delong"]
        assert results, "the AUC objective must be compared by DeLong"
        if results[0].decision != "continue":
            decided = results[0]
            break
    assert decided is not None, "the oracle never beat the logistic champion on AUC"
    assert decided.decision == "challenger_better" and decided.correction == "bonferroni"
    assert decided.action == "promoted"
    champion = d.store.champion(MODEL)
    assert champion is not None and champion.version == 2


def test_two_winners_of_one_run_promote_one_and_close_the_other(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Both challengers beat v1 at the same look: the first is promoted, and the second,
    never compared with the new champion, is closed rather than promoted over it."""
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    t = traffic(trained, 2000, seed=7)
    loop = runner(daemon)
    actions: dict[int, str] = {}
    for start in range(0, 2000, BATCH):
        best = oracle(t.x[start : start + BATCH])
        write(
            daemon.store,
            ids=range(start, start + BATCH),
            x=t.x[start : start + BATCH],
            y=t.y[start : start + BATCH],
            answers={1: t.logistic[start : start + BATCH], 2: best, 3: best},
        )
        for r in loop.run(MODEL):
            if r.kind == "paired" and r.action != "none":
                actions[r.challenger_version] = r.action
        if actions:
            break
    assert sorted(actions.values()) == ["closed", "promoted"], actions
    winner = next(v for v, a in actions.items() if a == "promoted")
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == winner
    events = [e.type for e in daemon.store.list_events(model=MODEL, limit=100)]
    assert events.count("promoted") == 1
    # the closed test never reached the dispatcher
    assert [t for t, _ in promote_actions(daemon)] == ["action_taken"]


def _log_loss_outputs(y: np.ndarray, differences: np.ndarray) -> np.ndarray:
    """Outputs whose log loss exceeds a model's that gives the true class 0.6 by
    ``differences`` (negative: lower loss)."""
    q = 0.6 * np.exp(-differences)
    p1 = np.where(y == 1, q, 1.0 - q)
    return np.column_stack([1.0 - p1, p1]).astype(np.float32)


def test_holm_decides_a_released_challenger_in_the_direction_of_its_evidence(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v2's running p-value (0.035) was set by a look that found it worse, not enough at
    alpha/2 for two challengers. Its later losses were a hair lower, so its estimate
    crossed zero. v3's win then released v2 through Holm's step-down, and v2 was called
    better on that evidence and promoted: it is decided in the direction of the evidence
    that set its p-value (worse), and v3 is promoted."""
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    loop = runner(daemon)
    alternating = np.where(np.arange(3200) % 2 == 0, 0.3, -0.3)  # symmetric spread
    phases = [  # requests, v2's and v3's mean loss difference from the champion
        (range(0, 600), 0.039, 0.0),
        (range(600, 2600), -0.02, 0.0),
        (range(2600, 3200), 0.0, -0.3),
    ]
    x, _ = example_data(3200, seed=3)
    y = (np.arange(3200) % 3 == 0).astype(np.float64)
    results = []
    for ids, v2, v3 in phases:
        part = slice(ids.start, ids.stop)
        spread = alternating[part]
        write(
            daemon.store,
            ids=ids,
            x=x[part],
            y=y[part],
            answers={
                1: _log_loss_outputs(y[part], np.zeros(len(ids))),
                2: _log_loss_outputs(y[part], v2 + spread if v2 else np.zeros(len(ids))),
                3: _log_loss_outputs(y[part], v3 + spread if v3 else np.zeros(len(ids))),
            },
        )
        results.append({r.challenger_version: r for r in loop.run(MODEL) if r.kind == "paired"})
    first, second, last = (
        {v: r.look for v, r in looks.items() if r.look is not None} for looks in results
    )
    assert 0.025 < first[2].p_value <= 0.05 and first[2].decision == "continue"
    assert second[2].estimate is not None and second[2].estimate < 0
    assert second[2].p_value == first[2].p_value and second[2].decision == "continue"
    assert last[3].decision == "challenger_better" and results[2][3].action == "promoted"
    assert last[2].adjusted_p_value <= 0.05
    assert last[2].decision == "challenger_worse"
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 3


def test_a_promotion_landing_during_a_decision_is_not_overridden(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2's test against v1 decides "better"; an operator promotes v3 while the loop reads
    the guardrails. v2 used to be promoted over v3, which its evidence never saw."""
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    t = traffic(trained, 2000, seed=7)
    loop = runner(daemon)
    real = loop._decisions.guardrails

    def operator_promotes_v3_meanwhile(*args: object, **kwargs: object) -> object:
        daemon.store.promote(MODEL, 3, actor="operator", reason="by hand")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop._decisions, "guardrails", operator_promotes_v3_meanwhile)
    action = "none"
    for start in range(0, 2000, BATCH):
        feed_better(daemon, t, start, start + BATCH)
        [paired] = [r for r in loop.run(MODEL) if r.kind == "paired" and r.challenger_version == 2]
        action = paired.action
        if action != "none":
            break
    assert action == "closed", action
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 3
    [(refused, reason)] = promote_actions(daemon)
    assert refused == "action_refused" and "champion" in reason
    assert daemon.store.get_version(MODEL, 2).stage == "shadow"


def test_a_rollback_landing_after_another_promotion_changes_nothing(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch finds v2 worse; an operator promotes v3 before the rollback is written.
    The rollback used to roll back v3 (for good) and restore v2, the version found worse."""
    t = _promote_a_worse_version(daemon, trained)
    daemon.registry.register(MODEL, trained[1].onnx, trained[1].metadata, actor="t")  # v3
    loop = runner(daemon, rollback=UNPAIRED)
    real = loop.comparisons.record_look

    def operator_promotes_v3_meanwhile(*args: object, **kwargs: object) -> object:
        saved = real(*args, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("status") == "decided":
            daemon.store.promote(MODEL, 3, actor="operator", reason="by hand")
        return saved

    monkeypatch.setattr(loop.comparisons, "record_look", operator_promotes_v3_meanwhile)
    watch = None
    for start in range(400, 1400, BATCH):
        _feed_worse(daemon, t, start, start + BATCH)
        [watch] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        if watch.action != "none":
            break
    assert watch is not None and watch.action == "closed", watch
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 3
    assert daemon.store.get_version(MODEL, 3).stage == "champion"
    assert daemon.store.get_version(MODEL, 2).stage == "retired"
    assert daemon.store.list_events(model=MODEL, type="rollback_triggered") == []


def test_a_label_the_task_cannot_have_is_consumed_not_fatal(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """One binary label of 2.0 made every look raise: the paired test re-read the same
    batch at every run, and the rollback watch stopped the whole comparison run."""
    t = traffic(trained, 400, seed=7)
    y = t.y.astype(np.float64)
    y[3] = 2.0
    write(
        daemon.store,
        ids=range(0, BATCH),
        x=t.x[:BATCH],
        y=y[:BATCH],
        answers={1: t.logistic[:BATCH], 2: oracle(t.x[:BATCH])},
    )
    loop = runner(daemon)
    [paired] = [r for r in loop.run(MODEL) if r.kind == "paired"]
    assert paired.fed == BATCH and paired.look is not None and paired.look.n == BATCH - 1


def _mape_daemon(template: Path, target: Path, objective: str = "mape") -> Daemon:
    """A regression model ``reg`` under MAPE (or ``objective``): v1 champion, v2 in
    shadow."""
    d = copy_daemon(
        template,
        target,
        models=[{"name": "reg", "task": "regression", "objective": {"name": objective}}],
    )
    d.store.ensure_model(name="reg", task="regression", feature_names=["a"])
    for i, stage in ((1, "champion"), (2, "shadow")):
        d.store.add_version(
            model="reg",
            artefact_sha256=f"{i:064d}",
            hyperparameters={},
            size_bytes=1,
            actor="t",
            stage=stage,  # type: ignore[arg-type]
        )
    return d


@pytest.mark.parametrize("label", [0.0, 1e-160, 1e-310], ids=["zero", "tiny", "subnormal"])
def test_a_label_the_objective_cannot_score_is_consumed_and_a_worse_challenger_decided(
    template: Path, tmp_path: Path, label: float
) -> None:
    """MAPE has no loss for a label of 0: one such request made every look raise, nothing
    was consumed, and every later run read the same batch again (the test stayed at n 0).
    A label of 1e-310 (accepted by the feedback route) gave an infinite loss and the same
    stuck test; 1e-160 a loss whose square overflowed, and storing the look raised out of
    every run. MAPE scores a row only when its loss is finite and at most 1e50."""
    d = _mape_daemon(template, tmp_path / "mape")
    try:
        rng = np.random.default_rng(3)
        y = rng.normal(5.0, 1.0, size=1000)
        y[0] = label  # first in label order
        good = (y + rng.normal(0.0, 0.2, size=1000)).reshape(-1, 1)
        loop = runner(d, model="reg")
        looks = []
        for start in range(0, 1000, BATCH):
            s = slice(start, start + BATCH)
            write(
                d.store,
                ids=range(start, start + BATCH),
                x=np.zeros((BATCH, 8), np.float32),
                y=y[s],
                answers={1: good[s], 2: good[s] + 2.0},  # 2 off: about 40 % worse
                model="reg",
            )
            [paired] = [r for r in loop.run("reg") if r.kind == "paired"]
            looks.append(paired)
            if paired.status != "open":
                break
        first = looks[0]
        assert first.fed == BATCH and first.look is not None and first.look.n == BATCH - 1
        assert paired.status == "decided" and paired.decision == "challenger_worse", paired
    finally:
        d.close()


def test_a_challenger_whose_loss_is_past_the_bound_on_some_rows_is_worse_not_better(
    template: Path, tmp_path: Path
) -> None:
    """A regression challenger answering 1e26 on 15 % of requests (a squared error past
    the 1e50 bound) is worse there, not unscored: every request where either version's
    loss was past the bound was left out, so its worst answers never counted, and it was
    decided better and promoted. A row is left out only when its label makes both
    losses unscorable; a loss past the bound counts at the bound."""
    d = _mape_daemon(template, tmp_path / "rmse", objective="rmse")
    try:
        rng = np.random.default_rng(5)
        y = rng.normal(5.0, 1.0, size=2000)
        champion = (y + rng.normal(0.0, 1.0, size=2000)).reshape(-1, 1)
        challenger = (y + rng.normal(0.0, 0.2, size=2000)).reshape(-1, 1)  # better...
        challenger[rng.random(2000) < 0.15] = 1e26  # ...but for 15 % of requests
        loop = runner(d, model="reg")
        for start in range(0, 2000, BATCH):
            s = slice(start, start + BATCH)
            write(
                d.store,
                ids=range(start, start + BATCH),
                x=np.zeros((BATCH, 8), np.float32),
                y=y[s],
                answers={1: champion[s], 2: challenger[s]},
                model="reg",
            )
            [paired] = [r for r in loop.run("reg") if r.kind == "paired"]
            if paired.status != "open":
                break
        assert paired.decision != "challenger_better", paired
        assert paired.look is not None and paired.look.n >= BATCH, paired
    finally:
        d.close()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the overflowing sums
def test_a_look_whose_statistics_overflow_is_logged_not_raised_out_of_the_run(
    template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the objective's bound on a loss lifted, a loss of 5e160 reaches the paired
    test, whose sums of cubes and squares overflow: storing its state raised ValueError ("Out of
    range float values are not JSON compliant") out of ComparisonRunner.run at every
    tick, and the rollback watch and the split test were never reached. The look is
    refused by the store, naming the state's key, and logged as one that cannot look."""
    monkeypatch.setattr(objectives_base, "MAX_LOSS", float("inf"))
    monkeypatch.setattr(paired_module, "MAX_LOSS", float("inf"))  # nor the paired test's
    d = _mape_daemon(template, tmp_path / "mape")
    try:
        y = np.full(BATCH, 5.0)
        y[0] = 1e-160
        write(
            d.store,
            ids=range(BATCH),
            x=np.zeros((BATCH, 8), np.float32),
            y=y,
            answers={1: np.full((BATCH, 1), 5.0), 2: np.full((BATCH, 1), 5.5)},
            model="reg",
        )
        with caplog.at_level("WARNING", logger="tunewatch.comparison._runner"):
            [paired] = [r for r in runner(d, model="reg").run("reg") if r.kind == "paired"]
        assert paired.look is None and paired.status == "open"
        assert "state.total_cube must be a finite number, got inf" in paired.detail[0], paired
        [warning] = [r.getMessage() for r in caplog.records if "cannot look" in r.getMessage()]
        assert "model=reg version=2 champion=1" in warning and "state.total_cube" in warning
    finally:
        d.close()


def test_a_bad_label_after_a_promotion_does_not_stop_the_watch(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    t = _promote_a_worse_version(daemon, trained)
    bad = oracle(t.x[400:500])[:, ::-1].copy()
    y = t.y[400:500].astype(np.float64)
    y[0] = 2.0
    write(daemon.store, ids=range(400, 500), x=t.x[400:500], y=y, answers={2: bad})
    loop = runner(daemon, rollback=UNPAIRED)
    [watch] = [r for r in loop.run(MODEL) if r.kind == "rollback_watch"]
    assert watch.fed == 100


def test_versions_answering_different_classes_are_not_compared(daemon: Daemon) -> None:
    """A re-tuning window missing a class gives a model with fewer output columns; its
    column 1 was scored as the champion's column 1, whatever classes they stood for."""
    daemon.store.ensure_model(name="mc", task="multiclass", feature_names=["a"])
    for i, stage in ((1, "champion"), (2, "shadow")):
        daemon.store.add_version(
            model="mc",
            artefact_sha256=f"{i:064d}",
            hyperparameters={},
            size_bytes=1,
            actor="t",
            stage=stage,  # type: ignore[arg-type]
        )
    rng = np.random.default_rng(0)
    three = rng.dirichlet([1, 1, 1], size=50).astype(np.float32)
    two = rng.dirichlet([1, 1], size=50).astype(np.float32)
    write(
        daemon.store,
        ids=range(50),
        x=np.zeros((50, 8), np.float32),
        y=rng.integers(0, 2, size=50).astype(np.float64),
        answers={1: three, 2: two},
        model="mc",
    )
    [paired] = [r for r in runner(daemon, model="mc").run("mc") if r.kind == "paired"]
    assert paired.action == "closed" and "3 classes" in paired.detail[0]


def test_a_watch_that_cannot_look_leaves_the_paired_tests_looking(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = traffic(trained, BATCH, seed=7)
    feed_better(daemon, t, 0, BATCH)
    loop = runner(daemon)

    def cannot_look(*args: object) -> None:
        raise StatsError("`differences` must hold finite values")

    monkeypatch.setattr(loop._rollback_watch, "run", cannot_look)
    [paired] = [r for r in loop.run(MODEL) if r.kind == "paired"]
    assert paired.fed == BATCH


def test_a_delong_look_with_one_class_waits_for_the_other_instead_of_stalling(
    auc_daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The first look read exactly `look_every` rows; when they held one class, DeLong
    refused, nothing was consumed, and every later run re-read the same rows."""
    d = auc_daemon
    t = traffic(trained, 200, seed=11)
    negatives = np.flatnonzero(t.y == 0)[:50]
    first = {"x": t.x[negatives], "y": t.y[negatives]}
    write(
        d.store,
        ids=range(0, 50),
        x=first["x"],
        y=first["y"],
        answers={1: t.logistic[negatives], 2: oracle(first["x"])},
    )
    loop = runner(d, delong_look_every=50, delong_looks=5)
    [waiting] = [r for r in loop.run(MODEL) if r.kind == "delong"]
    assert waiting.fed == 0  # one class only: not a look yet
    feed_better(d, t, 100, 200)
    [looked] = [r for r in loop.run(MODEL) if r.kind == "delong"]
    assert looked.fed > 50 and looked.look is not None
    # the longer look does not eat into the next, which takes `look_every` new rows
    # (its row count went to zero or below: LIMIT -n on PostgreSQL, a crash here)
    assert looked.fed == 150  # 30 positives (DELONG_MIN_PER_CLASS) take every row
    feed_better(d, t, 50, 100)
    [second] = [r for r in loop.run(MODEL) if r.kind == "delong"]
    assert second.fed == 50 and second.look is not None


def test_a_batch_of_only_unscorable_rows_is_consumed_and_the_test_moves_on(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """Unscorable rows give no rows to look at, so nothing was recorded, nothing was
    consumed, and a batch made only of them was read again at every run."""
    t = traffic(trained, 2, seed=7)
    y = t.y[:2].astype(np.float64)
    y[0] = 2.0  # the first request in label order cannot be scored
    for i in range(2):
        write(
            daemon.store,
            ids=range(i, i + 1),
            x=t.x[i : i + 1],
            y=y[i : i + 1],
            answers={1: t.logistic[i : i + 1], 2: oracle(t.x[i : i + 1])},
        )
    loop = runner(daemon, max_batch=1)
    [first] = [r for r in loop.run(MODEL) if r.kind == "paired"]
    assert first.look is None
    [second] = [r for r in loop.run(MODEL) if r.kind == "paired"]
    assert second.fed == 1 and second.look is not None and second.look.n == 1


def test_a_bounded_objective_gives_its_paired_tests_its_loss_range(
    template: Path, tmp_path: Path, trained: list[ExampleModel]
) -> None:
    """A cost matrix bounds what one request can cost, so the paired test allows for a
    costly miss it has not seen yet (see shadow.stats.PairedSequentialTest)."""
    cost = {"name": "cost", "params": {"cost_matrix": [[0, 1], [20, 0]]}}
    d = copy_daemon(
        template, tmp_path / "cost", models=[{"name": MODEL, "task": "binary", "objective": cost}]
    )
    try:
        t = traffic(trained, 250, seed=2)
        feed_better(d, t, 0, 250)
        [paired] = [r for r in runner(d).run(MODEL) if r.kind == "paired"]
        state = runner(d).comparisons.get_test(paired.test_id).state
        assert state["config"]["loss_range"] == 20.0
        assert state["total_cube"] is not None
    finally:
        d.close()


def test_a_delong_look_waits_for_enough_of_each_class(
    auc_daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """DeLong's variance is far too small with a handful of positives: a look taken as
    soon as both classes were present rejected exchangeable models in 12 % of simulated
    runs at 0.5 % prevalence (tests/shadow/test_stats_delong.py)."""
    d = auc_daemon
    t = traffic(trained, 2000, seed=11)
    order = np.concatenate([np.flatnonzero(t.y == 0), np.flatnonzero(t.y == 1)])
    rows = np.concatenate([order[: 500 - 10], order[-10:]])  # 10 positives
    write(
        d.store,
        ids=range(0, 500),
        x=t.x[rows],
        y=t.y[rows],
        answers={1: t.logistic[rows], 2: oracle(t.x[rows])},
    )
    loop = runner(d, delong_look_every=500, delong_looks=5)
    [waiting] = [r for r in loop.run(MODEL) if r.kind == "delong"]
    assert waiting.fed == 0 and waiting.look is None
    feed_better(d, t, 1000, 1500)
    [looked] = [r for r in loop.run(MODEL) if r.kind == "delong"]
    assert looked.fed == 1000 and looked.look is not None


def test_a_whole_sample_objective_other_than_roc_auc_is_not_decided_on_roc_auc(
    template: Path, tmp_path: Path, trained: list[ExampleModel], caplog: pytest.LogCaptureFixture
) -> None:
    """DeLong tests ROC AUC; PR AUC, F-beta and recall at a precision floor were decided on
    it too, which can promote a challenger that is worse on the objective."""
    d = copy_daemon(
        template,
        tmp_path / "pr",
        models=[{"name": MODEL, "task": "binary", "objective": {"name": "pr_auc"}}],
    )
    try:
        feed_better(d, traffic(trained, 2500, seed=11), 0, 2500)
        loop = runner(d, delong_look_every=500, delong_looks=5)
        with caplog.at_level("WARNING", logger="tunewatch.comparison._runner"):
            assert loop.run(MODEL) == []
        assert "objective pr_auc has no per-request loss" in caplog.text
        assert loop.comparisons.list_tests(MODEL) == []
        champion = d.store.champion(MODEL)
        assert champion is not None and champion.version == 1
    finally:
        d.close()


def test_guardrails_read_only_the_newest_latencies_of_the_champion_and_the_challenger(
    daemon: Daemon, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each A/B page view and each tick computes the guardrails; they read every latency
    of every version since the challenger was registered. Now the newest
    ``latency_samples`` of the two versions: v2 was slow for 300 requests and fast for
    the newest 100, so over its newest 100 it passes."""
    t = traffic(trained, 400, seed=7)
    for ids, slow in ((range(0, 300), 0.05), (range(300, 400), 0.001)):
        write(
            daemon.store,
            ids=ids,
            x=t.x[ids.start : ids.stop],
            y=t.y[ids.start : ids.stop],
            answers={1: t.logistic[ids.start : ids.stop], 2: t.gbm[ids.start : ids.stop]},
            latency={1: 0.001, 2: slow},
        )
    ComparisonStore(daemon.store).get_or_create_test(
        model=MODEL,
        kind="paired",
        champion_version=1,
        challenger_version=2,
        correction=None,
        state={},
    )
    reads: list[dict[int, int]] = []
    real = daemon.store.latencies

    def counting(*args: Any, **kwargs: Any) -> dict[int, np.ndarray]:
        out = real(*args, **kwargs)
        reads.append({v: xs.size for v, xs in out.items()})
        return out

    monkeypatch.setattr(daemon.store, "latencies", counting)
    guard = GuardrailSettings(
        max_latency_p99_ratio=1.2, max_memory_ratio=100.0, latency_samples=100
    )
    [item] = runner(daemon, guardrails=guard).summary(MODEL)
    assert reads == [{1: 100, 2: 100}]
    assert item.guardrails is not None and item.guardrails.passed, item.guardrails


def test_the_latency_guardrail_compares_the_versions_over_the_same_period(
    daemon: Daemon,
) -> None:
    """Two equally fast versions, 5 ms through busy hours then 1 ms in a quiet spell; the
    challenger answers one request in five (a 20 % live-split arm). Each version's newest
    ``latency_samples`` reached back over different periods — the champion's only over
    the quiet spell — and read 'challenger p99 is 5x the champion's'. The champion's are
    now read over the challenger's period, weighted alike in time."""
    start = daemon.store.get_version(MODEL, 2).created_at + timedelta(seconds=1)
    outputs = []
    for i in range(4000):
        latency = 0.005 if i < 3000 else 0.001
        for version in (1, 2) if i % 5 == 0 else (1,):
            outputs.append(
                OutputRecord(
                    model=MODEL,
                    request_id=f"r{i}",
                    version=version,
                    role="champion" if version == 1 else "challenger",
                    latency_s=latency,
                    n_rows=1,
                    n_cols=2,
                    values=np.zeros((1, 2), np.float32).tobytes(),
                    created_at=start + timedelta(seconds=i),
                )
            )
    daemon.store.write_records([], outputs)
    champion = daemon.store.champion(MODEL)
    assert champion is not None
    settings = ComparisonConfig(
        guardrails=GuardrailSettings(max_memory_ratio=100.0, latency_samples=1000)
    )
    result = runner(daemon).guardrails(MODEL, champion, 2, settings)
    assert [v for v in result.violations if "latency" in v] == []


def test_a_latency_minimum_above_the_latencies_read_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="`min_latency_samples` \\(200\\) must be at most"):
        GuardrailSettings(min_latency_samples=200, latency_samples=100)
    assert GuardrailSettings(min_latency_samples=100, latency_samples=100).latency_samples == 100


def test_a_delong_look_replays_every_row_its_test_consumed_outside_the_read_bound(
    template: Path,
    tmp_path: Path,
    trained: list[ExampleModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows consumed by an open test before the read bound existed (or from a replica whose
    clock ran behind) fell out of the replay of its earlier looks once the bound applied
    to that read too: the third look left them out of its statistic, silently."""
    import tunewatch.comparison._runner as runner_module

    unbounded = lambda *_: datetime(1970, 1, 1, tzinfo=UTC)  # noqa: E731
    looks = []
    for upgrade in (False, True):
        d = copy_daemon(
            template,
            tmp_path / f"upgrade-{upgrade}",
            models=[{"name": MODEL, "task": "binary", "objective": {"name": "roc_auc"}}],
        )
        try:
            t = traffic(trained, 900, seed=5)
            registered = max(v.created_at for v in d.store.list_versions(MODEL))
            for part, at in [
                (slice(0, 100), registered - timedelta(minutes=70)),
                (slice(100, 900), registered),
            ]:
                write(
                    d.store,
                    ids=range(part.start, part.stop),
                    x=t.x[part],
                    y=t.y[part],
                    answers={1: t.logistic[part], 2: t.gbm[part]},
                    received_at=at,
                )
            loop = runner(d, delong_look_every=150, delong_looks=10)
            with monkeypatch.context() as m:
                m.setattr(runner_module, "pairable_since", unbounded)
                loop.run(MODEL)
                loop.run(MODEL)  # looks 1 and 2 consume the 100 older rows
                if not upgrade:
                    loop.run(MODEL)
            if upgrade:
                loop.run(MODEL)  # look 3 with the bound
            [test] = loop.comparisons.list_tests(MODEL, kind="delong")
            look = loop.comparisons.latest_look(test.id)
            assert test.looks == 3 and look is not None
            looks.append((look.n, look.estimate, look.p_value))
        finally:
            d.close()
    assert looks[0] == looks[1]


def test_a_rollback_watch_does_not_restore_a_version_whose_artefact_is_damaged(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The watch rolled back through the store alone: v1, whose artefact no longer reads
    back intact, became the champion no process could load, and v2 was rolled back for
    good. The rollback is refused before it commits and recorded as failed."""
    t = _promote_a_worse_version(daemon, trained)
    v1 = daemon.store.get_version(MODEL, 1)
    path = daemon.artefacts.path(v1.artefact_sha256)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    loop = runner(daemon, rollback=UNPAIRED)
    actions = []
    for start in range(400, 1400, BATCH):
        _feed_worse(daemon, t, start, start + BATCH)
        actions += [r.action for r in loop.run(MODEL) if r.kind == "rollback_watch"]
        if "rollback_failed" in actions:
            break
    assert actions[-1] == "rollback_failed", actions
    [event] = daemon.store.list_events(model=MODEL, type="rollback_failed")
    assert event.payload["code"] == "artefact_unavailable"
    champion = daemon.store.champion(MODEL)
    assert champion is not None and champion.version == 2
    assert daemon.store.get_version(MODEL, 2).stage == "champion"
