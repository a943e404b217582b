"""Merge keys (``<<``) in the daemon's configuration: a key two merged mappings give was
read as whichever PyYAML kept by the key string's identity, so
`auth: {<<: [{disabled: false}, {disabled: true}]}` switched authentication off."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewatch._config import load_config
from tunewatch._errors import ConfigError


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "auth:\n  <<: {disabled: false}\n  <<: {disabled: true}\n",
            "auth.disabled: merged mappings disagree: both give it, at lines 3 and 4",
        ),
        (
            "auth:\n  <<: [{disabled: false}, {disabled: true}]\n",
            "auth.disabled: merged mappings disagree: both give it, at lines 3 and 3",
        ),
        (
            "server:\n  <<: [{port: 8080}, {port: 9090}]\n",
            "server.port: merged mappings disagree: both give it, at lines 3 and 3",
        ),
        (
            "server:\n  <<: [{host: 127.0.0.1}, {host: 0.0.0.0}]\n",
            "server.host: merged mappings disagree: both give it, at lines 3 and 3",
        ),
    ],
    ids=["two-merge-keys", "merge-list", "merge-list-port", "merge-list-host"],
)
def test_a_key_two_merged_mappings_give_is_a_config_error_naming_its_path(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n" + text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.message.startswith(f"{path}: not valid YAML: {message}")


def test_a_merged_key_overridden_in_the_mapping_itself_is_read(tmp_path: Path) -> None:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "server:\n"
        "  <<: [{host: 127.0.0.1, port: 8080}, {host: 0.0.0.0}]\n"
        "  host: 10.0.0.1\n"
    )
    config = load_config(path, env={})
    assert (config.server.host, config.server.port) == ("10.0.0.1", 8080)
