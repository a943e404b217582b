"""A promoted version serves the champion's clients: every promotion path refuses one
that takes another input dtype or batch size or lacks an output the champion answers (a
shadow or a split arm may, and registration accepts it), and rollback restores any
champion."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression

from tests.tunewatch.conftest import MODEL, logistic_variant, make_daemon
from tests.tunewatch.test_comparison_loop import BATCH, oracle, runner, traffic, write
from tunewatch import _governance as governance
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import ConflictError
from tunewatch._example import ExampleModel, example_data, feature_names
from tunewatch._version_metadata import VersionMetadata

#: The template's versions: v1 the example champion (float32 in, label and
#: probabilities out), v2 the example challenger (the same signature), v3 a version
#: taking float64, v4 one answering other output names.
FLOAT64, RENAMED = 3, 4


@pytest.fixture(scope="module")
def template(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """A data directory with the four versions registered once, and its tokens."""
    path = tmp_path_factory.mktemp("signature")
    d, tokens = make_daemon(path, trained)
    try:
        for variant in (
            logistic_variant(input_dtype="float64"),
            logistic_variant(outputs=("predicted", "scores")),
        ):
            d.registry.register(MODEL, variant.onnx, variant.metadata, actor="test")
    finally:
        d.close()
    return path, tokens


def one_column_logistic(outputs: tuple[str, ...] = ("label", "probability")) -> bytes:
    """A logistic model of the example data answering P(class 1) in one column ``[N, 1]``
    under the last name of ``outputs``, after an int64 label ``[N]`` when it names two: a
    graph built by hand, as registration takes it (a binary primary output may have one
    column), for skl2onnx answers both."""
    x, y = example_data(600, seed=11)
    fitted = LogisticRegression(C=0.5).fit(x, y)
    label, column = ("label" if len(outputs) == 1 else outputs[0]), outputs[-1]
    initializers = [
        numpy_helper.from_array(fitted.coef_.T.astype(np.float32), "coef"),
        numpy_helper.from_array(fitted.intercept_.astype(np.float32).reshape(1, 1), "intercept"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("MatMul", ["input", "coef"], ["logit0"]),
        helper.make_node("Add", ["logit0", "intercept"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [column]),
    ]
    answers = [helper.make_tensor_value_info(column, TensorProto.FLOAT, [None, 1])]
    if len(outputs) == 2:
        nodes += [
            helper.make_node("Greater", [column, "half"], ["above"]),
            helper.make_node("Cast", ["above"], ["label2d"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["label2d", "flat"], [label]),
        ]
        answers.insert(0, helper.make_tensor_value_info(label, TensorProto.INT64, [None]))
    graph = helper.make_graph(
        nodes,
        "one_column",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 8])],
        answers,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


ONE_COLUMN_METADATA = VersionMetadata(
    task="binary",
    feature_names=feature_names(8),
    hyperparameters={"estimator": "logistic", "C": 0.5},
)


def _config(data_dir: Path, **extra: object) -> dict[str, object]:
    return {"data_dir": str(data_dir), "scheduler": {"enabled": False}, **extra}


def _copy(template: tuple[Path, dict[str, str]], tmp_path: Path, **extra: object) -> Daemon:
    shutil.copytree(template[0], tmp_path / "data")
    return Daemon(build_config(_config(tmp_path / "data", **extra), env={}), env={})


@pytest.fixture
def daemon(template: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[Daemon]:
    d = _copy(template, tmp_path)
    yield d
    d.close()


REGULATED = [{"name": MODEL, "task": "binary", "regulated": True}]


@pytest.fixture
def regulated(template: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[Daemon]:
    d = _copy(template, tmp_path, models=REGULATED)
    yield d
    d.close()


def _champion(d: Daemon) -> int:
    champion = d.store.champion(MODEL)
    assert champion is not None
    return champion.version


def test_a_version_taking_another_input_dtype_is_not_promoted(daemon: Daemon) -> None:
    """Promoted, the float64 version read the champion's clients' FP32 requests against
    its own signature: every one of them a 400 ``dtype_mismatch``."""
    with pytest.raises(ConflictError) as err:
        governance.promote(daemon.store, daemon.config, MODEL, FLOAT64, actor="ops", reason="r")
    assert err.value.code == "signature_mismatch"
    message = err.value.message
    assert "version 3" in message and "(version 1)" in message
    assert "input: float32[None, 8]" in message and "input: float64[None, 8]" in message
    assert _champion(daemon) == 1
    assert daemon.store.audit_log(limit=10, action="promote") == []
    # a version with the champion's signature is promoted as before
    outcome = governance.promote(daemon.store, daemon.config, MODEL, 2, actor="ops", reason="r")
    assert outcome.status == "promoted" and _champion(daemon) == 2


def test_a_version_lacking_an_output_the_champion_answers_is_not_promoted(
    daemon: Daemon,
) -> None:
    """Promoted, the renamed version answered a client asking for ``probabilities`` with a
    400 ``unknown_output``."""
    with pytest.raises(ConflictError) as err:
        governance.promote(daemon.store, daemon.config, MODEL, RENAMED, actor="ops", reason="r")
    assert err.value.code == "signature_mismatch"
    message = err.value.message
    assert "lacks the outputs ['label', 'probabilities']" in message
    assert "['predicted', 'scores']" in message
    assert _champion(daemon) == 1


def test_a_version_answering_a_champion_s_output_in_another_width_is_not_promoted(
    daemon: Daemon,
) -> None:
    """A champion answering P(class 1) alone in ``probabilities`` [N, 1] was replaced by a
    version answering [P(class 0), P(class 1)] under that name: the names matched, and a
    client reading column 0 got P(class 0). Refused either way round."""
    narrow = daemon.registry.register(
        MODEL,
        one_column_logistic(("label", "probabilities")),
        ONE_COLUMN_METADATA,
        actor="test",
    )
    with pytest.raises(ConflictError) as err:
        governance.promote(
            daemon.store, daemon.config, MODEL, narrow.version, actor="ops", reason="r"
        )
    assert err.value.code == "signature_mismatch"
    message = err.value.message
    assert "output probabilities: float32[None, 1]" in message
    assert "probabilities: float32[None, 2]" in message
    assert "lacks" not in message and "takes input" not in message
    assert _champion(daemon) == 1
    daemon.store.promote(MODEL, narrow.version, actor="ops", reason="before the check")
    with pytest.raises(ConflictError) as err:
        governance.promote(daemon.store, daemon.config, MODEL, 2, actor="ops", reason="r")
    assert err.value.code == "signature_mismatch"
    assert "output probabilities: float32[None, 2]" in err.value.message
    assert _champion(daemon) == narrow.version


def fixed_batch_logistic(rows: int, *, c: float = 0.5) -> bytes:
    """A logistic version (``C=c``) exported with a fixed batch dimension ``[rows, 8]``
    (as torch.onnx.export gives without ``dynamic_axes``): onnxruntime refuses a request
    of any other number of rows."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    x, y = example_data(600, seed=11)
    estimator = LogisticRegression(C=c).fit(x, y)
    proto = convert_sklearn(
        estimator,
        initial_types=[("input", FloatTensorType([rows, 8]))],
        final_types=[
            ("label", Int64TensorType([None])),
            ("probabilities", FloatTensorType([None, 2])),
        ],
        options={id(estimator): {"zipmap": False}},
    )
    return proto.SerializeToString()


def test_a_version_taking_a_fixed_number_of_rows_is_not_promoted_over_any_number(
    daemon: Daemon,
) -> None:
    """Promoted over a champion with a dynamic batch, a version exported with batch 1
    answered a client's 3-row request, valid the moment before, with a 400
    ``shape_mismatch``. A version taking any number of rows replaces a fixed-batch
    champion (it accepts every request the champion did); one fixed at another number
    does not."""
    one = daemon.registry.register(MODEL, fixed_batch_logistic(1), ONE_COLUMN_METADATA, actor="t")
    two = daemon.registry.register(MODEL, fixed_batch_logistic(2), ONE_COLUMN_METADATA, actor="t")
    with pytest.raises(ConflictError) as err:
        governance.promote(daemon.store, daemon.config, MODEL, one.version, actor="ops", reason="r")
    assert err.value.code == "signature_mismatch"
    message = err.value.message
    assert f"version {one.version}" in message and "(version 1)" in message
    assert "batch dimension" in message
    assert "exactly 1 row per request" in message and "any number" in message
    assert "takes input" not in message
    assert _champion(daemon) == 1
    assert daemon.store.audit_log(limit=10, action="promote") == []
    daemon.store.promote(MODEL, one.version, actor="ops", reason="before the check")
    with pytest.raises(ConflictError) as err:
        governance.promote(daemon.store, daemon.config, MODEL, two.version, actor="ops", reason="r")
    assert err.value.code == "signature_mismatch"
    assert "exactly 2 rows per request" in err.value.message
    assert "the champion exactly 1" in err.value.message
    assert _champion(daemon) == one.version
    # the same fixed batch, and any number of rows, are promoted over batch 1
    one_again = daemon.registry.register(
        MODEL, fixed_batch_logistic(1, c=0.25), ONE_COLUMN_METADATA, actor="t"
    )
    outcome = governance.promote(
        daemon.store, daemon.config, MODEL, one_again.version, actor="ops", reason="r"
    )
    assert outcome.status == "promoted" and _champion(daemon) == one_again.version
    outcome = governance.promote(daemon.store, daemon.config, MODEL, 2, actor="ops", reason="r")
    assert outcome.status == "promoted" and _champion(daemon) == 2


def test_the_api_and_the_cli_refuse_it_with_409_signature_mismatch(
    daemon: Daemon, template: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    operator = {"Authorization": f"Bearer {template[1]['operator']}"}
    with BackgroundServer(daemon.app) as server, httpx.Client(base_url=server.url) as c:
        for version in (FLOAT64, RENAMED):
            r = c.post(
                f"/v1/models/{MODEL}/versions/{version}/promote",
                json={"reason": "by hand"},
                headers=operator,
            )
            assert r.status_code == 409, r.text
            assert r.json()["code"] == "signature_mismatch"
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path / "data")))
    argv = ["--config", str(config), "--actor", "ops", "promote", MODEL, str(FLOAT64)]
    assert main([*argv, "--reason", "by hand"]) == 2
    assert _champion(daemon) == 1


def test_a_regulated_model_opens_no_approval_for_a_version_it_would_refuse(
    regulated: Daemon,
) -> None:
    with pytest.raises(ConflictError) as err:
        governance.promote(
            regulated.store, regulated.config, MODEL, FLOAT64, actor="ops", reason="r"
        )
    assert err.value.code == "signature_mismatch"
    assert regulated.store.list_approvals(model=MODEL) == []


def test_an_approval_of_such_a_version_does_not_promote_it(
    regulated: Daemon, template: tuple[Path, dict[str, str]]
) -> None:
    """An approval requested before promotions checked signatures: deciding it is where
    the check is made."""
    approval = regulated.store.request_approval(
        MODEL, FLOAT64, requested_by="ops", reason="r", rules=["regulated model"]
    )
    approver = {"Authorization": f"Bearer {template[1]['approver']}"}
    with BackgroundServer(regulated.app) as server, httpx.Client(base_url=server.url) as c:
        r = c.post(f"/v1/approvals/{approval.id}/approve", json={"reason": "ok"}, headers=approver)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "signature_mismatch"
        assert "float64" in r.json()["error"]
    assert _champion(regulated) == 1
    assert regulated.store.get_approval(approval.id).status == "pending"  # rejecting it works
    with pytest.raises(ConflictError) as err:
        governance.decide_approval(
            regulated.store, regulated.config, approval.id, approver="bob", approve=True, reason="x"
        )
    assert err.value.code == "signature_mismatch"
    decided, promoted = governance.decide_approval(
        regulated.store, regulated.config, approval.id, approver="bob", approve=False, reason="x"
    )
    assert decided.status == "rejected" and promoted is None


def test_the_comparison_loop_records_the_refusal_of_such_a_winner(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """The float64 version answers every request better than the champion; its win is a
    refused promotion, and the champion keeps serving."""
    t = traffic(trained, 2000, seed=7)
    loop = runner(daemon)
    actions = []
    for start in range(0, 2000, BATCH):
        stop = start + BATCH
        answers = {1: t.logistic[start:stop], FLOAT64: oracle(t.x[start:stop])}
        x, y = t.x[start:stop], t.y[start:stop]
        write(daemon.store, ids=range(start, stop), x=x, y=y, answers=answers)
        actions += [r.action for r in loop.run(MODEL) if r.challenger_version == FLOAT64]
        if set(actions) - {"none"}:
            break
    assert actions[-1] == "promotion_failed"
    assert _champion(daemon) == 1
    events = daemon.store.list_events(model=MODEL, limit=50)
    [failed] = [e for e in events if e.type == "promotion_failed"]
    assert failed.payload["code"] == "signature_mismatch"
    [refused] = [e for e in events if e.type == "action_refused"]
    assert refused.payload["action"] == "promote"
    assert "float64" in refused.payload["reason"]


def test_a_rollback_restores_a_champion_of_another_signature(daemon: Daemon) -> None:
    """A float64 champion promoted before promotions checked signatures (straight through
    the store, which does not read artefacts) still rolls back to its float32 predecessor;
    promoting that predecessor again would be refused."""
    daemon.store.promote(MODEL, FLOAT64, actor="ops", reason="before the check")
    with pytest.raises(ConflictError) as err:
        governance.promote(daemon.store, daemon.config, MODEL, 1, actor="ops", reason="back")
    assert err.value.code == "signature_mismatch"
    restored, rolled_back = daemon.store.rollback(MODEL, actor="ops", reason="clients break")
    assert (restored.version, rolled_back.version) == (1, FLOAT64)
    assert _champion(daemon) == 1


def test_a_first_champion_arriving_during_a_promotion_is_checked_against_not_replaced(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no champion at the check, the promotion told the store to expect nothing, and
    the store checked nothing: a float32 first champion registered meanwhile was retired
    by a float64 version whose signature no check had read against it."""
    d = Daemon(build_config(_config(tmp_path / "fresh"), env={}), env={})
    try:
        wide = logistic_variant(input_dtype="float64")
        d.registry.register("fresh", wide.onnx, wide.metadata, actor="t", stage="shadow")
        checked = governance._checked_champion

        def racing(*args: object) -> int | None:
            found = checked(*args)  # type: ignore[arg-type]
            monkeypatch.setattr(governance, "_checked_champion", checked)
            d.registry.register(  # another operator's first champion, meanwhile
                "fresh", trained[0].onnx, trained[0].metadata, actor="other", stage="champion"
            )
            return found

        monkeypatch.setattr(governance, "_checked_champion", racing)
        with pytest.raises(ConflictError) as info:
            governance.promote(d.store, d.config, "fresh", 1, actor="ops", reason="first")
        assert info.value.code == "signature_mismatch"
        champion = d.store.champion("fresh")
        assert champion is not None and champion.version == 2
    finally:
        d.close()


def _with_output_before(onnx_bytes: bytes, name: str, source: str) -> bytes:
    """``onnx_bytes`` answering ``name``, a copy of its output ``source``, listed first:
    named like a probability, it is the primary output by the signature's rule."""
    import onnx

    proto = onnx.ModelProto.FromString(onnx_bytes)
    proto.graph.node.append(helper.make_node("Identity", [source], [name]))
    spec = next(o for o in proto.graph.output if o.name == source)
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(spec)
    copy.name = name
    proto.graph.output.insert(0, copy)
    return proto.SerializeToString()


def test_a_version_whose_primary_output_is_not_the_champion_s_is_not_promoted(
    daemon: Daemon,
) -> None:
    """A version answering ``proba_calibrated`` first and the champion's ``probabilities``
    after it: its shadow runs, the comparison and registration's checks read
    ``proba_calibrated``, and, promoted on it, it answered clients reading
    ``probabilities`` from an output no one had judged (a review's held the columns
    swapped, [P1, P0])."""
    variant = logistic_variant()
    other = daemon.registry.register(
        MODEL,
        _with_output_before(variant.onnx, "proba_calibrated", "probabilities"),
        variant.metadata,
        actor="test",
    )
    with pytest.raises(ConflictError) as err:
        governance.promote(
            daemon.store, daemon.config, MODEL, other.version, actor="ops", reason="r"
        )
    assert err.value.code == "signature_mismatch"
    assert "primary output" in err.value.message
    assert "'proba_calibrated', the champion's 'probabilities'" in err.value.message
    assert _champion(daemon) == 1
