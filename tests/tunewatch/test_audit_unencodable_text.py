"""Text UTF-8 cannot encode (a lone surrogate: a byte of a file name the locale could not
decode reaches Python as one) never makes the audit log unreadable.

``tunewatch export credit Bericht_M\\xe4rz.zip`` (a Latin-1 name) audited ``details.file``
as ``'Bericht_M\\udce4rz.zip'``; from then on ``GET /v1/audit`` and the dashboard's events
page and JSON answered 500 for any page holding that entry, for ever (the log is
append-only). Such text is stored with its backslash escape, and an entry stored before
that is answered escaped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dashboard.scenario import session_cookie
from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._bundle import export_bundle
from tunewatch._example import ExampleModel
from tunewatch.store._audit import entry_hash
from tunewatch.store._canonical import json_roundtrip
from tunewatch.store._schema import audit_entries, audit_head
from tunewatch.store._types import utcnow

ESCAPED = "Bericht_M\\udce4rz.zip"


@pytest.fixture
def audited(trained: list[ExampleModel], tmp_path: Path) -> Iterator[Running]:
    daemon, tokens = make_daemon(tmp_path, trained, extra={"scheduler": {"enabled": False}})
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


def _answers(running: Running) -> dict[str, httpx.Response]:
    viewer = running.auth("viewer")
    cookies = session_cookie(running.url, running.tokens["viewer"])
    return {
        "audit": httpx.get(f"{running.url}/v1/audit?limit=5", headers=viewer),
        "verified": httpx.get(f"{running.url}/v1/audit?limit=5&verify=true", headers=viewer),
        "events_json": httpx.get(
            f"{running.url}/v1/dashboard/models/{MODEL}/events", headers=viewer
        ),
        "events_page": httpx.get(f"{running.url}/dashboard/models/{MODEL}/events", cookies=cookies),
    }


def test_an_export_to_a_non_utf8_file_name_is_audited_escaped_and_listed(
    audited: Running, tmp_path: Path
) -> None:
    # what the CLI is handed for the argument b".../Bericht_M\xe4rz.zip"
    path = os.fsdecode(os.fsencode(tmp_path) + b"/Bericht_M\xe4rz.zip")
    assert "\udce4" in path
    d = audited.daemon
    export_bundle(d.store, d.artefacts, d.config, MODEL, path)
    assert os.path.exists(os.fsencode(tmp_path) + b"/Bericht_M\xe4rz.zip")

    answers = _answers(audited)
    for name, r in answers.items():
        assert r.status_code == 200, (name, r.text[:300])
    newest = answers["audit"].json()["entries"][0]
    assert (newest["action"], newest["details"]["file"]) == ("export_bundle", ESCAPED)
    assert answers["verified"].json()["chain_intact"] is True
    listed = answers["events_json"].json()["audit"][0]
    assert listed["details"]["file"] == ESCAPED
    assert "Bericht_M\\\\udce4rz.zip" in answers["events_page"].text  # in the JSON shown
    stored = d.store.audit_log(limit=1)[0]
    assert stored.details["file"] == ESCAPED
    assert d.store.verify_audit() is None


def test_an_entry_stored_with_a_surrogate_before_the_fix_is_answered_escaped(
    audited: Running,
) -> None:
    """As the old append stored it: the surrogate in ``details`` (SQLite's JSON holds it
    as ``\\udce4``), the hash over it, the head moved to it."""
    store = audited.daemon.store
    details = json_roundtrip({"file": "Bericht_M\udce4rz.zip", "n\udcfc": ["\udce4"]})
    with store.engine.begin() as conn:
        prev = conn.execute(audit_head.select()).one().hash
        at = utcnow()
        new_hash = entry_hash(
            prev, at=at, actor="ops", action="export_bundle", target=MODEL, details=details
        )
        conn.execute(
            audit_entries.insert().values(
                at=at,
                actor="ops",
                action="export_bundle",
                target=MODEL,
                details=details,
                prev_hash=prev,
                hash=new_hash,
            )
        )
        conn.execute(audit_head.update().values(hash=new_hash))

    answers = _answers(audited)
    for name, r in answers.items():
        assert r.status_code == 200, (name, r.text[:300])
    newest = answers["audit"].json()["entries"][0]
    assert newest["details"] == {"file": ESCAPED, "n\\udcfc": ["\\udce4"]}
    assert newest["hash"] == new_hash
    assert answers["verified"].json()["chain_intact"] is True  # hashed over what is stored
    assert answers["events_json"].json()["audit"][0]["details"]["file"] == ESCAPED
