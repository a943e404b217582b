"""A mirror record naming no version, for a model with no champion, is a request the
caller must change (name the version that answered it): 409 `version_required`. It was
answered 503 `model_not_ready`, which tells a client to retry it unchanged, so a
mirroring client that retries 5xx retried it forever."""

from __future__ import annotations

import base64

import httpx

from tests.tunewatch.conftest import Running
from tunewatch._example import ExampleModel

RECORD = {"id": "m1", "inputs": [[0.1] * 8], "outputs": [[0.3, 0.7]]}


def test_a_mirror_record_without_version_for_a_model_without_champion_is_409(
    running: Running, trained: list[ExampleModel]
) -> None:
    shadow = trained[1]
    with httpx.Client(base_url=running.url, timeout=60) as client:
        r = client.post(
            "/v1/models/nochampion/versions",
            headers=running.auth("operator"),
            json={
                "onnx_base64": base64.b64encode(shadow.onnx).decode(),
                "task": "binary",
                "feature_names": list(shadow.metadata.feature_names),
                "hyperparameters": dict(shadow.metadata.hyperparameters),
            },
        )
        assert r.status_code == 201, r.text
        records = "/v1/models/nochampion/records"
        r = client.post(records, headers=running.auth("scorer"), json={"records": [RECORD]})
        assert (r.status_code, r.json()) == (
            409,
            {
                "code": "version_required",
                "error": "records[0].version is required: model 'nochampion' has no champion",
            },
        )
        named = {"records": [{**RECORD, "version": 1}]}
        r = client.post(records, headers=running.auth("scorer"), json=named)
        assert (r.status_code, r.json()) == (
            200,
            {"accepted": 1, "duplicates": [], "conflicts": []},
        )
