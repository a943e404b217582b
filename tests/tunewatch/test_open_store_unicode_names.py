"""A configured model name that is a stored one in another Unicode spelling: ``café``
written decomposed (``e`` and a combining acute, NFD) or in full-width letters, while the
store holds the precomposed ``café`` (NFC). Only case and surrounding spaces were folded,
so the config's ``regulated: true`` applied to no model and the stored one was promoted
with no approver. The message shows both names escaped (:func:`ascii`): printed as they
are, they read the same."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tunewatch import ConfigError, build_config
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._open_store import check_stored_models
from tunewatch.store import Store

STORED = "caf\u00e9"  # precomposed é (NFC)
DECOMPOSED = "cafe\u0301"  # e and a combining acute (NFD)


@pytest.fixture
def cafe(sqlite_url: str) -> Iterator[Store]:
    s = Store.open(sqlite_url)
    s.ensure_model(name=STORED, task="binary", feature_names=["x"])
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize(
    "configured",
    [
        pytest.param(DECOMPOSED, id="decomposed"),
        pytest.param("\uff43\uff41\uff46\u00e9", id="full-width"),
        pytest.param("CAFE\u0301", id="decomposed-upper-case"),
    ],
)
def test_a_configured_name_that_is_a_stored_one_in_another_unicode_form_is_refused(
    cafe: Store, configured: str
) -> None:
    config = build_config({"models": [{"name": configured, "task": "binary"}]}, env={})
    with pytest.raises(ConfigError) as info:
        check_stored_models(config, cafe)
    message = info.value.message
    assert message.startswith("models.0.name: ")
    assert f"got {ascii(configured)}" in message
    assert f"it holds {ascii(STORED)}" in message


def test_a_config_listing_both_unicode_forms_is_not_refused(cafe: Store) -> None:
    """The stored name exactly, and another spelling beside it: a model to come."""
    models = [{"name": STORED, "task": "binary"}, {"name": DECOMPOSED, "task": "binary"}]
    check_stored_models(build_config({"models": models}, env={}), cafe)


def test_the_cli_refuses_to_promote_under_a_config_naming_the_model_decomposed(
    tmp_path: Path, trained: list[ExampleModel], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    daemon = Daemon(build_config({"data_dir": str(data)}, env={}), env={})
    for model, stage in zip(trained, ("champion", "shadow"), strict=True):
        daemon.registry.register(
            STORED, model.onnx, model.metadata, actor="t", stage=stage, reference=model.reference
        )  # type: ignore[arg-type]
    daemon.close()
    config = tmp_path / "c.yaml"
    regulated = {"name": DECOMPOSED, "task": "binary", "regulated": True}
    raw = {"data_dir": str(data), "scheduler": {"enabled": False}, "models": [regulated]}
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    argv = ["--config", str(config), "--actor", "alice", "promote", STORED, "2"]
    assert main([*argv, "--reason", "r"]) == 2
    assert "models.0.name" in capsys.readouterr().err
    with Store.open(f"sqlite:///{data / 'tunewatch.db'}") as store:
        assert store.champion(STORED).version == 1  # type: ignore[union-attr]
