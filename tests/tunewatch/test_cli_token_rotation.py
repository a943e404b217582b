"""``tunewatch tokens rotate`` keeps the person, and ``tokens create``/``revoke``/``rotate``
record a ``--reason``; the CLI's refused approvals are audited as the API's are. Run
in-process against a daemon's store on SQLite and PostgreSQL."""

from __future__ import annotations

import errno
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.tunewatch.conftest import make_daemon
from tunewatch._auth import hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel


@dataclass
class Deployment:
    daemon: Daemon
    url: str
    config: Path
    root: str  # the secret of the admin token `root`

    def cli(self, *args: str, actor: str = "root") -> int:
        return main(["--config", str(self.config), "--actor", actor, *args])


@pytest.fixture
def deployment(trained: list[ExampleModel], tmp_path: Path, store_url: str) -> Iterator[Deployment]:
    """A serving daemon whose model ``loans`` is regulated (v1 champion, v2 shadow), the
    admin token ``root``, and a config for the CLI naming the same store."""
    models = [{"name": "loans", "task": "binary", "regulated": True}]
    daemon, _ = make_daemon(tmp_path, trained, store_url=store_url, extra={"models": models})
    for model in trained:
        daemon.registry.register("loans", model.onnx, model.metadata, actor="test")
    first = daemon.store.request_approval(
        "loans", 1, requested_by="test", reason="the first champion", rules=["regulated model"]
    )
    daemon.store.decide_approval(first.id, approver="ci", approve=True, reason="checked")
    root = new_token()
    daemon.store.add_token(name="root", role="admin", token_hash=hash_token(root), actor="test")
    config = tmp_path / "cli.yaml"
    raw = {"data_dir": str(tmp_path), "store": {"url": store_url}, "models": models}
    config.write_text(yaml.safe_dump(raw))
    with BackgroundServer(daemon.app) as server:
        yield Deployment(daemon=daemon, url=server.url, config=config, root=root)
    daemon.close()


def _post(d: Deployment, path: str, token: str, **body: object) -> httpx.Response:
    return httpx.post(
        f"{d.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_a_rotated_token_cannot_approve_the_request_of_its_old_name(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer's case: root asks, rotates (revoke + create under `root-2`, as names are
    never reused) and approves their own regulated promotion as `root-2`: 200, promoted."""
    d = deployment
    r = _post(d, "/v1/models/loans/versions/2/promote", d.root, reason="my model is ready")
    assert r.status_code == 202, r.text
    approval = r.json()["approval"]["id"]
    capsys.readouterr()
    assert d.cli("tokens", "rotate", "root", "--reason", "yearly rotation") == 0
    shown = capsys.readouterr()
    secret = shown.out.strip()
    assert secret.startswith("tw_") and shown.out.count("tw_") == 1
    assert "token 'root#2' (admin) replaces 'root'" in shown.err
    assert "shown only once" in shown.err
    same = _post(d, f"/v1/approvals/{approval}/approve", secret, reason="looks fine to me")
    assert same.status_code == 409, same.text
    assert same.json()["code"] == "same_person"
    assert d.daemon.store.champion("loans").version == 1  # type: ignore[union-attr]
    [denied] = d.daemon.store.audit_log(limit=1)
    assert (denied.actor, denied.action, denied.details["code"]) == (
        "root#2",
        "denied_approve",
        "same_person",
    )
    revoked, created = d.daemon.store.audit_log(limit=3)[2:0:-1]
    assert (revoked.action, revoked.target, revoked.details) == (
        "revoke_token",
        "root",
        {"reason": "yearly rotation", "rotated_to": "root#2"},
    )
    assert (created.action, created.target, created.details) == (
        "create_token",
        "root#2",
        {"reason": "yearly rotation", "role": "admin", "rotated_from": "root"},
    )
    assert d.daemon.store.verify_audit() is None


def test_a_token_s_reason_is_in_its_audit_details(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    d = deployment
    assert d.cli("tokens", "create", "ci", "--role", "scorer", "--reason", "the new CI") == 0
    assert d.cli("tokens", "revoke", "ci", "--reason", "the CI was moved") == 0
    assert d.cli("tokens", "create", "ci-2", "--role", "scorer") == 0  # a reason is optional
    entries = d.daemon.store.audit_log(limit=3)[::-1]
    assert [(e.action, e.target, e.details) for e in entries] == [
        ("create_token", "ci", {"reason": "the new CI", "role": "scorer"}),
        ("revoke_token", "ci", {"reason": "the CI was moved"}),
        ("create_token", "ci-2", {"role": "scorer"}),
    ]


def test_a_name_made_by_hand_as_a_rotation_s_is_refused(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deployment.cli("tokens", "create", "root#2", "--role", "admin") == 2
    assert "`tunewatch tokens rotate`" in capsys.readouterr().err
    assert "root#2" not in [t.name for t in deployment.daemon.store.list_tokens()]


def test_a_cli_self_approval_is_audited_as_denied(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    d = deployment
    assert d.cli("promote", "loans", "2", "--reason", "ready", actor="alice") == 3
    [approval] = d.daemon.store.list_approvals(status="pending")
    assert d.cli("approve", str(approval.id), "--reason", "fine", actor="alice") == 2
    assert "another person must decide it" in capsys.readouterr().err
    [denied] = d.daemon.store.audit_log(limit=1)
    assert (denied.actor, denied.action, denied.target) == ("alice", "denied_approve", "loans/v2")
    assert denied.details["code"] == "same_person" and denied.details["reason"] == "fine"
    assert d.daemon.store.verify_audit() is None


class _FullDisk(io.TextIOBase):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_rotated_secret_that_cannot_be_shown_is_revoked_and_rotated_again(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old token is gone with the rotation; the unshown successor is revoked, and a
    rotation of it (revoked) gives the person a third token, still the same person."""
    d = deployment
    monkeypatch.setattr(sys, "stdout", _FullDisk())
    assert d.cli("tokens", "rotate", "root") == 1
    monkeypatch.undo()
    error = capsys.readouterr().err
    assert "token 'root#2' was revoked because it could not be shown" in error
    assert "tunewatch tokens rotate 'root#2'" in error
    assert d.cli("tokens", "rotate", "root#2") == 0
    secret = capsys.readouterr().out.strip()
    row = d.daemon.store.token_by_hash(hash_token(secret))
    assert row is not None and (row.name, row.role) == ("root#3", "admin")
    assert [t.name for t in d.daemon.store.list_tokens() if t.revoked_at is None][-1] == "root#3"
