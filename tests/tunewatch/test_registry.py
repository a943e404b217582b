"""Registration keeps what it derives itself, sizes references as they will be stored,
and refuses model names that are paths."""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import tunewatch._registry as registry_module
from retune import to_onnx
from shadow import Signature, TensorSpec
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._config import build_config
from tunewatch._daemon import Daemon
from tunewatch._errors import (
    ConfigError,
    ConflictError,
    InvalidValueError,
    NotFoundError,
    RegistrationError,
    TunewatchError,
)
from tunewatch._example import ExampleModel, example_data
from tunewatch._reference import Reference
from tunewatch._registry import Registry
from tunewatch._version_metadata import MAX_METADATA_DEPTH, finite_float, recorded_parity_error


def _header_only(descr: str, shape: tuple[int, ...], name: str = "features.npy") -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, header.getvalue() + b"\0" * 64)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("features.npy", (75_000_000, 8)),
        ("features", (75_000_000, 8)),
        ("labels.npy", (150_000_000,)),
        ("labels", (150_000_000,)),
    ],
)
def test_a_reference_is_sized_as_it_will_be_stored(name: str, shape: tuple[int, ...]) -> None:
    """int8 features declaring 600 MB pass a 1 GiB limit as declared, and are 2.4 GB once
    converted to float32 (an operator's 1 MB upload held ~10 GB at its peak). numpy
    serves `npz["labels"]` from a member named plain `labels` as well: such members were
    counted as declared, so a 1 MB upload could declare 1 GiB of int8 labels (8 GiB as
    stored float64)."""
    with pytest.raises(RegistrationError, match="would unpack to more than"):
        Reference.from_bytes(_header_only("|i1", shape, name))


def test_a_negative_dimension_cannot_cancel_a_huge_one() -> None:
    """numpy's header parser takes negative dimensions: one member declaring -10**12
    values cancelled the 10**12 float32 features of the next in the running total, and
    numpy then tried to allocate 3.6 TiB (a 500 `internal`; less, and it was held)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, shape in (("cancel.npy", (-(10**12),)), ("features.npy", (10**12,))):
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<f4", "fortran_order": False, "shape": shape}
            )
            archive.writestr(name, header.getvalue() + b"\0" * 64)
    with pytest.raises(RegistrationError, match="negative dimension") as info:
        Reference.from_bytes(out.getvalue())
    assert info.value.code == "invalid_reference"


def test_a_text_reference_is_refused_before_it_is_read() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, features=np.array([["a", "b"]]))
    with pytest.raises(RegistrationError, match="numeric"):
        Reference.from_bytes(buffer.getvalue())


@pytest.mark.parametrize(
    "format_version",
    [np.array([1, 2]), np.array(np.inf), np.array(1.5), np.array(0), np.array(True)],
    ids=["1-d", "infinite", "fractional", "zero", "boolean"],
)
def test_a_reference_format_version_must_be_a_positive_integer_scalar(
    format_version: np.ndarray,
) -> None:
    """A 1-d or infinite `format_version` escaped as TypeError/OverflowError: the API
    answered 500 and `tunewatch import` printed a traceback; 1.5 was read as 1."""
    buffer = io.BytesIO()
    np.savez(buffer, format_version=format_version, features=np.zeros((5, 1), np.float32))
    with pytest.raises(RegistrationError, match="`format_version` must be") as info:
        Reference.from_bytes(buffer.getvalue())
    assert info.value.code == "invalid_reference"


def test_a_reference_with_a_corrupt_lzma_member_is_refused() -> None:
    array = io.BytesIO()
    np.lib.format.write_array(array, np.zeros((50, 8), np.float32))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_LZMA) as archive:
        archive.writestr("features.npy", array.getvalue())
    data = bytearray(out.getvalue())
    start = 30 + len("features.npy") + 9  # past the local header and LZMA's properties
    for k in range(start, start + 8):
        data[k] ^= 0x5A
    with pytest.raises(RegistrationError, match="unreadable") as info:
        Reference.from_bytes(bytes(data))
    assert info.value.code == "invalid_reference"


def test_a_reference_round_trips_with_its_format_version() -> None:
    reference = Reference(features=np.ones((3, 2)), labels=np.array([0.0, 1.0, 1.0]))
    again = Reference.from_bytes(reference.to_bytes())
    assert np.array_equal(again.features, reference.features)
    assert again.labels is not None and np.array_equal(again.labels, reference.labels)


def test_details_the_registration_derives_cannot_be_supplied(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A forged `reference_sha256` made every evaluation of the version fail (a 500 on the
    API) and its export crash; a real one of another model swapped its drift baseline."""
    daemon, _ = make_daemon(tmp_path / "data", trained)
    try:
        forged = dataclasses.replace(
            trained[1].metadata,
            details={"reference_sha256": "not-a-sha", "reference_rows": 7, "opset": 1, "x": 1},
        )
        row = daemon.registry.register(MODEL, trained[1].onnx, forged, actor="t")
        assert "reference_sha256" not in row.details and "reference_rows" not in row.details
        assert row.details["opset"] != 1 and row.details["x"] == 1
    finally:
        daemon.close()


@pytest.mark.parametrize(
    ("labels", "features", "message"),
    [
        ([0.0, 1.0, 2.0, 1.0], None, "labels of a binary model must be 0 or 1"),
        ([0.0, 1.0, 0.5, 1.0], None, "labels of a binary model must be 0 or 1"),
        ([0.0, 1.0, np.inf, 1.0], None, "labels must be finite numbers or NaN"),
        (None, np.inf, "features must be finite numbers or NaN"),
        (None, 1e39, "features must be finite numbers or NaN"),  # float32's inf once stored
    ],
    ids=["binary-2", "binary-half", "infinite-label", "infinite-feature", "beyond-float32"],
)
def test_a_reference_whose_labels_or_features_the_model_cannot_have_is_refused(
    trained: list[ExampleModel],
    tmp_path: Path,
    labels: list[float] | None,
    features: float | None,
    message: str,
) -> None:
    """A binary model's reference labelled 2 was registered: CBPE could not calibrate,
    the label profile held a class no request can have, and the tuning window dropped
    those rows silently; an infinite feature, or one float32 cannot hold, became inf in
    the stored snapshot."""
    daemon, _ = make_daemon(tmp_path / "data", trained)
    try:
        x = np.zeros((4, 8))
        if features is not None:
            x[2, 3] = features
        y = None if labels is None else np.array(labels)
        with pytest.raises(RegistrationError, match=message) as info:
            daemon.registry.register(
                MODEL,
                trained[0].onnx,
                trained[0].metadata,
                actor="t",
                reference=Reference(features=x, labels=y),
            )
        assert info.value.code == "invalid_reference"
        # unknown labels (NaN) and missing features (NaN) are a reference's to have
        x[2, 3], x[1, 0] = 0.0, np.nan
        known = Reference(features=x, labels=np.array([0.0, np.nan, 1.0, 1.0]))
        daemon.registry.register(
            MODEL, trained[0].onnx, trained[0].metadata, actor="t", reference=known
        )
    finally:
        daemon.close()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("value", [np.inf, -np.inf], ids=["plus-inf", "minus-inf"])
def test_an_infinite_reference_value_is_refused_whatever_its_float_dtype(
    dtype: str, value: float
) -> None:
    """float32's largest, compared with a float16 array, became float16's inf: inf > inf
    is false, so an infinite float16 feature passed and drift on its column was
    insufficient_data for good."""
    x = np.zeros((3, 2), dtype=dtype)
    x[1, 1] = value
    with pytest.raises(RegistrationError, match="features must be finite numbers or NaN") as info:
        Reference(features=x).check(2)
    assert info.value.code == "invalid_reference"
    y = np.array([0.0, value, 1.0], dtype=dtype)
    with pytest.raises(RegistrationError, match="labels must be finite numbers or NaN") as info:
        Reference(features=np.zeros((3, 2), dtype=dtype), labels=y).check_labels(
            "regression", classes=None
        )
    assert info.value.code == "invalid_reference"
    # NaN (missing) and the largest finite value of the dtype are a reference's to have
    x[1, 1], x[0, 0] = np.nan, np.finfo(dtype).max if dtype != "float64" else 1e38
    Reference(features=x).check(2)


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e300])
def test_reference_scores_must_be_finite_or_nan_within_float32(value: float) -> None:
    """Scores are stored as float32 and had no range check: 1e300 was kept as inf."""
    scores = np.full((3, 2), 0.5)
    scores[1, 0] = value
    with pytest.raises(RegistrationError, match="scores must be finite numbers or NaN") as info:
        Reference(features=np.zeros((3, 2)), scores=scores).check(2)
    assert info.value.code == "invalid_reference"
    scores[1, 0] = np.nan  # a row no fold held out
    Reference(features=np.zeros((3, 2)), scores=scores).check(2)


@pytest.mark.parametrize("value", [1e300, -3.5e38])
def test_regression_reference_labels_must_be_within_float32_as_feedback_labels(
    value: float,
) -> None:
    """The labels API refuses a regression label float32 cannot hold (its squared error
    is infinite: every retune of the model failed); a reference's 1e300 was registered."""
    labels = np.array([0.5, value, np.nan])
    with pytest.raises(RegistrationError, match="float32") as info:
        Reference(features=np.zeros((3, 2)), labels=labels).check_labels("regression", classes=None)
    assert info.value.code == "invalid_reference"
    assert f"{value:g}" in info.value.message
    labels[1] = float(np.finfo(np.float32).max)
    Reference(features=np.zeros((3, 2)), labels=labels).check_labels("regression", classes=None)


def test_multiclass_reference_labels_are_class_indices_of_the_model_s_outputs() -> None:
    reference = Reference(features=np.zeros((3, 2)), labels=np.array([0.0, 2.0, np.nan]))
    reference.check_labels("multiclass", classes=3)
    reference.check_labels("regression", classes=None)
    for labels, classes in (([0.0, 3.0], 3), ([0.0, 1.5], 3), ([-1.0, 1.0], None)):
        bad = Reference(features=np.zeros((2, 2)), labels=np.array(labels))
        with pytest.raises(RegistrationError, match="class index") as info:
            bad.check_labels("multiclass", classes=classes)
        assert info.value.code == "invalid_reference"


@pytest.mark.parametrize("name", ["../../pwn", "a/b", "a\\b", "..", ".", "   ", "fraud ", " fraud"])
def test_a_model_name_that_is_a_path_or_spaced_is_refused(
    trained: list[ExampleModel], tmp_path: Path, name: str
) -> None:
    """A bundle named `../../pwn` wrote its reports outside the data directory."""
    daemon, _ = make_daemon(tmp_path / "data", trained)
    try:
        with pytest.raises(InvalidValueError, match="model `name`"):
            daemon.registry.register(name, trained[0].onnx, trained[0].metadata, actor="t")
    finally:
        daemon.close()


def test_a_registration_racing_the_first_cannot_change_the_model(
    trained: list[ExampleModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both registrations saw no model yet; the later one overwrote the first's
    `regulated=True` with False, and no audit entry said so."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        model = trained[0]
        daemon.registry.register(MODEL, model.onnx, model.metadata, actor="alice", regulated=True)
        monkeypatch.setattr(daemon.registry, "_existing_model", lambda name: None)  # the race
        with pytest.raises(ConflictError) as info:
            daemon.registry.register(
                MODEL, model.onnx, model.metadata, actor="bob", regulated=False
            )
        assert info.value.code == "regulated_mismatch"
        assert daemon.store.get_model(MODEL).regulated is True
        assert len(daemon.store.list_versions(MODEL)) == 1
    finally:
        daemon.close()


def test_a_model_the_config_regulates_is_created_regulated_whatever_the_caller_says(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The store's flag is what a replica whose config does not list the model goes by:
    a model registered without the flag under a config that regulates it was stored
    unregulated, and such a replica promoted it without an approver."""
    config = build_config(
        {
            "data_dir": str(tmp_path / "data"),
            "models": [{"name": "loans", "task": "binary", "regulated": True}],
        },
        env={},
    )
    daemon = Daemon(config, env={})
    try:
        row = daemon.registry.register(
            "loans", trained[0].onnx, trained[0].metadata, actor="t", regulated=False
        )
        assert daemon.store.get_model(row.model).regulated
        other = daemon.registry.register("other", trained[0].onnx, trained[0].metadata, actor="t")
        assert not daemon.store.get_model(other.model).regulated
    finally:
        daemon.close()


def _daemon(tmp_path: Path, store_url: str, *, regulates: bool) -> Daemon:
    raw: dict[str, object] = {"data_dir": str(tmp_path / "data"), "store": {"url": store_url}}
    if regulates:
        raw["models"] = [{"name": "loans", "task": "binary", "regulated": True}]
    return Daemon(build_config(raw, env={}), env={})


def test_a_daemon_regulates_the_stored_models_its_config_regulates_when_it_starts(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A model stored unregulated before its config regulated it stayed unregulated, so a
    replica whose config does not list it promoted it without an approver."""
    before = _daemon(tmp_path, store_url, regulates=False)
    try:
        for name in ("loans", "other"):
            before.registry.register(
                name, trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
            )
    finally:
        before.close()
    regulating = _daemon(tmp_path, store_url, regulates=True)
    try:
        assert regulating.store.get_model("loans").regulated is True
        assert regulating.store.get_model("other").regulated is False
        [entry] = regulating.store.audit_log(action="regulate_model")
        assert (entry.actor, entry.target) == ("tunewatch", "loans")
        assert "config" in entry.details["reason"]
    finally:
        regulating.close()
    replica = _daemon(tmp_path, store_url, regulates=False)  # its config does not list it
    try:
        assert replica.store.get_model("loans").regulated is True  # never loosened
        with pytest.raises(ConflictError) as info:
            replica.registry.register(
                "loans", trained[1].onnx, trained[1].metadata, actor="t", regulated=False
            )
        assert info.value.code == "regulated_mismatch"
        assert len(replica.store.audit_log(action="regulate_model")) == 1
    finally:
        replica.close()


def test_a_registration_asking_for_regulation_regulates_an_existing_model(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """`regulated=True` for a model stored unregulated was refused as a change: the flag
    could not be set once the model existed."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        daemon.registry.register("loans", trained[0].onnx, trained[0].metadata, actor="t")
        row = daemon.registry.register(
            "loans", trained[1].onnx, trained[1].metadata, actor="alice", regulated=True
        )
        assert row.version == 2 and daemon.store.get_model("loans").regulated is True
        [entry] = daemon.store.audit_log(action="regulate_model")
        assert (entry.actor, entry.target) == ("alice", "loans")
    finally:
        daemon.close()


def test_a_registration_regulates_an_existing_model_its_config_regulates(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The model was stored unregulated after this process started (by a replica whose
    config does not list it): the registration kept the stored flag."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        daemon.registry.register("loans", trained[0].onnx, trained[0].metadata, actor="t")
        registry = Registry(daemon.store, daemon.artefacts, regulated_models=["loans"])
        registry.register("loans", trained[1].onnx, trained[1].metadata, actor="bob")
        assert daemon.store.get_model("loans").regulated is True
        [entry] = daemon.store.audit_log(action="regulate_model")
        assert entry.actor == "bob" and "config" in entry.details["reason"]
    finally:
        daemon.close()


def test_a_model_regulated_during_the_candidate_check_gets_no_champion(
    trained: list[ExampleModel], tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval rule was checked before the sandboxed load (seconds) and never again:
    a model regulated meanwhile (another registration with `regulated: true`, a daemon
    starting whose config regulates it) got a champion no approver saw."""
    daemon = _daemon(tmp_path, store_url, regulates=False)
    try:
        daemon.registry.register("loans", trained[1].onnx, trained[1].metadata, actor="t")
        inspect = registry_module.inspect_candidate

        def regulated_meanwhile(path: Path, **kwargs: Any) -> Any:
            info = inspect(path, **kwargs)
            daemon.store.regulate_model("loans", actor="bob", reason="meanwhile")
            return info

        monkeypatch.setattr(registry_module, "inspect_candidate", regulated_meanwhile)
        with pytest.raises(ConflictError) as info:
            daemon.registry.register(
                "loans", trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
            )
        assert info.value.code == "approval_required"
        assert daemon.store.champion("loans") is None
        assert [v.version for v in daemon.store.list_versions("loans")] == [1]
    finally:
        daemon.close()


def _drift_columns(tmp_path: Path, columns: dict[str, object]) -> Daemon:
    drifting = {"name": MODEL, "task": "binary", "evaluation": {"drift": {"columns": columns}}}
    raw = {
        "data_dir": str(tmp_path / "data"),
        "models": [{"name": "loans", "task": "binary"}, drifting],
    }
    return Daemon(build_config(raw, env={}), env={})


def test_a_drift_setting_for_a_column_the_model_lacks_refuses_its_registration(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """A misspelt column passed config loading (a model's features are known only once
    it registers), then every evaluation of the model raised: drift, decay, labels,
    estimate and telemetry were all lost."""
    daemon = _drift_columns(tmp_path, {"x99": {"method": "ks"}})
    try:
        with pytest.raises(ConfigError) as info:
            daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
        assert info.value.code == "invalid_config"
        assert "models.1.evaluation.drift.columns.x99" in info.value.message
        assert "__prediction__" in info.value.message and "x0" in info.value.message
        with pytest.raises(NotFoundError):
            daemon.store.get_model(MODEL)
    finally:
        daemon.close()


def _regression_config(tmp_path: Path, store_url: str) -> dict[str, object]:
    return {
        "data_dir": str(tmp_path / "data"),
        "store": {"url": store_url},
        "models": [{"name": "loans", "task": "binary"}, {"name": MODEL, "task": "regression"}],
    }


def test_a_version_of_another_task_than_the_config_says_refuses_its_registration(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A binary version of a model the config calls regression was registered; every
    evaluation and comparison then built the config's objective (rmse) against binary
    scores and failed."""
    daemon = Daemon(build_config(_regression_config(tmp_path, store_url), env={}), env={})
    try:
        with pytest.raises(ConfigError) as info:
            daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
        assert info.value.code == "invalid_config"
        assert info.value.message == (
            f"models.1.task: a model's task in the config must be its versions' task, got "
            f"'regression' for model {MODEL!r}, whose versions are 'binary' (a model's task "
            "never changes: correct the config, or register the version under another name)"
        )
        with pytest.raises(NotFoundError):
            daemon.store.get_model(MODEL)
    finally:
        daemon.close()


def test_a_daemon_refuses_to_start_when_a_stored_model_is_of_another_task_than_configured(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A config calling a stored binary model regression loaded and the daemon started;
    `tunewatch evaluate`, POST /v1/models/{m}/evaluate and every scheduled run then failed
    building rmse against the binary model's scores."""
    raw = _regression_config(tmp_path, store_url)
    before = Daemon(build_config({**raw, "models": []}, env={}), env={})
    try:
        before.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
    finally:
        before.close()
    with pytest.raises(ConfigError, match=r"^models\.1\.task: .*got 'regression' .*'binary'"):
        Daemon(build_config(raw, env={}), env={})


def test_the_largest_candidate_memory_limit_the_config_takes_loads_a_candidate(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """99999999999999 MB loaded, then every registration failed with a SubprocessError
    traceback: the child's address-space limit must fit a signed 64-bit byte count."""
    largest = {"scoring": {"candidate_memory_limit_mb": (2**63 - 1) // 2**20}}
    with pytest.raises(ConfigError, match=r"scoring\.candidate_memory_limit_mb: .*less than or"):
        build_config({"scoring": {"candidate_memory_limit_mb": 99999999999999}}, env={})
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data"), **largest}, env={}), env={})
    try:
        row = daemon.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
        assert row.version == 1
    finally:
        daemon.close()


def _nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return dict(value)


@pytest.mark.parametrize("field", ["hyperparameters", "details"])
def test_metadata_nested_past_the_bound_is_refused_before_anything_is_written(
    trained: list[ExampleModel], tmp_path: Path, field: str
) -> None:
    """300 levels passed every check and were committed; serialising the version then
    failed: the API answered 500 after the commit and listed the model's versions with
    500 from then on."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        deep = dataclasses.replace(trained[0].metadata, **{field: _nested(MAX_METADATA_DEPTH + 1)})
        with pytest.raises(RegistrationError) as info:
            daemon.registry.register("deep", trained[0].onnx, deep, actor="t")
        assert info.value.code == "invalid_request"
        assert f"`{field}`" in info.value.message
        assert f"at most {MAX_METADATA_DEPTH} levels deep, got {MAX_METADATA_DEPTH + 1}" in (
            info.value.message
        )
        assert daemon.store.list_models() == []
        assert not any(daemon.artefacts.root.rglob("*.onnx"))
        at_bound = dataclasses.replace(trained[0].metadata, **{field: _nested(MAX_METADATA_DEPTH)})
        row = daemon.registry.register("deep", trained[0].onnx, at_bound, actor="t")
        assert getattr(row, field)["a"] == _nested(MAX_METADATA_DEPTH)["a"]
    finally:
        daemon.close()


HUGE = 10**400  # an integer no float holds (JSON has no limit; a bundle may carry one)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("details", {"parity_error": HUGE}),
        ("details", {"best_value": HUGE}),
        ("details", {"nested_estimate": {"mean": HUGE, "std": 1.0}}),
        ("hyperparameters", {"C": [1, -HUGE]}),
    ],
    ids=["parity-error", "best-value", "nested-estimate", "hyperparameter"],
)
def test_metadata_holding_an_integer_past_float64_is_refused_before_anything_is_written(
    trained: list[ExampleModel], tmp_path: Path, field: str, value: dict[str, Any]
) -> None:
    """`parity_error` as one was a 500 (`math.isfinite` overflowed); `best_value` or a
    `nested_estimate` as one registered, then made the tuning page and the version's
    report a 500 at every view."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        meta = dataclasses.replace(trained[0].metadata, **{field: value})
        with pytest.raises(RegistrationError) as info:
            daemon.registry.register("huge", trained[0].onnx, meta, actor="t")
        assert info.value.code == "invalid_request"
        assert "beyond float64" in info.value.message
        assert daemon.store.list_models() == []
    finally:
        daemon.close()
    # a row stored before: its readers (the parity guardrail, the tuning page) see no number
    assert recorded_parity_error({"parity_error": HUGE}) is None
    assert finite_float(HUGE) is None and finite_float(-HUGE) is None
    assert finite_float(3) == 3.0 and finite_float(float("nan")) is None
    assert finite_float(True) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("details", {"note": "a\x00b"}),
        ("details", {"a\x00b": 1}),
        ("hyperparameters", {"grid": [["x\x00"]]}),
    ],
    ids=["details-value", "details-key", "hyperparameter"],
)
def test_metadata_holding_a_nul_is_refused_on_both_backends_alike(
    trained: list[ExampleModel], tmp_path: Path, field: str, value: dict[str, Any]
) -> None:
    """PostgreSQL's `json` kept a NUL that no `->>` can read back; event and alert JSON
    refused one, a version's metadata did not (and SQLite took it silently)."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        meta = dataclasses.replace(trained[0].metadata, **{field: value})
        with pytest.raises(InvalidValueError, match="must not hold a NUL"):
            daemon.registry.register("nul", trained[0].onnx, meta, actor="t")
        assert daemon.store.list_models() == []
    finally:
        daemon.close()


def test_a_daemon_does_not_start_with_a_drift_setting_for_a_column_a_stored_model_lacks(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    before = _drift_columns(tmp_path, {"__prediction__": {"method": "ks"}})
    try:
        before.registry.register(MODEL, trained[0].onnx, trained[0].metadata, actor="t")
    finally:
        before.close()
    with pytest.raises(ConfigError, match=r"models\.1\.evaluation\.drift\.columns\.age"):
        _drift_columns(tmp_path, {"x0": {"method": "ks"}, "age": {"method": "ks"}})


_REFUSED = {
    "details-too-deep": {"details": _nested(MAX_METADATA_DEPTH + 1)},
    "hyperparameters-not-json": {"hyperparameters": {"lr": float("nan")}},
    "null-parity-error": {"details": {"parity_error": None}},
    "dataset-version-too-long": {"dataset_version": "d" * 201},
    "nul-in-study": {"study": "a\x00b"},
}


@pytest.mark.parametrize("spoil", list(_REFUSED))
def test_check_refuses_what_register_refuses_and_writes_nothing(
    trained: list[ExampleModel], tmp_path: Path, spoil: str
) -> None:
    """A bundle import checked its versions with a hand-copied subset of the registration's
    rules: a version the registration then refused (too deep, `parity_error: null`, a
    value PostgreSQL cannot hold) let the versions before it in."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        metadata = dataclasses.replace(trained[0].metadata, **_REFUSED[spoil])
        with pytest.raises(TunewatchError) as checked:
            daemon.registry.check(MODEL, trained[0].onnx, metadata)
        with pytest.raises(TunewatchError) as registered:
            daemon.registry.register(MODEL, trained[0].onnx, metadata, actor="t")
        assert isinstance(checked.value, ValueError)  # the API answers 400
        assert (type(checked.value), checked.value.code, checked.value.message) == (
            type(registered.value),
            registered.value.code,
            registered.value.message,
        )
        assert daemon.store.list_models() == []
        assert not any(daemon.artefacts.root.rglob("*.onnx"))
    finally:
        daemon.close()


def test_a_checked_candidate_is_registered_without_loading_it_again(
    trained: list[ExampleModel], tmp_path: Path, inspected: list[bytes]
) -> None:
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        loaded = inspected
        model = trained[0]
        info = daemon.registry.check(MODEL, model.onnx, model.metadata)
        row = daemon.registry.register(MODEL, model.onnx, model.metadata, actor="t", inspected=info)
        assert loaded == [model.onnx]
        assert row.load_memory_bytes == info.load_memory_bytes
        other = trained[1]  # another file's inspection does not stand for this one's
        daemon.registry.register(MODEL, other.onnx, other.metadata, actor="t", inspected=info)
        assert loaded == [model.onnx, other.onnx]
    finally:
        daemon.close()


_SURROGATE = "\udcff"  # what an argv or JSON byte no codec decodes becomes in Python

_UNENCODABLE = {
    "feature-name": ({"feature_names": f"x{_SURROGATE}"}, "`feature_names[2]`"),
    "hyperparameter-value": ({"hyperparameters": {"C": _SURROGATE}}, "`hyperparameters.C`"),
    "hyperparameter-key": (
        {"hyperparameters": {f"C{_SURROGATE}": 1}},
        "a key of `hyperparameters`",
    ),
    "nested-hyperparameter": (
        {"hyperparameters": {"grid": [1, {"kernel": f"rbf{_SURROGATE}"}]}},
        "`hyperparameters.grid[1].kernel`",
    ),
    "details-value": ({"details": {"note": _SURROGATE}}, "`details.note`"),
}


@pytest.mark.parametrize("spoil", list(_UNENCODABLE))
def test_register_refuses_lone_surrogate_in_features_and_hyperparameters(
    trained: list[ExampleModel], tmp_path: Path, spoil: str
) -> None:
    """`tunewatch register --features $'a,b,c\\xff'` (or `--hyperparameters '{"C":
    "\\udcff"}'`, or the same in an API body or a bundle) stored the lone surrogate; every
    read of the model then failed to serialise: the API answered 500 for the model list,
    the model, its versions and the version, and an export carried it on."""
    daemon = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        changes, where = _UNENCODABLE[spoil]
        if "feature_names" in changes:  # the third of the example model's 8 features
            names = list(trained[0].metadata.feature_names)
            names[2] = changes["feature_names"]
            changes = {"feature_names": tuple(names)}
        metadata = dataclasses.replace(trained[0].metadata, **changes)
        with pytest.raises(InvalidValueError) as checked:  # a bundle import checks so
            daemon.registry.check(MODEL, trained[0].onnx, metadata)
        with pytest.raises(InvalidValueError) as registered:
            daemon.registry.register(MODEL, trained[0].onnx, metadata, actor="t")
        for info in (checked, registered):
            assert isinstance(info.value, ValueError)  # the API answers 400
            assert f"{where} must be text UTF-8 can encode" in info.value.message
            assert "\\udcff" in info.value.message  # quoted, so the message itself prints
        assert daemon.store.list_models() == []
        assert not any(daemon.artefacts.root.rglob("*.onnx"))
    finally:
        daemon.close()


def test_the_store_refuses_lone_surrogates_in_model_and_version_metadata(
    store_url: str,
) -> None:
    """The store checks as well: a caller that goes around the registry cannot store what
    no reader of the model can serialise."""
    from tunewatch.store import Store

    with Store.open(store_url) as store:
        with pytest.raises(InvalidValueError, match=r"`feature_names\[1\]` must be text"):
            store.ensure_model(name="m", task="binary", feature_names=["a", f"b{_SURROGATE}"])
        store.ensure_model(name="m", task="binary", feature_names=["a", "b"])
        for field, value in (
            ("hyperparameters", {"lr": [0.1, _SURROGATE]}),
            ("details", {f"k{_SURROGATE}": 1}),
        ):
            with pytest.raises(InvalidValueError, match=f"`{field}"):
                store.add_version(
                    model="m",
                    artefact_sha256="a" * 64,
                    hyperparameters=value if field == "hyperparameters" else {},
                    size_bytes=1,
                    actor="t",
                    details=value if field == "details" else None,
                )
        assert store.list_versions("m") == []


def test_a_version_whose_input_name_differs_from_the_champion_s_is_refused(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Only the feature count was compared: a version whose input had another name
    registered, and once promoted refused every request valid for the champion (a request
    names its input). Another element type stays allowed, as the README says: rows read
    against the champion's signature are cast to a shadow's type."""
    daemon, _ = make_daemon(tmp_path / "data", trained)
    try:
        x, y = example_data(300, seed=0)
        estimator = LogisticRegression().fit(x, y)

        def exported(input_name: str, dtype: type) -> bytes:
            spec = TensorSpec(name=input_name, dtype=np.dtype(dtype), shape=(None, 8))
            return to_onnx(estimator, 8, like=Signature(input=spec, outputs=(), primary_output=""))

        other = exported("float_input", np.float32)
        with pytest.raises(ConflictError) as refused:
            daemon.registry.check(MODEL, other, trained[0].metadata)
        assert refused.value.code == "signature_mismatch"
        assert "input: float32[None, 8]" in refused.value.message
        assert "float_input: float32[None, 8]" in refused.value.message
        with pytest.raises(ConflictError) as refused:
            daemon.registry.register(MODEL, other, trained[0].metadata, actor="t")
        assert refused.value.code == "signature_mismatch"
        assert len(daemon.store.list_versions(MODEL)) == 2
        as_float64 = exported("input", np.float64)
        row = daemon.registry.register(MODEL, as_float64, trained[0].metadata, actor="t")
        assert row.version == 3
    finally:
        daemon.close()


@pytest.mark.parametrize("width", [1, 3])
def test_reference_scores_narrower_or_wider_than_the_primary_output_are_refused(
    trained: list[ExampleModel], tmp_path: Path, width: int
) -> None:
    """A binary model's positive-class column alone registered, and its evaluations then
    silently took the version's own in-sample scores instead of the held-out ones."""
    daemon, _ = make_daemon(tmp_path / "data", trained)
    try:
        x, y = example_data(40, seed=3)
        for scores in (np.full((40, width), 0.5), np.full((40, 2), 0.5)):
            reference = Reference(features=x, labels=y.astype(np.float64), scores=scores)
            if scores.shape[1] != 2:
                with pytest.raises(RegistrationError, match="one column per column") as info:
                    daemon.registry.register(
                        MODEL, trained[1].onnx, trained[1].metadata, actor="t", reference=reference
                    )
                assert info.value.code == "invalid_reference"
            else:
                row = daemon.registry.register(
                    MODEL, trained[1].onnx, trained[1].metadata, actor="t", reference=reference
                )
                assert row.details["reference_rows"] == 40
    finally:
        daemon.close()


def test_a_classifier_s_reference_scores_must_be_probabilities(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """Logits registered as a classifier's reference scores (201, where the mirror route
    refuses the same values 400) made in-distribution traffic prediction drift at
    p = 4e-72 and the label-free estimate drop 0.14: `estimate_dropped`, and a retune
    queued, for a model that had not changed."""
    daemon, _ = make_daemon(tmp_path / "data", trained)
    try:
        x, y = example_data(40, seed=3)
        p = np.linspace(0.01, 0.99, 40)
        logits = np.log(p / (1 - p))
        for scores, refused in (
            (np.column_stack([-logits, logits]), True),
            (np.column_stack([1 - p, p]), False),
            (
                np.column_stack([1 - p, np.where(np.arange(40) % 7, p, np.nan)]),
                False,
            ),  # NaN: no fold held it out
        ):
            reference = Reference(features=x, labels=y.astype(np.float64), scores=scores)
            if refused:
                with pytest.raises(RegistrationError, match="must be probabilities") as info:
                    daemon.registry.register(
                        MODEL, trained[1].onnx, trained[1].metadata, actor="t", reference=reference
                    )
                assert info.value.code == "invalid_reference"
            else:
                daemon.registry.register(
                    MODEL, trained[1].onnx, trained[1].metadata, actor="t", reference=reference
                )
    finally:
        daemon.close()


def test_a_model_another_replica_adds_is_regulated_at_once_and_its_champion_refused(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A daemon whose config regulates a model the store did not hold yet regulated it
    only when it started: a replica whose config does not list the model registered it
    unregulated, a champion at once, and it stayed so (its promotions waited for no
    approver) until the regulating daemon restarted. The daemon stores the regulation
    with the model's safe ranges: the replica's champion is refused, and its shadow
    registration creates the model regulated, audited once."""
    regulating = _daemon(tmp_path, store_url, regulates=True)
    try:
        replica = _daemon(tmp_path, store_url, regulates=False)
        try:
            with pytest.raises(ConflictError) as refused:
                replica.registry.register(
                    "loans", trained[0].onnx, trained[0].metadata, actor="t", stage="champion"
                )
            assert refused.value.code == "approval_required"
            replica.registry.register("loans", trained[0].onnx, trained[0].metadata, actor="t")
            replica.registry.register("other", trained[0].onnx, trained[0].metadata, actor="t")
        finally:
            replica.close()
        assert regulating.store.get_model("loans").regulated is True
        assert regulating.store.get_model("other").regulated is False
        regulating._refresh_once()  # nothing more to regulate
        [entry] = regulating.store.audit_log(action="regulate_model")
        assert (entry.actor, entry.target) == ("t", "loans")
    finally:
        regulating.close()


def test_a_model_created_past_the_registry_is_regulated_at_the_daemon_s_next_refresh(
    trained: list[ExampleModel], tmp_path: Path, store_url: str
) -> None:
    """A model row made without a registration (``Store.ensure_model``, which applies no
    stored regulation) is regulated by the regulating daemon's refresh loop, which sees
    the new model."""
    regulating = _daemon(tmp_path, store_url, regulates=True)
    try:
        names = trained[0].metadata.feature_names
        regulating.store.ensure_model(name="loans", task="binary", feature_names=names)
        assert regulating.store.get_model("loans").regulated is False
        regulating._refresh_once()
        assert regulating.store.get_model("loans").regulated is True
        [entry] = regulating.store.audit_log(action="regulate_model")
        assert (entry.actor, entry.target) == ("tunewatch", "loans")
    finally:
        regulating.close()
