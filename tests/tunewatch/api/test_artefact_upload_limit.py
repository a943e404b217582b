"""``server.max_artefact_bytes`` bounds the ONNX file (and the reference snapshot) a
registration uploads, as ``tunewatch register`` holds the files it reads to it: the
route's body limit was the setting itself, applied to the base64 JSON, so an artefact of
more than three quarters of the limit was refused by the API (413) and taken by the CLI.
The route now reads a body the size of both files base64-encoded, and refuses a decoded
file past the setting; every ``body_too_large`` names the setting to raise."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest

from tests.tunewatch.conftest import MODEL, Running, make_daemon
from tunewatch._background import BackgroundServer
from tunewatch._example import ExampleModel, example_data
from tunewatch._reference import Reference
from tunewatch.api._uploads import registration_body_limit

LIMIT = 65536  # the daemon's `server.max_body_bytes`
ARTEFACT_LIMIT = 200_000  # its `server.max_artefact_bytes`
ARTEFACT_SETTING = "`server.max_artefact_bytes`"
BODY_SETTING = "`server.max_body_bytes`"


@pytest.fixture(scope="module")
def small(
    trained: list[ExampleModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    data: Path = tmp_path_factory.mktemp("uploads")
    daemon, tokens = make_daemon(
        data,
        trained,
        extra={
            "scheduler": {"enabled": False},
            "server": {"max_body_bytes": LIMIT, "max_artefact_bytes": ARTEFACT_LIMIT},
        },
    )
    try:
        with BackgroundServer(daemon.app) as server:
            yield Running(daemon=daemon, server=server, tokens=tokens)
    finally:
        daemon.close()


def padded_onnx(model: ExampleModel, size: int) -> bytes:
    """``model``'s ONNX file grown to ``size`` bytes by its ``doc_string``: still a valid
    model, which scores as before."""
    proto = onnx.load_model_from_string(model.onnx)
    proto.doc_string = ""
    bare = len(proto.SerializeToString())
    # the field's tag and length prefix (up to 3 bytes for these sizes) come on top
    for overhead in (2, 3, 4):
        proto.doc_string = "x" * (size - bare - overhead)
        data = proto.SerializeToString()
        if len(data) == size:
            return data
    raise AssertionError(f"cannot pad the model to {size} bytes")


def reference_npz(size: int) -> bytes:
    """A reference snapshot (.npz, uncompressed) of about ``size`` bytes."""
    rows = size // (8 * 4 + 8)  # float32 features, float64 labels
    x, y = example_data(rows, seed=3)
    return Reference(features=x, labels=y.astype(np.float64)).to_bytes()


def registration(onnx_file: bytes, reference: bytes | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "onnx_base64": base64.b64encode(onnx_file).decode(),
        "task": "binary",
        "feature_names": [f"x{i}" for i in range(8)],
    }
    if reference is not None:
        body["reference_npz_base64"] = base64.b64encode(reference).decode()
    return body


def register(small: Running, model: str, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{small.url}/v1/models/{model}/versions",
        content=content,
        headers=small.auth("operator") | {"Content-Type": "application/json"} | headers,
        timeout=120,
    )


def too_large(r: httpx.Response, *named: str) -> str:
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large"), r.text
    message: str = r.json()["error"]
    for text in named:
        assert text in message
    return message


def test_an_artefact_within_the_limit_registers_though_its_base64_body_exceeds_it(
    small: Running, trained: list[ExampleModel]
) -> None:
    artefact = padded_onnx(trained[0], int(0.9 * ARTEFACT_LIMIT))
    content = json.dumps(registration(artefact)).encode()
    assert len(content) > ARTEFACT_LIMIT  # refused as a body of the limit's size
    r = register(small, "padded", content)
    assert r.status_code == 201, r.text
    assert r.json()["artefact_sha256"] == hashlib.sha256(artefact).hexdigest()


def test_an_artefact_and_a_reference_each_within_the_limit_register(
    small: Running, trained: list[ExampleModel]
) -> None:
    artefact = padded_onnx(trained[0], int(0.9 * ARTEFACT_LIMIT))
    reference = reference_npz(int(0.9 * ARTEFACT_LIMIT))
    assert 0.8 * ARTEFACT_LIMIT < len(reference) <= ARTEFACT_LIMIT
    content = json.dumps(registration(artefact, reference)).encode()
    r = register(small, "referenced", content)
    assert r.status_code == 201, r.text


def test_an_artefact_past_the_limit_is_refused_naming_the_setting(
    small: Running, trained: list[ExampleModel]
) -> None:
    size = int(1.1 * ARTEFACT_LIMIT)
    content = json.dumps(registration(padded_onnx(trained[0], size))).encode()
    assert len(content) < registration_body_limit(
        max_artefact_bytes=ARTEFACT_LIMIT, max_body_bytes=LIMIT
    )  # read whole, refused for the file it holds
    message = too_large(register(small, "too-big", content), ARTEFACT_SETTING, "`onnx_base64`")
    assert f"holds {size} bytes, more than {ARTEFACT_SETTING} ({ARTEFACT_LIMIT})" in message
    # gzip-encoded: the same refusal once inflated
    r = register(small, "too-big", gzip.compress(content), **{"Content-Encoding": "gzip"})
    too_large(r, ARTEFACT_SETTING, "`onnx_base64`")
    assert httpx.get(
        f"{small.url}/v1/models/too-big", headers=small.auth("viewer"), timeout=30
    ).json()["code"] == ("model_not_found")


def test_a_reference_past_the_limit_is_refused_naming_the_setting(
    small: Running, trained: list[ExampleModel]
) -> None:
    reference = reference_npz(int(1.1 * ARTEFACT_LIMIT))
    assert len(reference) > ARTEFACT_LIMIT
    content = json.dumps(registration(trained[0].onnx, reference)).encode()
    message = too_large(
        register(small, "big-reference", content), ARTEFACT_SETTING, "`reference_npz_base64`"
    )
    assert f"holds {len(reference)} bytes" in message


def test_a_registration_body_past_its_limit_names_the_artefact_setting(small: Running) -> None:
    limit = registration_body_limit(max_artefact_bytes=ARTEFACT_LIMIT, max_body_bytes=LIMIT)
    content = b"{" + b" " * limit + b"}"
    message = too_large(register(small, "huge", content), ARTEFACT_SETTING, str(limit))
    assert message.startswith(f"request body exceeds the limit of {limit} bytes")


def test_an_ordinary_route_past_its_limit_names_the_body_setting(small: Running) -> None:
    content = b"{" + b" " * LIMIT + b"}"
    feedback = f"{small.url}/v1/models/{MODEL}/feedback"
    headers = small.auth("labeller") | {"Content-Type": "application/json"}
    r = httpx.post(feedback, content=content, headers=headers, timeout=30)
    assert too_large(r, BODY_SETTING, str(LIMIT)).startswith(
        f"request body exceeds the limit of {LIMIT} bytes"
    )
    r = httpx.post(
        feedback, content=gzip.compress(content), headers=headers | {"Content-Encoding": "gzip"}
    )
    too_large(r, BODY_SETTING, "once decompressed")
    infer = f"{small.url}/v2/models/{MODEL}/infer"
    scorer = small.auth("scorer") | {"Content-Type": "application/json"}
    too_large(httpx.post(infer, content=content, headers=scorer), BODY_SETTING, str(LIMIT))
    r = httpx.post(
        infer, content=gzip.compress(content), headers=scorer | {"Content-Encoding": "gzip"}
    )
    too_large(r, BODY_SETTING, "once decompressed")
