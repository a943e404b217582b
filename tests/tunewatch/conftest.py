"""Fixtures for the application layer: example models, a daemon, tokens per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tunewatch._auth import ROLES, hash_token, new_token
from tunewatch._background import BackgroundServer
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel

MODEL = "credit"


@dataclass
class Running:
    daemon: Daemon
    server: BackgroundServer
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_daemon(
    data_dir: Path,
    trained: list[ExampleModel],
    *,
    store_url: str | None = None,
    extra: dict[str, object] | None = None,
) -> tuple[Daemon, dict[str, str]]:
    raw: dict[str, object] = {"data_dir": str(data_dir), **(extra or {})}
    if store_url:
        raw["store"] = {"url": store_url}
    daemon = Daemon(build_config(raw, env={}), env={})
    for model, stage in zip(trained, ("champion", "shadow"), strict=True):
        daemon.registry.register(
            MODEL, model.onnx, model.metadata, actor="test", stage=stage, reference=model.reference
        )  # type: ignore[arg-type]
    tokens = {}
    for role in ROLES:
        tokens[role] = new_token()
        daemon.store.add_token(name=f"test-{role}", role=role, token_hash=hash_token(tokens[role]))
    return daemon, tokens


@pytest.fixture(scope="module")
def running(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A daemon on SQLite serving the example models over loopback HTTP."""
    daemon, tokens = make_daemon(
        tmp_path_factory.mktemp("daemon"),
        trained,
        extra={
            "server": {"max_body_bytes": 65536, "max_batch_rows": 64},
            "models": [
                {
                    "name": MODEL,
                    "task": "binary",
                    "features": [{"name": "x0", "low": -10.0, "high": 10.0}],
                }
            ],
        },
    )
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
