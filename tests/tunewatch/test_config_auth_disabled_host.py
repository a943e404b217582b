"""`auth.disabled: true` makes every request act as admin, so it is refused unless the
daemon listens on loopback only: with `server.host: 0.0.0.0` it loaded with a warning
in the log, and a client with no token uploaded a version and promoted it to champion.
`tunewatch serve --host` overrides the config's host (the Docker image passes
`--host 0.0.0.0`), so the same rule holds for the host it gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewatch import ConfigError, build_config
from tunewatch._cli import main
from tunewatch._config_sections import is_loopback_host

LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LocalHost"]
# 192.0.2.1 (TEST-NET-1) is on no interface here: were the refusal to fail, a listen
# would be refused rather than open a socket off loopback
REMOTE = ["0.0.0.0", "::", "10.1.2.3", "192.0.2.1", "example.com", "127.0.0.1.nip.io", "0"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_disabled_auth_loads_on_a_loopback_host(host: str) -> None:
    config = build_config({"server": {"host": host}, "auth": {"disabled": True}}, env={})
    assert config.auth.disabled and config.server.host == host
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", REMOTE)
def test_disabled_auth_is_refused_on_a_host_off_loopback(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(ConfigError) as caught:
        build_config({"server": {"host": host}, "auth": {"disabled": True}}, env={})
    message = caught.value.message
    assert "`auth.disabled: true`" in message
    assert f"`server.host` {host!r}" in message
    assert "loopback" in message and "127.0.0.0/8, ::1, localhost" in message


@pytest.mark.parametrize("host", REMOTE)
def test_enabled_auth_loads_on_any_host(host: str) -> None:
    assert build_config({"server": {"host": host}}, env={}).server.host == host


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n{body}", encoding="utf-8")
    return path


def test_serve_refuses_a_host_override_off_loopback_with_auth_disabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The config's host is loopback; ``--host`` is not: one line, exit 2, nothing bound
    and no store made."""
    config = _config(tmp_path, "auth: {disabled: true}\nscheduler: {enabled: false}\n")
    argv = ["--config", str(config), "serve", "--host", "192.0.2.1", "--port", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tunewatch: error: `auth.disabled: true`"), err
    assert "`--host` '192.0.2.1'" in err[0] and "127.0.0.0/8, ::1, localhost" in err[0]
    assert not (tmp_path / "data").exists()


def test_serve_refuses_a_config_with_auth_disabled_off_loopback_whatever_the_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, "server: {host: 0.0.0.0}\nauth: {disabled: true}\n")
    assert main(["--config", str(config), "serve", "--host", "127.0.0.1", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunewatch: error: invalid configuration in "), err
    assert "`auth.disabled: true`" in err and "`server.host` '0.0.0.0'" in err
    assert not (tmp_path / "data").exists()
