"""``PUT`` and ``DELETE /v1/models/{m}/versions/{v}/tags/{key}``: an operator sets and
removes a version's key/value tags, each change audited under the caller's name, and the
version's JSON (``GET .../versions`` and ``.../versions/{v}``) shows them as ``tags``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running
from tunewatch._report import report_stem


def _url(running: Running, key: str, version: int = 1, model: str = MODEL) -> str:
    return f"{running.url}/v1/models/{model}/versions/{version}/tags/{key}"


def _put(
    running: Running, key: str, body: Any, role: str = "operator", **kw: Any
) -> httpx.Response:
    return httpx.put(_url(running, key, **kw), json=body, headers=running.auth(role))


def _delete(running: Running, key: str, role: str = "operator", **kw: Any) -> httpx.Response:
    return httpx.delete(_url(running, key, **kw), headers=running.auth(role))


def _version(running: Running, version: int) -> dict[str, Any]:
    got = httpx.get(
        f"{running.url}/v1/models/{MODEL}/versions/{version}", headers=running.auth("viewer")
    )
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def test_an_operator_sets_a_tag_and_every_version_answer_shows_it(running: Running) -> None:
    put = _put(running, "ticket", {"value": "RISK-123"}, version=2)
    assert put.status_code == 200, put.text
    assert put.json() == {"model": MODEL, "version": 2, "tags": {"ticket": "RISK-123"}}
    assert _version(running, 2)["tags"] == {"ticket": "RISK-123"}
    listed = httpx.get(
        f"{running.url}/v1/models/{MODEL}/versions", headers=running.auth("viewer")
    ).json()
    by_version = {v["version"]: v["tags"] for v in listed["versions"]}
    assert by_version[2] == {"ticket": "RISK-123"} and by_version[1] == {}
    [entry] = running.daemon.store.audit_log(limit=10, action="set_tag")
    assert (entry.actor, entry.target) == ("test-operator", f"{MODEL}/v2")
    assert entry.details == {"key": "ticket", "value": "RISK-123", "previous": None}


def test_a_tag_deleted_is_gone_and_a_missing_one_is_tag_not_found(running: Running) -> None:
    assert _put(running, "validation", {"value": "passed"}).status_code == 200
    deleted = _delete(running, "validation")
    assert deleted.status_code == 200, deleted.text
    assert "validation" not in deleted.json()["tags"]
    again = _delete(running, "validation")
    assert again.status_code == 404 and again.json()["code"] == "tag_not_found"
    assert "validation" not in _version(running, 1)["tags"]


def test_a_key_may_hold_slashes(running: Running) -> None:
    put = _put(running, "team/risk", {"value": "owner"})
    assert put.status_code == 200, put.text
    assert put.json()["tags"]["team/risk"] == "owner"
    assert _delete(running, "team/risk").status_code == 200


@pytest.mark.parametrize(
    ("key", "body", "says"),
    [
        ("Ticket", {"value": "x"}, "[a-z0-9._/-]"),
        ("tunewatch.owner", {"value": "x"}, "reserved"),
        ("ticket", {"value": "a\nb"}, "printable"),
        ("ticket", {"value": "v" * 257}, "0 to 256"),
        ("ticket", {"value": 5}, "value"),
        ("ticket", {}, "value"),
        ("ticket", {"value": "x", "extra": 1}, "extra"),
    ],
    ids=[
        "upper-case-key",
        "reserved-key",
        "control-value",
        "long-value",
        "number",
        "none",
        "extra",
    ],
)
def test_a_tag_outside_the_convention_is_a_bad_request(
    running: Running, key: str, body: dict[str, Any], says: str
) -> None:
    put = _put(running, key, body)
    assert put.status_code == 400, put.text
    assert put.json()["code"] == "invalid_request" and says in put.json()["error"]
    assert key not in _version(running, 1)["tags"]


@pytest.mark.parametrize(
    ("model", "version"), [(MODEL, 99), ("no-such-model", 1)], ids=["version", "model"]
)
def test_tags_of_a_missing_version_are_404_as_the_version_is(
    running: Running, model: str, version: int
) -> None:
    expected = httpx.get(
        f"{running.url}/v1/models/{model}/versions/{version}", headers=running.auth("viewer")
    ).json()["code"]
    for answer in (
        _put(running, "ticket", {"value": "x"}, model=model, version=version),
        _delete(running, "ticket", model=model, version=version),
    ):
        assert answer.status_code == 404 and answer.json()["code"] == expected


@pytest.mark.parametrize("role", ["viewer", "scorer", "labeller", "approver"])
def test_only_operators_change_tags(running: Running, role: str) -> None:
    assert _put(running, "ticket", {"value": "x"}, role=role).status_code == 403
    assert _delete(running, "ticket", role=role).status_code == 403


def test_a_tag_change_rewrites_the_version_s_report_file(running: Running) -> None:
    """The version's report file is written with its tags as they are after each change,
    as after a governance change: it kept those of the last promotion."""
    config = running.daemon.config
    report = Path(config.data_dir) / "reports" / f"{report_stem(MODEL, 1)}.md"
    assert _put(running, "audit/file", {"value": "AUD-7"}).status_code == 200
    assert "| audit/file | AUD-7 |" in report.read_text()
    assert _delete(running, "audit/file").status_code == 200
    assert "audit/file" not in report.read_text()


def test_a_stage_change_answers_the_version_with_its_tags(running: Running) -> None:
    """Every answer showing a version shows its tags (here a retire's); last in the
    module: it retires the shadow."""
    assert _put(running, "retire-ticket", {"value": "RISK-9"}, version=2).status_code == 200
    retired = httpx.post(
        f"{running.url}/v1/models/{MODEL}/versions/2/retire",
        json={"reason": "tag test"},
        headers=running.auth("operator"),
    )
    assert retired.status_code == 200, retired.text
    assert retired.json()["tags"]["retire-ticket"] == "RISK-9"
