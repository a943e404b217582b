"""Promotion gates, approvals, rollback, and atomic champion swaps under load."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

import tunewatch._registry as registry_module
from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._approval_rules import promotion_rules
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel, feature_names

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]


@pytest.fixture
def gov(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    """credit: v1 logistic champion, v2 gbm (an estimator outside the safe choices
    [logistic]), v3 logistic again; loans: regulated."""
    daemon, tokens = make_daemon(
        tmp_path,
        trained,
        extra={
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "safe_ranges": {"estimator": {"choices": ["logistic"]}},
                },
                {"name": "loans", "task": "binary", "regulated": True},
            ]
        },
    )
    daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="test")
    for model in trained:  # a regulated model's champion is promoted, never registered
        daemon.registry.register("loans", model.onnx, model.metadata, actor="test")
    first = daemon.store.request_approval(
        "loans", 1, requested_by="test", reason="the first champion", rules=["regulated model"]
    )
    daemon.store.decide_approval(first.id, approver="ci", approve=True, reason="checked")
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _post(gov: Running, path: str, role: str, **body: object) -> httpx.Response:
    return httpx.post(f"{gov.url}{path}", json=body, headers=gov.auth(role), timeout=30)


def _infer_version(gov: Running, model: str = MODEL) -> str:
    body = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}]}
    r = httpx.post(f"{gov.url}/v2/models/{model}/infer", json=body, headers=gov.auth("scorer"))
    assert r.status_code == 200, r.text
    return str(r.json()["model_version"])


def test_unsafe_hyperparameters_wait_for_a_second_person(gov: Running) -> None:
    r = _post(gov, f"/v1/models/{MODEL}/versions/2/promote", "operator", reason="it won")
    assert r.status_code == 202
    approval = r.json()["approval"]
    assert approval["status"] == "pending"
    assert approval["rules"] == [
        "outside safe range: estimator='gradient_boosting' not in ['logistic']"
    ]
    assert _infer_version(gov) == "1"
    denied = _post(gov, f"/v1/approvals/{approval['id']}/approve", "operator", reason="me")
    assert denied.status_code == 403  # operators cannot approve at all
    ok = _post(gov, f"/v1/approvals/{approval['id']}/approve", "approver", reason="reviewed")
    assert ok.status_code == 200, ok.text
    assert ok.json()["champion"]["version"] == 2 and ok.json()["previous"]["version"] == 1
    assert _infer_version(gov) == "2"


def test_safe_promotion_is_immediate(gov: Running) -> None:
    r = _post(gov, f"/v1/models/{MODEL}/versions/3/promote", "operator", reason="refresh")
    assert r.status_code == 200 and r.json()["status"] == "promoted"
    assert _infer_version(gov) == "3"


def test_a_winner_outside_the_search_space_safe_ranges_waits_for_a_second_person(
    gov: Running, trained: list[ExampleModel]
) -> None:
    # binary_tabular.yaml: extra_trees is not a safe estimator, depth 12 is past [2, 10]
    params = {
        "missing": "none",
        "imputer": "mean",
        "scaler": "standard",
        "selector": "none",
        "class_weight": "none",
        "estimator": "extra_trees",
        "forest_n_estimators": 100,
        "forest_max_depth": 12,
        "forest_min_samples_leaf": 1,
    }
    metadata = dataclasses.replace(trained[1].metadata, hyperparameters=params)
    row = gov.daemon.registry.register(MODEL, trained[1].onnx, metadata, actor="test")
    r = _post(gov, f"/v1/models/{MODEL}/versions/{row.version}/promote", "operator", reason="won")
    assert r.status_code == 202, r.text
    assert r.json()["approval"]["rules"] == [
        "outside safe range: estimator='extra_trees' not in ['logistic']",  # the config's
        "outside safe range: `estimator` = 'extra_trees' is not a safe choice "
        "['logistic', 'gradient_boosting', 'random_forest']",
        "outside safe range: `forest_max_depth` = 12 is outside its safe range [2, 10]",
    ]
    assert _infer_version(gov) == "1"


def test_an_unreadable_search_space_makes_every_promotion_wait(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    # the config refuses a space that does not load; this one goes after it loaded
    gone = tmp_path / "gone.yaml"
    gone.write_text("name: s\nparams:\n  C: {type: float, low: 0.1, high: 1.0}\n")
    daemon, _ = make_daemon(
        tmp_path,
        trained,
        extra={
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "tuning": {"search_space": str(gone)},
                }
            ]
        },
    )
    gone.unlink()
    try:
        store = daemon.store
        rules = promotion_rules(store.get_model(MODEL), store.get_version(MODEL, 2), daemon.config)
        assert len(rules) == 1 and rules[0].startswith("search space unreadable, safe ranges ")
        assert "gone.yaml" in rules[0]
    finally:
        daemon.close()


def test_the_requester_cannot_approve_a_regulated_promotion(gov: Running) -> None:
    r = _post(gov, "/v1/models/loans/versions/2/promote", "admin", reason="better")
    assert r.status_code == 202 and r.json()["approval"]["rules"] == ["regulated model"]
    approval = r.json()["approval"]["id"]
    same = _post(gov, f"/v1/approvals/{approval}/approve", "admin", reason="trust me")
    assert same.status_code == 409 and same.json()["code"] == "same_person"
    listed = httpx.get(f"{gov.url}/v1/approvals?status=pending", headers=gov.auth("viewer"))
    assert [a["id"] for a in listed.json()["approvals"]] == [approval]
    other = _post(gov, f"/v1/approvals/{approval}/reject", "approver", reason="not yet")
    assert other.json()["approval"]["status"] == "rejected"
    assert _infer_version(gov, "loans") == "1"


def test_a_second_requester_is_audited_and_cannot_approve_the_merged_request(
    gov: Running,
) -> None:
    """Bob's promotion request got Alice's pending approval back (202) with no audit entry
    and his reason dropped; as Alice had asked, he could then approve it himself."""
    alice = _post(gov, "/v1/models/loans/versions/2/promote", "operator", reason="alice's")
    bob = _post(gov, "/v1/models/loans/versions/2/promote", "admin", reason="bob's")
    assert alice.status_code == bob.status_code == 202, bob.text
    approval = bob.json()["approval"]
    assert approval["id"] == alice.json()["approval"]["id"]
    assert (approval["requested_by"], approval["co_requesters"]) == (
        "test-operator",
        ["test-admin"],
    )
    [entry] = gov.daemon.store.audit_log(limit=10, actor="test-admin", action="request_approval")
    assert entry.details["reason"] == "bob's" and entry.details["approval"] == approval["id"]
    same = _post(gov, f"/v1/approvals/{approval['id']}/approve", "admin", reason="lgtm")
    assert same.status_code == 409 and same.json()["code"] == "same_person"
    assert _infer_version(gov, "loans") == "1"
    ok = _post(gov, f"/v1/approvals/{approval['id']}/approve", "approver", reason="checked")
    assert ok.status_code == 200, ok.text
    assert _infer_version(gov, "loans") == "2"


def test_rollback_restores_the_previous_champion_and_then_refuses(gov: Running) -> None:
    assert (
        _post(
            gov, f"/v1/models/{MODEL}/versions/3/promote", "operator", reason="refresh"
        ).status_code
        == 200
    )
    r = _post(gov, f"/v1/models/{MODEL}/rollback", "operator", reason="worse in prod")
    assert r.status_code == 200
    assert r.json()["champion"]["version"] == 1 and r.json()["rolled_back"]["stage"] == (
        "rolled_back"
    )
    assert _infer_version(gov) == "1"
    again = _post(gov, f"/v1/models/{MODEL}/rollback", "operator", reason="again")
    assert again.status_code == 409 and again.json()["code"] == "no_previous_champion"
    audit = httpx.get(f"{gov.url}/v1/audit?verify=true", headers=gov.auth("viewer")).json()
    # the refused second rollback is audited too, after the one that was done
    assert audit["chain_intact"]
    assert [e["action"] for e in audit["entries"][:2]] == ["denied_rollback", "rollback"]
    assert audit["chain_break"] is None


def test_promoting_a_model_with_a_long_name_answers_with_the_promotion(
    gov: Running, trained: list[ExampleModel]
) -> None:
    """130 'é' is a valid name (130 characters) but 260 bytes: the report's file name
    was past the 255-byte limit, so the promotion was committed and answered 500."""
    name = "é" * 130
    for model, stage in zip(trained, ("champion", "shadow"), strict=True):
        gov.daemon.registry.register(name, model.onnx, model.metadata, actor="t", stage=stage)  # type: ignore[arg-type]
    r = _post(gov, f"/v1/models/{quote(name, safe='')}/versions/2/promote", "operator", reason="x")
    assert r.status_code == 200, r.text
    assert r.json()["champion"]["version"] == 2
    [page] = (Path(gov.daemon.config.data_dir) / "reports").glob("*-v2.html")
    assert page.name.startswith("é" * 50) and len(page.name.encode()) <= 255


def test_a_report_that_cannot_be_written_does_not_fail_a_committed_promotion_or_rollback(
    gov: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Writing the report came after the promotion was committed: when it raised, the
    request answered 500 though the new champion served. The report is rebuilt from the
    store on request, so the failure is logged and the change answered."""
    (Path(gov.daemon.config.data_dir) / "reports").write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="tunewatch._report"):
        r = _post(gov, f"/v1/models/{MODEL}/versions/3/promote", "operator", reason="refresh")
        assert r.status_code == 200 and r.json()["champion"]["version"] == 3, r.text
        pending = _post(gov, "/v1/models/loans/versions/2/promote", "operator", reason="won")
        approval = pending.json()["approval"]["id"]
        ok = _post(gov, f"/v1/approvals/{approval}/approve", "approver", reason="reviewed")
        assert ok.status_code == 200 and ok.json()["champion"]["version"] == 2, ok.text
        back = _post(gov, "/v1/models/loans/rollback", "operator", reason="worse")
        assert back.status_code == 200 and back.json()["champion"]["version"] == 1, back.text
    assert _infer_version(gov) == "3" and _infer_version(gov, "loans") == "1"
    failures = [rec for rec in caplog.records if "rationale report" in rec.getMessage()]
    # one warning line each, naming the path, no traceback (a file system's refusal)
    assert all(rec.levelno == logging.WARNING and rec.exc_info is None for rec in failures)
    # each change's new champion and the version it moved out
    assert [rec.args[:2] for rec in failures] == [
        (MODEL, 3),
        (MODEL, 1),
        ("loans", 2),
        ("loans", 1),
        ("loans", 1),
        ("loans", 2),
    ]
    report = httpx.get(
        f"{gov.url}/v1/models/{MODEL}/versions/3/report?format=md", headers=gov.auth("viewer")
    )
    assert report.status_code == 200 and "| promote | test-operator | refresh |" in report.text


def test_a_rollback_rewrites_the_reports_of_both_versions(gov: Running) -> None:
    """The rollback wrote no report: the rolled-back version's copy still said it was
    champion, and the restored one's did not say it was restored."""
    assert _post(gov, f"/v1/models/{MODEL}/versions/3/promote", "operator", reason="r").is_success
    r = _post(gov, f"/v1/models/{MODEL}/rollback", "operator", reason="worse in prod")
    assert r.status_code == 200, r.text
    folder = Path(gov.daemon.config.data_dir) / "reports"
    rolled_back, restored = (folder / f"{MODEL}-v{v}.md" for v in (3, 1))
    assert "- **stage**: rolled_back" in rolled_back.read_text(encoding="utf-8")
    assert "- **stage**: champion" in restored.read_text(encoding="utf-8")
    for report in (rolled_back, restored):
        text = report.read_text(encoding="utf-8")
        assert "| rollback (v3 rolled back, v1 restored) | test-operator | worse in prod |" in text


def test_a_rollback_over_a_reason_holding_a_lone_surrogate_answers_and_writes_reports(
    gov: Running,
) -> None:
    """v3 was promoted by `tunewatch promote credit 3 --reason $'ok \\xff'` before the
    CLI refused such a reason: argv decoding stored a lone surrogate. The API's rollback
    committed, then writing the reports quoting it raised: 500 for a change made; and
    ``GET …/report``, which rebuilds them, answered 500."""
    gov.daemon.store.promote(MODEL, 3, actor="ops", reason="ok \udcff")
    r = _post(gov, f"/v1/models/{MODEL}/rollback", "operator", reason="worse")
    assert r.status_code == 200 and r.json()["champion"]["version"] == 1, r.text
    folder = Path(gov.daemon.config.data_dir) / "reports"
    rolled_back, restored = ((folder / f"{MODEL}-v{v}.md").read_text("utf-8") for v in (3, 1))
    # stored backslash-escaped by the audit log; Markdown escapes that backslash
    assert "| promote | ops | ok \\\\udcff |" in rolled_back
    for text in (rolled_back, restored):
        assert "| rollback (v3 rolled back, v1 restored) | test-operator | worse |" in text
    shown = {"md": "ok \\\\udcff", "html": "ok \\udcff"}
    for fmt, escaped in shown.items():  # rebuilt from the store on request: it answered 500 too
        page = httpx.get(
            f"{gov.url}/v1/models/{MODEL}/versions/3/report?format={fmt}",
            headers=gov.auth("viewer"),
        )
        assert page.status_code == 200 and escaped in page.text, (fmt, page.text)


def test_a_promotion_rewrites_the_report_of_the_champion_it_replaced(gov: Running) -> None:
    """Only the new champion's report was written: the replaced one's copy still said
    it was champion. Through an approval too."""
    folder = Path(gov.daemon.config.data_dir) / "reports"
    for v in (1, 3):
        (folder / f"{MODEL}-v{v}.md").unlink(missing_ok=True)
    assert _post(gov, f"/v1/models/{MODEL}/versions/3/promote", "operator", reason="r").is_success
    replaced = (folder / f"{MODEL}-v1.md").read_text(encoding="utf-8")
    assert "- **stage**: champion" not in replaced and "| promote | test-operator | r |" in (
        folder / f"{MODEL}-v3.md"
    ).read_text(encoding="utf-8")
    pending = _post(gov, "/v1/models/loans/versions/2/promote", "operator", reason="won")
    approval = pending.json()["approval"]["id"]
    assert _post(gov, f"/v1/approvals/{approval}/approve", "approver", reason="ok").is_success
    assert "- **stage**: champion" not in (folder / "loans-v1.md").read_text(encoding="utf-8")


def test_the_audit_endpoint_reports_a_removed_newest_entry(gov: Running) -> None:
    store = gov.daemon.store
    newest, before = store.audit_log(limit=2)
    with store.engine.begin() as conn:  # removed by someone who can drop the trigger
        conn.execute(sa.text("DROP TRIGGER audit_entries_no_delete"))
        conn.execute(sa.text("DELETE FROM audit_entries WHERE id = :id"), {"id": newest.id})
    audit = httpx.get(f"{gov.url}/v1/audit?verify=true", headers=gov.auth("viewer")).json()
    assert audit["chain_intact"] is False
    assert audit["entries"][0]["id"] == before.id
    broken = audit["chain_break"]
    assert (broken["kind"], broken["entry_id"]) == ("head", before.id)
    assert newest.hash in broken["message"] and before.hash in broken["message"]


def test_every_request_is_scored_by_exactly_one_champion_while_promoting(gov: Running) -> None:
    store = gov.daemon.store
    errors: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=gov.url, headers=gov.auth("scorer"), timeout=30) as c:
            i = 0
            while not stop.is_set() or i < 20:
                body = {
                    "id": f"w{worker}-{i}",
                    "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}],
                }
                r = c.post(f"/v2/models/{MODEL}/infer", json=body)
                if r.status_code != 200:
                    errors.append(r.text)
                versions.append(r.json()["model_version"])
                i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for version in (3, 1, 3, 1, 3):
        r = _post(gov, f"/v1/models/{MODEL}/versions/{version}/promote", "operator", reason="swap")
        assert r.status_code == 200, r.text
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert set(versions) == {"1", "3"}
    ids = store.request_ids(MODEL)
    assert len(ids) == len(versions)
    for rid in ids:
        champions = [o for o in store.get_outputs(MODEL, rid) if o.role == "champion"]
        assert len(champions) == 1, rid


def _register(gov: Running, model: str, onnx: bytes, **fields: object) -> httpx.Response:
    body = {
        "onnx_base64": base64.b64encode(onnx).decode(),
        "task": "binary",
        "feature_names": list(feature_names(8)),
        **fields,
    }
    return httpx.post(
        f"{gov.url}/v1/models/{model}/versions",
        content=json.dumps(body).encode(),  # json.dumps writes NaN, as some clients do
        headers=gov.auth("operator") | {"Content-Type": "application/json"},
        timeout=60,
    )


def test_a_registration_cannot_go_around_promotion_or_change_what_governance_rests_on(
    gov: Running, trained: list[ExampleModel]
) -> None:
    onnx = trained[1].onnx
    for model in (MODEL, "loans"):  # a second champion must go through promotion
        r = _register(gov, model, onnx, stage="champion")
        assert r.status_code == 409 and r.json()["code"] == "champion_exists", r.text
    assert _infer_version(gov, "loans") == "1"

    first = _register(gov, "bank", onnx, regulated=True)
    assert first.status_code == 201, first.text
    store = gov.daemon.store
    before = (store.get_model("bank"), store.list_versions("bank"))
    refused = {
        "regulated_mismatch": _register(gov, "bank", onnx, regulated=False),
        "task_mismatch": _register(gov, "bank", onnx, task="regression"),
        "invalid": _register(gov, "bank", onnx, hyperparameters={"C": float("nan")}),
    }
    assert {k: r.status_code for k, r in refused.items()} == {
        "regulated_mismatch": 409,
        "task_mismatch": 409,
        "invalid": 400,
    }, {k: r.text for k, r in refused.items()}
    assert refused["regulated_mismatch"].json()["code"] == "regulated_mismatch"
    assert refused["task_mismatch"].json()["code"] == "task_mismatch"
    assert (store.get_model("bank"), store.list_versions("bank")) == before  # nothing half-done

    # regulation only tightens: a registration may regulate a model stored unregulated
    assert _register(gov, "atm", onnx).status_code == 201
    # another version (its dataset): the same one again is a retry, refused `version_exists`
    tightened = _register(gov, "atm", onnx, regulated=True, dataset_version="atm-2")
    assert tightened.status_code == 201 and store.get_model("atm").regulated, tightened.text


def test_registering_a_champion_passes_the_promotion_gate(
    gov: Running, trained: list[ExampleModel]
) -> None:
    onnx, store = trained[1].onnx, gov.daemon.store
    # a regulated model's first champion needs an approver as much as its next ones
    refused = _register(gov, "bank", onnx, stage="champion", regulated=True)
    assert refused.status_code == 409 and refused.json()["code"] == "approval_required"
    assert "regulated model" in refused.json()["error"] and "promote" in refused.json()["error"]
    assert [m.name for m in store.list_models()] == ["credit", "loans"]  # nothing half-done

    assert _register(gov, "bank", onnx, regulated=True).status_code == 201
    r = _post(gov, "/v1/models/bank/versions/1/promote", "operator", reason="first")
    assert r.status_code == 202
    pending = r.json()["approval"]["id"]
    # with no champion yet, another version cannot go around that request either
    around = _register(gov, "bank", onnx, stage="champion")
    assert around.status_code == 409 and around.json()["code"] == "approval_required"
    assert store.champion("bank") is None and [v.version for v in store.list_versions("bank")] == [
        1
    ]
    [still] = [a for a in store.list_approvals(model="bank") if a.id == pending]
    assert still.status == "pending"

    # an unregulated model's first champion is registered at once when its hyperparameters
    # are safe, and not when they lie outside its search space's safe bounds
    unsafe = _register(
        gov, "cards", onnx, stage="champion", hyperparameters={"estimator": "extra_trees"}
    )
    assert unsafe.status_code == 409 and unsafe.json()["code"] == "approval_required"
    assert "'extra_trees' is not a safe choice" in unsafe.json()["error"]
    safe = _register(
        gov, "cards", onnx, stage="champion", hyperparameters={"estimator": "logistic"}
    )
    assert safe.status_code == 201 and safe.json()["stage"] == "champion", safe.text


def test_a_model_regulated_while_its_candidate_is_checked_gets_no_champion(
    gov: Running, trained: list[ExampleModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate was checked before the sandboxed load and never again: the model was
    regulated meanwhile and the version landed as its champion with no approver."""
    store = gov.daemon.store
    assert _register(gov, "bank", trained[1].onnx).status_code == 201
    inspect = registry_module.inspect_candidate

    def regulated_meanwhile(path: Path, **kwargs: Any) -> Any:
        info = inspect(path, **kwargs)
        store.regulate_model("bank", actor="bob", reason="a replica's config regulates it")
        return info

    monkeypatch.setattr(registry_module, "inspect_candidate", regulated_meanwhile)
    # another version than v1 (its dataset): v1 again is a retry, refused `version_exists`
    r = _register(gov, "bank", trained[1].onnx, stage="champion", dataset_version="bank-2")
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "approval_required" and "regulated" in r.json()["error"]
    assert store.champion("bank") is None and len(store.list_versions("bank")) == 1


def test_a_model_name_the_store_cannot_hold_is_a_400(
    gov: Running, trained: list[ExampleModel]
) -> None:
    r = _register(gov, "x" * 201, trained[1].onnx)
    assert r.status_code == 400 and r.json()["code"] == "invalid_value", r.text


def test_an_approval_decided_after_the_champion_changed_closes_without_promoting(
    gov: Running, trained: list[ExampleModel]
) -> None:
    r = _post(gov, "/v1/models/loans/versions/2/promote", "admin", reason="better than v1")
    approval = r.json()["approval"]
    assert approval["champion_version"] == 1
    # Meanwhile v3 becomes champion through an approval of its own.
    # another version than v1 (its dataset): v1 again is a retry, refused `version_exists`
    refresh = dataclasses.replace(trained[0].metadata, dataset_version="loans-refresh")
    gov.daemon.registry.register("loans", trained[0].onnx, refresh, actor="test")
    other = _post(gov, "/v1/models/loans/versions/3/promote", "admin", reason="refresh")
    ok = _post(
        gov, f"/v1/approvals/{other.json()['approval']['id']}/approve", "approver", reason="y"
    )
    assert ok.status_code == 200 and _infer_version(gov, "loans") == "3"
    late = _post(gov, f"/v1/approvals/{approval['id']}/approve", "approver", reason="looks good")
    assert late.status_code == 409 and late.json()["code"] == "champion_changed", late.text
    assert "from v1 to v3" in late.json()["error"]
    assert _infer_version(gov, "loans") == "3"
    [closed] = [a for a in gov.daemon.store.list_approvals(model="loans") if a.id == approval["id"]]
    assert closed.status == "rejected" and "champion changed" in (closed.decision_reason or "")
    again = _post(gov, "/v1/models/loans/versions/2/promote", "admin", reason="against v3")
    assert again.status_code == 202 and again.json()["approval"]["id"] != approval["id"]


@pytest.mark.parametrize("reason", ["", " ", " \t\n"])
def test_a_blank_reason_is_refused_and_nothing_changes(gov: Running, reason: str) -> None:
    """A reason of whitespace only passed ``min_length=1``: the audit log then recorded
    a promotion, rollback or retune whose reason says nothing (the CLI refuses it)."""
    audit = gov.daemon.store.audit_log(1000)
    for path in (
        f"/v1/models/{MODEL}/versions/3/promote",
        f"/v1/models/{MODEL}/rollback",
        f"/v1/models/{MODEL}/retune",
    ):
        r = _post(gov, path, "operator", reason=reason)
        assert r.status_code in (400, 422), (path, r.text)
        assert r.json()["code"] == "invalid_request" and "reason" in r.json()["error"], r.text
    assert gov.daemon.store.audit_log(1000) == audit
    assert gov.daemon.store.champion(MODEL).version == 1
