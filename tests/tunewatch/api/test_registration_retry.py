"""A registration sent again after its answer was lost (a CI pipeline's timeout: the
candidate's sandboxed check is slow) adds no second version: ``POST
/v1/models/{m}/versions`` answers 409 ``version_exists`` naming the version it made, and
``tunewatch register`` exits 2 with that message. Each retry added one more identical
challenger (v3, v4, v5 … all one sha256, all in shadow), scored on every request and one
more test in the Holm correction."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.tunewatch.conftest import MODEL, in_flight, serving
from tunewatch._cli import main
from tunewatch._example import ExampleModel
from tunewatch.store import Store


def _body(model: ExampleModel) -> dict[str, Any]:
    return {
        "onnx_base64": base64.b64encode(model.onnx).decode(),
        "task": "binary",
        "feature_names": list(model.metadata.feature_names),
        "hyperparameters": dict(model.metadata.hyperparameters),
        "dataset_version": "ds-2026-12-07",
    }


def _stages(url: str, headers: dict[str, str]) -> dict[int, str]:
    r = httpx.get(f"{url}/v1/models/{MODEL}/versions", headers=headers, timeout=30)
    return {v["version"]: v["stage"] for v in r.json()["versions"]}


def test_a_retried_registration_is_409_naming_the_version_it_made(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    with serving(tmp_path, trained) as run:
        url, op = run.url, run.auth("operator")
        versions = f"{url}/v1/models/{MODEL}/versions"
        first = httpx.post(versions, json=_body(trained[0]), headers=op, timeout=120)
        assert first.status_code == 201, first.text
        assert first.json()["version"] == 3
        retry = httpx.post(versions, json=_body(trained[0]), headers=op, timeout=120)
        assert retry.status_code == 409, retry.text
        assert set(retry.json()) == {"error", "code"}
        assert retry.json()["code"] == "version_exists"
        assert f"model {MODEL!r} version 3 (shadow)" in retry.json()["error"]
        assert _stages(url, run.auth("viewer")) == {1: "champion", 2: "shadow", 3: "shadow"}
        # a study of the caller's own does not make the retry another version
        studied = {**_body(trained[0]), "study": "ci-run"}
        assert httpx.post(versions, json=studied, headers=op, timeout=120).status_code == 201
        again = httpx.post(versions, json=studied, headers=op, timeout=120)
        assert (again.status_code, again.json()["code"]) == (409, "version_exists")
        assert sorted(_stages(url, run.auth("viewer"))) == [1, 2, 3, 4]


def test_registrations_sent_at_once_make_one_version(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    with serving(tmp_path, trained) as run:
        url, op = run.url, run.auth("operator")
        body = _body(trained[0])
        threads, answers = in_flight(
            [
                lambda: httpx.post(
                    f"{url}/v1/models/{MODEL}/versions", json=body, headers=op, timeout=120
                )
            ]
            * 3
        )
        for t in threads:
            t.join()
        assert sorted(a.status_code for a in answers) == [201, 409, 409], [a.text for a in answers]
        assert {a.json()["code"] for a in answers if a.status_code == 409} == {"version_exists"}
        assert sorted(_stages(url, run.auth("viewer"))) == [1, 2, 3]


def test_a_retried_cli_registration_exits_2_naming_the_version(
    trained: list[ExampleModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(trained[0].onnx)
    args = [
        "--config",
        str(config),
        "--actor",
        "ci",
        "register",
        MODEL,
        str(onnx),
        "--task",
        "binary",
        "--features",
        ",".join(trained[0].metadata.feature_names),
        "--dataset-version",
        "ds-2026-12-07",
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"tunewatch: error: model {MODEL!r} version 1 (shadow)"), err
    assert "retire it first" in err, err
    store = Store.open(f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}")
    try:
        assert [v.version for v in store.list_versions(MODEL)] == [1]
    finally:
        store.close()
