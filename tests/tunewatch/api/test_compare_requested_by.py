"""Who asked for a comparison run: an operator's ``POST /compare`` or ``tunewatch
--actor NAME compare`` is named (``requested_by``) in what the promotion or rollback the
run caused records; the deciding actor stays the daemon (``tunewatch``), whose rules
decided. A scheduled run has no requester and records none (the key is left out)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import Running
from tests.tunewatch.test_comparison_loop import (
    MODEL,
    UNPAIRED,
    _feed_worse,
    _promote_a_worse_version,
    copy_daemon,
    daemon,  # noqa: F401  (fixture)
    feed_better,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
)
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch.api._comparisons import router

# Fed at once, the better challenger's 1000 labelled requests decide it in one run.
DECIDED = 1000
LOOSE = {"guardrails": {"max_memory_ratio": 100.0}, "bootstrap_resamples": 0}


def _event(d: Daemon, kind: str) -> dict[str, Any]:
    [event] = d.store.list_events(model=MODEL, type=kind)
    return event.payload


def _promotion_audit(d: Daemon) -> tuple[str, dict[str, Any]]:
    [entry] = [e for e in d.store.audit_log(limit=100) if e.action == "promote"]
    return entry.actor, entry.details


@pytest.fixture
def served(template: Path, tmp_path: Path) -> Iterator[Running]:  # noqa: F811
    d = copy_daemon(
        template, tmp_path / "data", models=[{"name": MODEL, "task": "binary", "comparison": LOOSE}]
    )
    token = new_token()
    d.store.add_token(name="ops-bob", role="operator", token_hash=hash_token(token), actor="test")
    d.app.app.include_router(router)
    with BackgroundServer(d.app) as server:
        yield Running(daemon=d, server=server, tokens={"operator": token})
    d.close()


def _compare_over_http(served: Running, trained: list[ExampleModel]) -> None:
    feed_better(served.daemon, traffic(trained, DECIDED, seed=7), 0, DECIDED)
    r = httpx.post(
        f"{served.url}/v1/models/{MODEL}/compare", headers=served.auth("operator"), timeout=60
    )
    assert r.status_code == 200, r.text
    assert [x["action"] for x in r.json()["results"]] == ["promoted"]


def test_an_operators_compare_names_them_in_the_decision_it_promotes_on(
    served: Running, trained: list[ExampleModel]
) -> None:
    _compare_over_http(served, trained)
    assert _event(served.daemon, "challenger_better")["requested_by"] == "ops-bob"


def test_an_operators_compare_names_them_in_the_promotions_audit_entry(
    served: Running, trained: list[ExampleModel]
) -> None:
    """The hash-chained audit entry of the promotion (and its action event) named only
    the daemon: the operator who ran the comparison was in no audit entry at all."""
    _compare_over_http(served, trained)
    actor, details = _promotion_audit(served.daemon)
    assert actor == "tunewatch"
    assert details["reason"].endswith("; the run was requested by 'ops-bob'"), details
    assert _event(served.daemon, "action_taken")["reason"] == details["reason"]


def test_cli_compare_names_the_actor_as_the_runs_requester(
    template: Path,  # noqa: F811
    tmp_path: Path,
    trained: list[ExampleModel],
    capsys: pytest.CaptureFixture[str],
) -> None:
    import yaml

    from tunewatch._cli import main

    d = copy_daemon(template, tmp_path / "data")
    try:
        feed_better(d, traffic(trained, DECIDED, seed=7), 0, DECIDED)
    finally:
        d.close()
    cfg = tmp_path / "cfg.yaml"
    raw = {
        "data_dir": str(tmp_path / "data"),
        "models": [{"name": MODEL, "task": "binary", "comparison": LOOSE}],
    }
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["--config", str(cfg), "--actor", "alice", "compare", MODEL]) == 0
    assert "action=promoted" in capsys.readouterr().out
    config = build_config(
        {"data_dir": str(tmp_path / "data"), "scheduler": {"enabled": False}}, env={}
    )
    d = Daemon(config, env={})
    try:
        assert _event(d, "challenger_better")["requested_by"] == "alice"
    finally:
        d.close()


def test_a_scheduled_run_records_no_requester(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    feed_better(daemon, traffic(trained, DECIDED, seed=7), 0, DECIDED)
    assert [r.action for r in runner(daemon).run(MODEL)] == ["promoted"]
    assert "requested_by" not in _event(daemon, "challenger_better")
    _, details = _promotion_audit(daemon)
    assert "requested_by" not in details


def test_a_rollback_the_run_caused_names_who_asked_for_it(
    daemon: Daemon,  # noqa: F811
    trained: list[ExampleModel],
) -> None:
    t = _promote_a_worse_version(daemon, trained)
    _feed_worse(daemon, t, 400, 1400)
    loop = runner(daemon, rollback=UNPAIRED)
    [watch] = loop.run(MODEL, requested_by="ops-bob")
    assert watch.kind == "rollback_watch" and watch.action == "rolled_back"
    assert _event(daemon, "rollback_triggered")["requested_by"] == "ops-bob"
