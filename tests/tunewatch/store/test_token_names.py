"""A token's name is the actor of everything done with it (audit log, approvals): it
must read as itself, and a token is never taken for a model's history."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunewatch._errors import InvalidValueError
from tunewatch.store import Store


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(" ops", id="a_space_first"),
        pytest.param("ops ", id="a_space_last"),
        pytest.param("  ", id="spaces_only"),
    ],
)
def test_a_token_name_with_a_space_first_or_last_is_refused(store: Store, name: str) -> None:
    """`ops ` was stored beside `ops` and printed like it in the audit log and in an
    approval's requester, as the model-name rule refuses for models."""
    with pytest.raises(InvalidValueError) as info:
        store.add_token(name=name, role="approver", token_hash="1" * 64, actor="alice")
    assert info.value.code == "invalid_value"
    assert "no space first or last" in info.value.message
    assert f"got {len(name)} characters: {name!r}" in info.value.message
    assert store.list_tokens() == [] and store.audit_log() == []


def test_a_token_name_with_inner_spaces_is_stored(store: Store) -> None:
    assert store.add_token(name="ci bot", role="viewer", token_hash="1" * 64, actor="a").name == (
        "ci bot"
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("bootstrap-admin-\u0663", id="arabic_indic_three"),
        pytest.param("bootstrap-admin-\uff13", id="fullwidth_three"),
        pytest.param("bootstrap-admin-1\u0969", id="devanagari_digit_after_ascii"),
        pytest.param("\uff42ootstrap-admin", id="fullwidth_b"),
        pytest.param("Bootstrap-Admin", id="capitals"),
        pytest.param("BOOTSTRAP-ADMIN-2", id="upper_case_numbered"),
        pytest.param("\uff22ootstrap-admin", id="fullwidth_capital_b"),
    ],
)
def test_a_name_that_reads_as_a_bootstrap_admin_name_is_refused(store: Store, name: str) -> None:
    """The bootstrap admin's names are `bootstrap-admin` and `bootstrap-admin-<n>` in ASCII
    digits (the same-person rule and a rotation match exactly those). `bootstrap-admin-٣`
    was stored as an ordinary token: it reads as the bootstrap admin's name in the audit
    log and in approvals, yet counts as another person."""
    with pytest.raises(InvalidValueError) as info:
        store.add_token(name=name, role="approver", token_hash="1" * 64, actor="alice")
    assert info.value.code == "invalid_value"
    assert "reads as a name of the bootstrap admin" in info.value.message
    assert f"got {name!r}" in info.value.message
    assert store.list_tokens() == [] and store.audit_log() == []


def test_the_cli_refuses_a_token_name_with_a_space_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunewatch._cli import main

    url = f"sqlite:///{tmp_path / 'tw.db'}"
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "store": {"url": url}}))
    assert main(["--config", str(config), "tokens", "create", "ops ", "--role", "viewer"]) == 2
    captured = capsys.readouterr()
    assert "no space first or last" in captured.err and "'ops '" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""  # no token shown
    with Store.open(url) as store:
        assert store.list_tokens() == []


def test_a_token_named_like_a_model_s_version_is_not_in_the_model_s_audit_trail(
    store: Store,
) -> None:
    """A token is audited under its own name: `tunewatch tokens create credit/v1` put its
    creation and revocation in model credit's trail (only a name equal to the model's was
    left out), and `admin` among its actors."""
    store.ensure_model(name="credit", task="binary", feature_names=["a"])
    store.add_version(
        model="credit", artefact_sha256="1" * 64, hyperparameters={}, size_bytes=1, actor="ci"
    )
    store.add_token(name="credit/v1", role="viewer", token_hash="2" * 64, actor="admin")
    store.revoke_token("credit/v1", actor="admin")
    trail = [(a.actor, a.action, a.target) for a in store.audit_log(model="credit")]
    assert trail == [("ci", "register_version", "credit/v1")]
    assert store.audit_facets("credit") == (["register_version"], ["ci"])
