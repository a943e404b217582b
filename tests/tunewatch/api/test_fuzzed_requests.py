"""Seeded mutations of valid requests never get a 5xx: every refusal is a 4xx with
``{"error", "code"}``.

The malformed-request cases pin the documented answers; this test looks for the ones
nobody thought of. A mutation replaces, drops or repeats values at random, with a bias
towards the odd ones (huge integers, wrong types, empty containers, NUL, long strings),
and sometimes truncates the body; binary-extension requests also get a cut or padded raw
part and odd ``Inference-Header-Content-Length`` values (4,500 of them, run once with 30
seeds: no 5xx). Run as a fuzzer, it found an alert whose labels were a
list (500) and ids past the store's integers (500 or a reset connection).
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]
TENSOR = {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": ROW}

# (role, path, a valid body) — requests that change no stage and start no job.
SEEDS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "scorer",
        f"/v2/models/{MODEL}/infer",
        {
            "id": "a",
            "inputs": [TENSOR],
            "outputs": [{"name": "probabilities"}],
            "parameters": {"unit_key": "u"},
        },
    ),
    ("scorer", f"/v2/models/{MODEL}/versions/2/infer", {"inputs": [TENSOR]}),
    (
        "scorer",
        f"/v1/models/{MODEL}/records",
        {"records": [{"id": "m1", "inputs": [ROW], "outputs": [[0.3, 0.7]], "version": 1}]},
    ),
    (
        "labeller",
        f"/v1/models/{MODEL}/feedback",
        {"items": [{"request_id": "a", "label": 1, "outcome": 0.5}]},
    ),
    (
        "alertmanager",
        "/v1/alerts/alertmanager",
        {
            "version": "4",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "X", "model": "elsewhere"},
                    "startsAt": "2026-11-29T10:00:00Z",
                    "fingerprint": "f",
                }
            ],
        },
    ),
]
GETS = [
    "/v1/jobs/{n}",
    f"/v1/models/{MODEL}/versions/{{n}}",
    f"/v1/models/{MODEL}/versions/{{n}}/report?format={{s}}",
    f"/v1/models/{MODEL}/drift?version={{n}}&limit={{n}}",
    f"/v1/models/{MODEL}/evaluations?kind={{s}}&version={{n}}",
    f"/v1/models/{MODEL}/evaluations/{{n}}/report",
    f"/v1/models/{MODEL}/comparisons/{{n}}/history?limit={{n}}",
    "/v1/events?limit={n}",
    "/v1/audit?limit={n}",
    "/v1/jobs?status={s}&limit={n}",
    "/v2/models/{s}",
    f"/v1/dashboard/models/{MODEL}/telemetry?version={{n}}&max_points={{n}}",
]
ODD: list[Any] = [
    None,
    True,
    0,
    -1,
    2**31,
    2**63,
    10**30,
    1e308,
    -0.0,
    "",
    "x" * 300,
    "\u0000",
    "é",
    [],
    {},
    [[]],
    [None],
    [1] * 9,
    {"a": 1},
    "NaN",
    "2026-13-45T99:00:00Z",
]
ODD_TEXT = ["0", "-1", "2147483648", "9" * 25, "1.5", "abc", "%00", "%C3%A9", "", "x" * 300]


def mutate(value: Any, rng: random.Random) -> Any:
    if rng.random() < 0.15:
        return rng.choice(ODD)
    if isinstance(value, dict):
        out = dict(value)
        if out and rng.random() < 0.3:
            out.pop(rng.choice(list(out)))
        if rng.random() < 0.1:
            out[rng.choice(["extra", "id", "name", "data", "shape"])] = rng.choice(ODD)
        return {k: mutate(v, rng) if rng.random() < 0.5 else v for k, v in out.items()}
    if isinstance(value, list):
        out_list = list(value) * rng.choice([1, 1, 1, 0, 2, 50])
        return [mutate(v, rng) if rng.random() < 0.3 else v for v in out_list]
    return value


@pytest.fixture(scope="module")
def fuzzed(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    daemon, tokens = make_daemon(tmp_path_factory.mktemp("fuzz"), trained)
    with BackgroundServer(daemon.app) as server:
        yield Running(daemon=daemon, server=server, tokens=tokens)
    daemon.close()


def _check(r: httpx.Response, what: str) -> None:
    assert r.status_code < 500, f"{what} -> {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        body = r.json()
        assert set(body) >= {"error", "code"}, f"{what} -> {r.text[:300]}"


@pytest.mark.parametrize("seed", range(3))
def test_mutated_request_bodies_never_get_a_5xx(fuzzed: Running, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=fuzzed.url, timeout=30) as client:
        for _ in range(200):
            role, path, valid = rng.choice(SEEDS)
            raw = json.dumps(mutate(valid, rng)).encode()
            if rng.random() < 0.05:
                raw = raw[: rng.randrange(len(raw) + 1)]
            r = client.post(path, content=raw, headers=fuzzed.auth(role))
            _check(r, f"POST {path} {raw[:300]!r}")


@pytest.mark.parametrize("seed", range(2))
def test_odd_ids_and_query_values_never_get_a_5xx(fuzzed: Running, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=fuzzed.url, timeout=30) as client:
        for template in GETS:
            for _ in range(6):
                path = template.format(n=rng.choice(ODD_TEXT), s=rng.choice(ODD_TEXT))
                _check(client.get(path, headers=fuzzed.auth("admin")), f"GET {path}")


def _binary_request(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    """A binary-extension request (JSON header + raw tensor bytes), mutated in the header,
    the raw part or the ``Inference-Header-Content-Length`` value."""
    rows = rng.choice([1, 1, 2, 3])
    raw = struct.pack(f"<{rows * 8}f", *(ROW * rows))
    tensor: dict[str, Any] = {
        "name": "input",
        "shape": [rows, 8],
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }
    header: dict[str, Any] = {
        "inputs": [tensor],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }
    if rng.random() < 0.7:
        header = mutate(header, rng)
    if rng.random() < 0.3:
        raw = raw[: rng.randrange(len(raw) + 1)] + bytes(rng.choice([0, 0, 4, 7]))
    head = json.dumps(header).encode()
    length: Any = len(head)
    if rng.random() < 0.4:
        length = rng.choice(
            [
                0,
                -1,
                len(head) - 1,
                len(head) + 1,
                len(head) + len(raw) + 1,
                2**63,
                "x",
                "5.0",
                "+5",
                "",
            ]
        )
    return head + raw, {"Inference-Header-Content-Length": str(length)}


@pytest.mark.parametrize("seed", range(2))
def test_mutated_binary_tensor_requests_never_get_a_5xx(fuzzed: Running, seed: int) -> None:
    rng = random.Random(seed)
    path = f"/v2/models/{MODEL}/infer"
    with httpx.Client(base_url=fuzzed.url, timeout=30) as client:
        for _ in range(150):
            body, headers = _binary_request(rng)
            r = client.post(path, content=body, headers=fuzzed.auth("scorer") | headers)
            if r.status_code == 200 and "Inference-Header-Content-Length" in r.headers:
                continue  # a binary answer; the header + raw split is tested elsewhere
            _check(r, f"POST binary {headers} {body[:300]!r}")
