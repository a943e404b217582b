"""A challenger failing on a share of the requests it shadows is not promoted.

Its failed runs recorded no output, only ``tunewatch_shadow_errors_total``: its tests were
decided on the requests it answered, and a winner answering non-finite values on 2% of
rows was promoted, to answer those requests 422 as champion. The recorder now counts each
version's shadow runs with the failed ones (``run_tallies``), and ``max_error_rate``
(default 0.001) refuses a winner whose share of failed runs is above it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from tests.tunewatch.conftest import MODEL, logistic_variant, make_daemon
from tests.tunewatch.test_comparison_loop import (
    BATCH,
    LOOSE,
    copy_daemon,
    oracle,
    runner,
    traffic,
    write,
)
from tunewatch._background import BackgroundServer
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel, example_data
from tunewatch._split import SplitConfig, route
from tunewatch.store import Role, RunTally

TAIL = 3.0  # x0 of a row the challenger answers NaN for (past 2.0)


def nan_tail_model() -> bytes:
    """A logistic model of x0 - x1 over 8 features (``label`` [N], ``probabilities``
    [N, 2]) whose probabilities are NaN for rows with x0 > 2 (``sqrt(2 - x0) * 0``)."""
    nodes = [
        h.make_node("MatMul", ["input", "w"], ["logit"]),
        h.make_node("Sigmoid", ["logit"], ["p"]),
        h.make_node("Slice", ["input", "start", "end", "axis"], ["x0"]),
        h.make_node("Sub", ["two", "x0"], ["d"]),
        h.make_node("Sqrt", ["d"], ["s"]),
        h.make_node("Mul", ["s", "zero"], ["z"]),
        h.make_node("Add", ["p", "z"], ["p1"]),
        h.make_node("Sub", ["one", "p1"], ["p0"]),
        h.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
        h.make_node("Greater", ["p1", "half"], ["gt"]),
        h.make_node("Cast", ["gt"], ["lab2"], to=T.INT64),
        h.make_node("Squeeze", ["lab2", "axis"], ["label"]),
    ]
    graph = h.make_graph(
        nodes,
        "nan_tail",
        [h.make_tensor_value_info("input", T.FLOAT, [None, 8])],
        [
            h.make_tensor_value_info("label", T.INT64, [None]),
            h.make_tensor_value_info("probabilities", T.FLOAT, [None, 2]),
        ],
        initializer=[
            h.make_tensor("w", T.FLOAT, [8, 1], [1.5, -1.0, 0, 0, 0, 0, 0, 0]),
            h.make_tensor("start", T.INT64, [1], [0]),
            h.make_tensor("end", T.INT64, [1], [1]),
            h.make_tensor("axis", T.INT64, [1], [1]),
            h.make_tensor("two", T.FLOAT, [], [2.0]),
            h.make_tensor("zero", T.FLOAT, [], [0.0]),
            h.make_tensor("one", T.FLOAT, [], [1.0]),
            h.make_tensor("half", T.FLOAT, [], [0.5]),
        ],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def nan_tail_like(example: ExampleModel) -> ExampleModel:
    """:func:`nan_tail_model` under ``example``'s metadata, as a hyperparameter set of
    its own."""
    # a set of the pipeline's parameters of its own: an unknown one ("estimator":
    # "nan_tail") needs an approver to promote it, and holds a live split of it
    meta = replace(example.metadata, hyperparameters={"estimator": "logistic", "C": 0.0625})
    return ExampleModel(name="nan-tail", onnx=nan_tail_model(), metadata=meta)


@pytest.fixture
def nan_tail(tmp_path: Path, trained: list[ExampleModel]) -> Iterator[Daemon]:
    """The logistic champion v1 and, as shadow v2, the model answering NaN past x0 = 2."""
    challenger = nan_tail_like(trained[1])
    d, tokens = make_daemon(tmp_path / "data", [trained[0], challenger])
    d.tokens_for_test = tokens  # type: ignore[attr-defined]
    yield d
    d.close()


def wait_for_runs(d: Daemon, version: int, runs: int, role: Role = "challenger") -> RunTally:
    """``version``'s counted runs in ``role`` once they reach ``runs`` (within 10 s)."""
    deadline = time.monotonic() + 10.0
    while True:
        tally = d.store.run_tally(MODEL, version, role)
        if tally is not None and tally.runs >= runs:
            return tally
        if time.monotonic() > deadline:
            raise AssertionError(f"v{version} counted {tally} {role} runs, waited for {runs}")
        time.sleep(0.01)


def infer_rows(
    url: str,
    token: str,
    x: np.ndarray,
    *,
    version: int | None = None,
    units: bool = False,
    output: str | None = None,
    first: int = 0,
) -> list[int | str]:
    """Each row of ``x`` as one request ``q<i>`` (from ``first``), in turn: 200 or the
    error's code; to ``version``'s own route if given, with unit key ``u<i>`` if
    ``units``, asking for ``output`` alone if given."""
    path = "" if version is None else f"/versions/{version}"
    answers: list[int | str] = []
    for i, row in enumerate(x, start=first):
        body: dict[str, object] = {
            "id": f"q{i}",
            "inputs": [
                {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": row.tolist()}
            ],
        }
        if units:
            body["parameters"] = {"unit_key": f"u{i}"}
        if output is not None:
            body["outputs"] = [{"name": output}]
        r = httpx.post(
            f"{url}/v2/models/{MODEL}{path}/infer",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        answers.append(200 if r.status_code == 200 else r.json()["code"])
    return answers


def test_shadow_runs_are_counted_with_the_failed_ones(nan_tail: Daemon) -> None:
    """40 requests through the API: the challenger shadows all, fails on the 4 with
    x0 past 2 (non-finite output), and the store counts 40 runs, 4 failed, which the
    version's resource shows."""
    x, _ = example_data(40, seed=5)
    x[:, 0] = np.clip(x[:, 0], -2.0, 2.0)
    x[::10, 0] = TAIL
    token = nan_tail.tokens_for_test["scorer"]  # type: ignore[attr-defined]
    with BackgroundServer(nan_tail.app) as server:
        assert infer_rows(server.url, token, x) == [200] * 40
        tally = wait_for_runs(nan_tail, 2, 40)
        viewer = nan_tail.tokens_for_test["viewer"]  # type: ignore[attr-defined]
        shown = httpx.get(
            f"{server.url}/v1/models/{MODEL}/versions/2",
            headers={"Authorization": f"Bearer {viewer}"},
        ).json()["runs"]["challenger"]
        assert shown == {"runs": 40, "failures": 4, "last_failure": "non_finite_output"}
    assert failures_exported(nan_tail, 2, "challenger", "non_finite_output") == 4
    assert tally == RunTally(
        model=MODEL,
        version=2,
        role="challenger",
        runs=40,
        failures=4,
        last_failure="non_finite_output",
    )
    # the 36 answered are recorded; the 4 failed are not
    recorded = [
        i
        for i in range(40)
        if any(o.version == 2 for o in nan_tail.store.get_outputs(MODEL, f"q{i}"))
    ]
    assert recorded == [i for i in range(40) if i % 10]


def failures_exported(d: Daemon, version: int, role: Role, code: str) -> float | None:
    return d.metrics.registry.get_sample_value(
        "tunewatch_run_failures_total",
        {"model": MODEL, "version": str(version), "role": role, "code": code},
    )


@pytest.fixture
def nan_tail_split(tmp_path: Path, trained: list[ExampleModel]) -> Iterator[Daemon]:
    """``nan_tail`` with v2 as a live split's arm answering half of the unit keys."""
    challenger = nan_tail_like(trained[1])
    split = {"challenger": 2, "percent": 50, "salt": "arm-failures"}
    models = [{"name": MODEL, "task": "binary", "comparison": {"split": split}}]
    d, tokens = make_daemon(tmp_path / "data", [trained[0], challenger], extra={"models": models})
    d.tokens_for_test = tokens  # type: ignore[attr-defined]
    yield d
    d.close()


def test_a_split_arms_runs_are_counted_with_the_failed_ones(nan_tail_split: Daemon) -> None:
    """The split's arm answers its units alone: its failures were clients' 422s, counted
    nowhere ``max_error_rate`` reads, so an arm failing on 10% of its rows could win."""
    x, _ = example_data(60, seed=5)
    x[:, 0] = np.clip(x[:, 0], -2.0, 2.0)
    x[::5, 0] = TAIL
    arm = [
        route((1, 2), SplitConfig(challenger=2, percent=50, salt="arm-failures"), f"u{i}")
        for i in range(60)
    ]
    failing = [i for i in range(60) if arm[i] == 2 and i % 5 == 0]
    assert 0 < len(failing) < arm.count(2) < 60
    token = nan_tail_split.tokens_for_test["scorer"]  # type: ignore[attr-defined]
    with BackgroundServer(nan_tail_split.app) as server:
        answers = infer_rows(server.url, token, x, units=True)
        assert [i for i, a in enumerate(answers) if a != 200] == failing
        assert {answers[i] for i in failing} == {"non_finite_output"}
        tally = wait_for_runs(nan_tail_split, 2, arm.count(2))
        champion = wait_for_runs(nan_tail_split, 1, arm.count(1), "champion")
    assert (tally.runs, tally.failures, tally.last_failure) == (
        arm.count(2),
        len(failing),
        "non_finite_output",
    )
    assert (champion.runs, champion.failures) == (arm.count(1), 0)
    assert failures_exported(nan_tail_split, 2, "challenger", "non_finite_output") == len(failing)


def test_a_split_arm_lacking_an_asked_output_fails_its_runs(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    """Requests are read against the champion's signature; an arm naming its outputs
    otherwise answered its units 400 ``unknown_output`` after it ran, a run counted
    nowhere: its fault, not the client's, is a failed run of the arm."""
    arm = logistic_variant(outputs=("label", "probs"))
    split = {"challenger": 2, "percent": 50, "salt": "arm-outputs"}
    models = [{"name": MODEL, "task": "binary", "comparison": {"split": split}}]
    d, tokens = make_daemon(tmp_path / "data", [trained[0], arm], extra={"models": models})
    try:
        x, _ = example_data(30, seed=3)
        units = [
            route((1, 2), SplitConfig(challenger=2, percent=50, salt="arm-outputs"), f"u{i}")
            for i in range(30)
        ]
        with BackgroundServer(d.app) as server:
            answers = infer_rows(
                server.url, tokens["scorer"], x, units=True, output="probabilities"
            )
            assert [a for a, u in zip(answers, units, strict=True) if u == 2] == [
                "unknown_output"
            ] * units.count(2)
            tally = wait_for_runs(d, 2, units.count(2))
        assert (tally.runs, tally.failures, tally.last_failure) == (
            units.count(2),
            units.count(2),
            "unknown_output",
        )
        assert failures_exported(d, 2, "challenger", "unknown_output") == units.count(2)
    finally:
        d.close()


def test_runs_under_concurrent_load_are_exported_as_the_store_counts_them(
    nan_tail: Daemon,
) -> None:
    """The alerts divide failed runs by ``tunewatch_runs_total``: under concurrent load a
    shadow backlog is scored in one batch, whose jobs have no latency, and the latency
    count read 553 runs of 4,000 (a challenger at half its limit alerted)."""
    x, _ = example_data(400, seed=8)
    x[:, 0] = np.clip(x[:, 0], -2.0, 2.0)
    x[::50, 0] = TAIL
    token = nan_tail.tokens_for_test["scorer"]  # type: ignore[attr-defined]
    with BackgroundServer(nan_tail.app) as server:
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(
                    lambda i: infer_rows(server.url, token, x[i : i + 25], first=i),
                    range(0, 400, 25),
                )
            )
        assert sum(len(a) for a in answers) == 400
        stored = {role: wait_for_runs(nan_tail, v, 400, role) for v, role in RAN}
    for version, role in RAN:
        exported = nan_tail.metrics.registry.get_sample_value(
            "tunewatch_runs_total", {"model": MODEL, "version": str(version), "role": role}
        )
        assert exported == stored[role].runs == 400
    assert failures_exported(nan_tail, 2, "challenger", "non_finite_output") == 8


RAN: tuple[tuple[int, Role], ...] = ((1, "champion"), (2, "challenger"))


def test_a_named_versions_runs_are_counted_and_exported(nan_tail: Daemon) -> None:
    """Requests naming v2 (``/versions/2/infer``) are its runs, the failed ones too; the
    version's resource shows its runs per role, and Prometheus its failures by code."""
    x, _ = example_data(20, seed=5)
    x[:, 0] = np.clip(x[:, 0], -2.0, 2.0)
    x[::4, 0] = TAIL
    token = nan_tail.tokens_for_test["scorer"]  # type: ignore[attr-defined]
    viewer = nan_tail.tokens_for_test["viewer"]  # type: ignore[attr-defined]
    with BackgroundServer(nan_tail.app) as server:
        answers = infer_rows(server.url, token, x, version=2)
        assert answers == ["non_finite_output" if i % 4 == 0 else 200 for i in range(20)]
        wait_for_runs(nan_tail, 2, 20)
        shown = httpx.get(
            f"{server.url}/v1/models/{MODEL}/versions/2",
            headers={"Authorization": f"Bearer {viewer}"},
        ).json()["runs"]
    assert shown == {
        "champion": None,
        "challenger": {"runs": 20, "failures": 5, "last_failure": "non_finite_output"},
    }
    assert failures_exported(nan_tail, 2, "challenger", "non_finite_output") == 5
    # exported at 0 since v1 entered the line-up: none counted
    assert failures_exported(nan_tail, 1, "champion", "non_finite_output") == 0


def test_each_model_s_error_limit_is_exported_for_the_alerts(
    tmp_path: Path, trained: list[ExampleModel]
) -> None:
    """The alerts on failed runs compare them with the model's own ``max_error_rate``:
    the default for a model with none configured, none for a model with the rule off."""
    off = {"name": "off", "task": "binary", "comparison": {"guardrails": {"max_error_rate": None}}}
    d, _ = make_daemon(tmp_path / "data", trained, extra={"models": [off]})
    try:
        d.registry.register("off", trained[0].onnx, trained[0].metadata, actor="t")
        for model in (MODEL, "off"):
            d.runtime.load(model)

        def limit(model: str) -> float | None:
            return d.metrics.registry.get_sample_value("tunewatch_max_error_rate", {"model": model})

        assert (limit(MODEL), limit("off")) == (0.001, None)
    finally:
        d.close()


@pytest.fixture(scope="module")
def template(trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template")
    d, _ = make_daemon(path, trained)
    d.close()
    return path


@pytest.mark.parametrize(
    ("max_error_rate", "action"), [(1e-3, "refused"), (None, "promoted")], ids=["default", "off"]
)
def test_a_winner_failing_on_a_share_of_its_shadow_runs_is_refused(
    template: Path,
    tmp_path: Path,
    trained: list[ExampleModel],
    max_error_rate: float | None,
    action: str,
) -> None:
    """v2 answers the requests it answered better than v1 (the oracle), but failed 2% of
    its shadow runs: refused under the default limit, promoted with the rule off."""
    d = copy_daemon(template, tmp_path / "data")
    try:
        d.store.write_records(
            [],
            [],
            tallies=[
                RunTally(
                    model=MODEL,
                    version=2,
                    role="challenger",
                    runs=2000,
                    failures=40,
                    last_failure="non_finite_output",
                )
            ],
        )
        t = traffic(trained, 2000, seed=7)
        loop = runner(d, guardrails=LOOSE.model_copy(update={"max_error_rate": max_error_rate}))
        result = None
        for start in range(0, 2000, BATCH):
            stop = start + BATCH
            write(
                d.store,
                ids=range(start, stop),
                x=t.x[start:stop],
                y=t.y[start:stop],
                answers={1: t.logistic[start:stop], 2: oracle(t.x[start:stop])},
            )
            [result] = [r for r in loop.run(MODEL) if r.kind == "paired"]
            if result.decision != "continue":
                break
        assert result is not None and result.action == action
        champion = d.store.champion(MODEL)
        assert champion is not None
        if action == "refused":
            assert champion.version == 1
            [violation] = [v for v in result.detail if v.startswith("max_error_rate")]
            assert violation == (
                "max_error_rate: v2 failed 40 of its 2000 runs as a challenger (0.02; limit "
                "0.001), the last with `non_finite_output`"
            )
            [refused] = d.store.list_events(model=MODEL, type="promotion_refused")
            assert refused.payload["violations"] == [violation]
        else:
            assert champion.version == 2
    finally:
        d.close()


def test_a_winner_with_no_runs_counted_yet_is_not_checked_and_says_so(
    template: Path, tmp_path: Path
) -> None:
    """Runs before the upgrade were not counted: the rule notes it, and does not refuse."""
    d = copy_daemon(template, tmp_path / "data")
    try:
        loop = runner(d)
        champion = d.store.champion(MODEL)
        assert champion is not None
        result = loop.guardrails(MODEL, champion, 2, loop.settings(MODEL))
        assert not any(v.startswith("max_error_rate") for v in result.violations)
        assert (
            "error rate not checked: no run of v2 as a challenger counted yet (runs are "
            "counted from store revision 0020 on)"
        ) in result.notes
    finally:
        d.close()
