"""An encoded slash (``%2F``) in a path is no segment separator (RFC 3986 §2.2): a path
holding one anywhere before a tag's key names no route, and is answered 404
``not_found`` as an unknown path is, before any handler runs.

The server decodes the path before routing, so ``%2F`` acted as a ``/``:
``POST /v1/models/credit%2Fversions%2F2%2Fpromote`` promoted version 2 through a reverse
proxy whose rule denies ``/v1/models/*/versions/*/promote``, and
``/v2%2Fmodels%2Fcredit%2Finfer`` scored. No model name holds a ``/``, so no such path
named anything. A tag's key is the path's last part and may hold ``/``
(``team/risk``): there an encoded slash is the key's own character, and still works."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
INFER_BODY = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}]}
).encode()
# (method, path, role, body): each reached a handler, the encoded slashes read as `/`
ENCODED = {
    "infer_whole_path": ("POST", f"/v2%2Fmodels%2F{MODEL}%2Finfer", "scorer", INFER_BODY),
    "infer_named_version": (
        "POST",
        f"/v2/models/{MODEL}%2Fversions%2F2%2Finfer",
        "scorer",
        INFER_BODY,
    ),
    "version_read": ("GET", f"/v1/models/{MODEL}%2Fversions%2F1", "viewer", b""),
    "promote": (
        "POST",
        f"/v1/models/{MODEL}%2Fversions%2F2%2Fpromote",
        "operator",
        b'{"reason": "past the proxy"}',
    ),
    "promote_lower_case": (
        "POST",
        f"/v1/models/{MODEL}/versions%2f2/promote",
        "operator",
        b'{"reason": "past the proxy"}',
    ),
    "tag_before_its_key": (
        "PUT",
        f"/v1/models/{MODEL}/versions%2F1/tags/team",
        "operator",
        b'{"value": "risk"}',
    ),
}


def _rows(running: Running) -> float:
    value = running.daemon.runtime.metrics.registry.get_sample_value(
        "tunewatch_inference_rows_total", {"model": MODEL}
    )
    return value or 0.0


def _unmatched_404s(running: Running) -> float:
    value = running.daemon.runtime.metrics.registry.get_sample_value(
        "tunewatch_http_requests_total", {"route": "unmatched", "status": "404"}
    )
    return value or 0.0


def _tag_url(running: Running, key: str) -> str:
    return f"{running.url}/v1/models/{MODEL}/versions/1/tags/{key}"


@pytest.mark.parametrize("case", list(ENCODED), ids=list(ENCODED))
def test_an_encoded_slash_before_a_tag_key_is_an_unknown_path_and_reaches_no_handler(
    case: str, running: Running
) -> None:
    method, path, role, body = ENCODED[case]
    headers = running.auth(role) | {"Content-Type": "application/json"}
    unknown = httpx.request(
        method, f"{running.url}/v1/no/such/route", headers=headers, content=body
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    rows, unmatched = _rows(running), _unmatched_404s(running)
    audited = len(running.daemon.store.audit_log(limit=1000))

    r = httpx.request(method, f"{running.url}{path}", headers=headers, content=body)

    assert r.status_code == 404, r.text
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"error", "code"} and r.json()["code"] == "not_found"
    assert "%2F" in r.json()["error"]  # the answer says why
    assert _rows(running) == rows  # nothing scored
    assert running.daemon.store.champion(MODEL).version == 1  # type: ignore[union-attr]
    assert len(running.daemon.store.audit_log(limit=1000)) == audited  # nothing changed
    assert _unmatched_404s(running) == unmatched + 1  # counted as an unknown path


def test_the_same_paths_with_slashes_reach_their_routes(running: Running) -> None:
    """The refusal is the encoding's: spelt with ``/``, the inference and the read work."""
    rows = _rows(running)
    scored = httpx.post(
        f"{running.url}/v2/models/{MODEL}/versions/2/infer",
        content=INFER_BODY,
        headers=running.auth("scorer"),
    )
    assert scored.status_code == 200, scored.text
    assert _rows(running) == rows + 1
    read = httpx.get(f"{running.url}/v1/models/{MODEL}/versions/1", headers=running.auth("viewer"))
    assert read.status_code == 200, read.text


@pytest.mark.parametrize("spelling", ["team/risk", "team%2Frisk", "team%2frisk"])
def test_a_tag_key_holding_a_slash_is_set_and_deleted_however_the_slash_is_sent(
    spelling: str, running: Running
) -> None:
    put = httpx.put(
        _tag_url(running, spelling), json={"value": "v"}, headers=running.auth("operator")
    )
    assert put.status_code == 200, put.text
    assert put.json()["tags"].get("team/risk") == "v"
    deleted = httpx.delete(_tag_url(running, spelling), headers=running.auth("operator"))
    assert deleted.status_code == 200, deleted.text
    assert "team/risk" not in deleted.json()["tags"]


@pytest.fixture
def local(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    """An auth-less daemon: its front (``LocalOnlyFront``) is the outermost one."""
    daemon, tokens = make_daemon(
        tmp_path, trained, extra={"auth": {"disabled": True}, "scheduler": {"enabled": False}}
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


def test_an_encoded_slash_is_refused_with_authentication_off(local: Running) -> None:
    method, path, _, body = ENCODED["promote"]
    r = httpx.request(method, f"{local.url}{path}", content=body)
    assert (r.status_code, r.json()["code"]) == (404, "not_found"), r.text
    assert local.daemon.store.champion(MODEL).version == 1  # type: ignore[union-attr]
    method, path, _, body = ENCODED["infer_whole_path"]
    r = httpx.request(method, f"{local.url}{path}", content=body)
    assert (r.status_code, r.json()["code"]) == (404, "not_found"), r.text
    assert _rows(local) == 0.0
