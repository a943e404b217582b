"""Fixtures of the API's tests: the OpenAPI document a running daemon serves."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import Running


@pytest.fixture(scope="module")
def spec(running: Running) -> dict[str, Any]:
    """``/openapi.json`` as the module's running daemon serves it."""
    r = httpx.get(f"{running.url}/openapi.json", timeout=60)
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body
