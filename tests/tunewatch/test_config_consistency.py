"""Settings that loaded but could never work together: refused when the config loads, or
when a model registers and its classes and features are known."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tunewatch import ConfigError, build_config, load_config
from tunewatch._daemon import Daemon
from tunewatch._version_metadata import VersionMetadata

ROOT = Path(__file__).resolve().parents[2]
TWO = [[0, 1], [5, 0]]
THREE = [[0, 1, 1], [5, 0, 1], [1, 1, 0]]


def _model(**settings: Any) -> dict[str, Any]:
    return {"name": "m", "task": "binary", **settings}


def _three_class_onnx() -> bytes:
    from sklearn.linear_model import LogisticRegression

    from retune import to_onnx

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    return to_onnx(LogisticRegression(max_iter=200).fit(x, y), 3, name="lr")


def test_a_multiclass_cost_matrix_must_have_a_row_per_class_of_the_model() -> None:
    """A 2x2 matrix for a three-class model loaded and registered; every decay window then
    failed to score (decay read insufficient_data for ever) and every trial failed."""
    objective = {"name": "cost", "params": {"cost_matrix": TWO}}
    config = build_config({"models": [_model(task="multiclass", objective=objective)]}, env={})
    config.check_registered_model("m", ["a", "b"], task="multiclass", classes=2)
    config.check_registered_model("m", ["a", "b"], task="multiclass")  # classes not known
    with pytest.raises(
        ConfigError,
        match=r"^models\.0\.objective\.params\.cost_matrix: .*2x2.*'m'.*3 classes",
    ):
        config.check_registered_model("m", ["a", "b"], task="multiclass", classes=3)
    other = build_config({"models": [_model(task="multiclass")]}, env={})  # log_loss
    other.check_registered_model("m", ["a", "b"], task="multiclass", classes=3)


def test_a_multiclass_version_whose_classes_the_cost_matrix_does_not_fit_is_not_registered(
    tmp_path: Path,
) -> None:
    objective = {"name": "cost", "params": {"cost_matrix": TWO}}
    raw = {"data_dir": str(tmp_path), "models": [_model(task="multiclass", objective=objective)]}
    daemon = Daemon(build_config(raw, env={}), env={})
    try:
        metadata = VersionMetadata(task="multiclass", feature_names=("a", "b", "c"))
        with pytest.raises(ConfigError, match=r"models\.0\.objective\.params\.cost_matrix"):
            daemon.registry.register("m", _three_class_onnx(), metadata, actor="t")
        assert daemon.store.list_models() == []
    finally:
        daemon.close()


def test_an_evaluation_window_of_fewer_rows_than_drift_needs_is_said_at_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Drift (and the accuracy estimate) read insufficient_data at every run, unless the
    newest request alone fills the window (a window is whole requests): said, not
    refused, since a config of batched traffic that loaded before still works."""
    with caplog.at_level("WARNING", logger="tunewatch._config_evaluation"):
        build_config({"models": [_model(evaluation={"window_rows": 50})]}, env={})
        assert [r.getMessage() for r in caplog.records] == [
            "evaluation.window_rows (50) is below drift.min_rows (100): drift and the "
            "accuracy estimate are tested only when the newest request alone holds 100 "
            "rows, and read insufficient_data otherwise"
        ]
        caplog.clear()
        fits = {"window_rows": 50, "drift": {"min_rows": 50}}
        build_config({"models": [_model(evaluation=fits)]}, env={})
        off = {"window_rows": 50, "drift": {"enabled": False}, "estimate": {"enabled": False}}
        build_config({"models": [_model(evaluation=off)]}, env={})
        assert caplog.records == []


def test_a_tuning_window_of_fewer_rows_than_a_job_needs_is_said_at_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without the reference rows, every job failed on its `min_rows` check (unless the
    newest request alone held them)."""
    tuning = {"window_rows": 50, "min_rows": 100, "include_reference": False}
    with caplog.at_level("WARNING", logger="tunewatch._config_tuning"):
        build_config({"models": [_model(tuning=tuning)]}, env={})
        assert [r.getMessage() for r in caplog.records] == [
            "tuning.window_rows (50) is below tuning.min_rows (100) with include_reference "
            "false: a job fails unless the newest request alone holds 100 labelled rows"
        ]
        caplog.clear()
        # the champion's reference rows may fill the window
        build_config({"models": [_model(tuning={**tuning, "include_reference": True})]}, env={})
        assert caplog.records == []


@pytest.mark.parametrize("schedule", [{"schedule_hours": 24}, {"schedule_cron": "0 3 * * 0"}])
def test_a_schedule_with_no_schedule_trigger_is_a_config_error(schedule: dict[str, Any]) -> None:
    """Each firing recorded a `schedule` event and queued nothing."""
    triggers = [{"on": "drift_detected", "do": "retune"}]
    with pytest.raises(ConfigError, match=r"models\.0: .*add a trigger `on: schedule`"):
        build_config({"models": [_model(tuning=schedule, triggers=triggers)]}, env={})
    with_it = [*triggers, {"on": "schedule", "do": "retune"}]
    assert build_config({"models": [_model(tuning=schedule, triggers=with_it)]}, env={})
    assert build_config({"models": [_model(tuning=schedule)]}, env={})  # the defaults have it


def _file(folder: Path, raw: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tunewatch.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_relative_sqlite_store_url_is_beside_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It followed the working directory: a command run from elsewhere made and migrated
    an empty store there."""
    path = _file(tmp_path / "etc", {"store": {"url": "sqlite:///state/tw.db"}})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config(path, env={})
    assert config.store_url == f"sqlite:///{tmp_path / 'etc' / 'state' / 'tw.db'}"
    # the environment's, and a config without a file, under the working directory
    env = {"TUNEWATCH_STORE_URL": "sqlite:///mine.db"}
    assert load_config(path, env=env).store_url == f"sqlite:///{tmp_path / 'elsewhere' / 'mine.db'}"
    built = build_config({"store": {"url": "sqlite:///tw.db?timeout=5"}}, env={})
    assert built.store_url == f"sqlite:///{tmp_path / 'elsewhere' / 'tw.db'}?timeout=5"
    # absolute, under the home directory (the store expands it), in memory and other
    # databases as written
    for url in (
        "sqlite:////srv/tw.db",
        "sqlite:///~/tw.db",
        "postgresql+psycopg://u:p@h/db",
    ):
        assert build_config({"store": {"url": url}}, env={}).store_url == url
    # the copy written for the workers names the same database wherever it is
    worker = tmp_path / "etc" / "state" / "worker-config.yaml"
    worker.parent.mkdir()
    worker.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert load_config(worker, env={}) == config


@pytest.mark.parametrize(
    ("key", "value", "existing"),
    [
        ("store", {"url": "sqlite:///tw.db"}, "tw.db"),
        ("tuning", {"storage_url": "sqlite:///optuna.db"}, "optuna.db"),
        ("tuning", {"storage_url": "studies.log"}, "studies.log"),
    ],
    ids=["store-url", "tuning-storage-url", "tuning-journal"],
)
def test_a_relative_path_an_earlier_release_read_under_the_working_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: dict[str, str], existing: str
) -> None:
    """An install whose store sat under the service's working directory: after the
    upgrade the same config named a file beside it, and the daemon made and migrated an
    empty store there (no models, no champion, no history)."""
    path = _file(tmp_path / "etc", {key: value})
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / existing).write_bytes(b"")
    monkeypatch.chdir(tmp_path / "srv")
    with pytest.raises(ConfigError, match="earlier releases read it under the working dir"):
        load_config(path, env={})
    (tmp_path / "etc" / existing).write_bytes(b"")  # both exist: the file's, as documented
    load_config(path, env={})


@pytest.mark.parametrize(
    ("written", "read"),
    [("sqlite:///optuna.db", "sqlite:///{}/optuna.db"), ("studies.log", "{}/studies.log")],
    ids=["sqlite", "journal-file"],
)
def test_a_relative_tuning_storage_is_beside_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str, read: str
) -> None:
    """`tuning.storage_url: notaurl` was a journal file in whatever directory the worker
    ran in."""
    path = _file(tmp_path / "etc", {"tuning": {"storage_url": written}})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_config(path, env={}).tuning_storage_url == read.format(tmp_path / "etc")
    built = build_config({"tuning": {"storage_url": written}}, env={})
    assert built.tuning_storage_url == read.format(tmp_path / "elsewhere")


@pytest.mark.parametrize(
    "features",
    [
        [{"name": "x0", "low": -10, "high": 10}, {"name": "x0", "low": -1e9, "high": 1e9}],
        [{"name": "x0", "low": -10}, {"name": "x1"}, {"name": "x0", "high": 3}],
    ],
    ids=["twice", "twice-apart"],
)
def test_feature_ranges_naming_a_feature_twice_are_a_config_error(
    features: list[dict[str, Any]],
) -> None:
    """The last range silently replaced the first."""
    with pytest.raises(ConfigError, match=r"models\.0\.features: .*'x0' more than once"):
        build_config({"models": [_model(features=features)]}, env={})


def test_feature_ranges_naming_no_feature_of_the_model_are_refused_when_it_registers() -> None:
    """A misspelt name guarded nothing, with only a log warning."""
    config = build_config(
        {"models": [_model(features=[{"name": "X0", "low": -10, "high": 10}])]}, env={}
    )
    with pytest.raises(ConfigError, match=r"^models\.0\.features\.0\.name: .*'X0'.*x0, x1"):
        config.check_registered_model("m", ["x0", "x1"], task="binary")
    config.check_registered_model("m", ["X0", "x1"], task="binary")


def test_an_empty_server_host_is_a_config_error() -> None:
    """`host: ""` listened on every interface."""
    with pytest.raises(ConfigError, match=r"server\.host: String should have at least 1"):
        build_config({"server": {"host": ""}}, env={})


@pytest.mark.parametrize("kind", ["fifo", "directory", "large"])
def test_a_search_space_that_is_not_a_small_regular_file_is_a_config_error(
    tmp_path: Path, kind: str
) -> None:
    """`search_space: /dev/zero` made the loader read without end (a pipe stands in for
    it here: read, it blocks rather than fills the memory)."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "space.yaml")
        path, rule = str(tmp_path / "space.yaml"), "not a regular file"
    elif kind == "directory":
        path, rule = str(tmp_path), "not a regular file"
    else:
        big = tmp_path / "space.yaml"
        big.write_text((ROOT / "configs" / "search_spaces" / "demo.yaml").read_text())
        with big.open("a") as f:
            f.write("#" * 2**20 + "\n")
        path, rule = str(big), r"larger than 1 MiB"
    with pytest.raises(ConfigError, match=rf"models\.0\.tuning\.search_space: .*{rule}"):
        build_config({"models": [_model(tuning={"search_space": path})]}, env={})


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"], ids=["empty", "memory"])
def test_an_in_memory_sqlite_store_is_a_config_error(url: str) -> None:
    """Each connection has its own: the daemon said ready and every other thread read an
    empty database (503 `no such table` on every route, the scheduler failing each tick)."""
    with pytest.raises(ConfigError, match="in-memory SQLite"):
        build_config({"store": {"url": url}}, env={})


def test_a_tuning_storage_in_the_store_s_own_database_is_a_config_error(tmp_path: Path) -> None:
    """Both keep Alembic's `alembic_version`: Optuna refused the store's, or the daemon
    called Optuna's revision a newer tunewatch's."""
    url = f"sqlite:///{tmp_path}/tw.db"
    with pytest.raises(ConfigError, match="must not be the store's own database"):
        build_config({"store": {"url": url}, "tuning": {"storage_url": url}}, env={})
    default = build_config({"data_dir": str(tmp_path)}, env={})
    with pytest.raises(ConfigError, match="must not be the store's own database"):
        build_config(
            {"data_dir": str(tmp_path), "tuning": {"storage_url": default.store_url}}, env={}
        )


@pytest.mark.parametrize(
    ("store", "storage"),
    [
        (
            "postgresql+psycopg://postgres@127.0.0.1:5432/tw",
            "postgresql+psycopg://postgres@127.0.0.1/tw",
        ),
        ("postgresql+psycopg://postgres@DB.example:5432/tw", "postgresql://other@db.example/tw"),
        (
            "postgresql+psycopg://u@h/tw?options=-csearch_path%3Dx",
            "postgresql://u@h/tw?options=-csearch_path%3Dx&connect_timeout=2",
        ),
    ],
    ids=["default-port", "driver-host-case-user", "same-schema-other-options"],
)
def test_a_tuning_storage_in_the_store_s_database_spelt_otherwise_is_a_config_error(
    store: str, storage: str
) -> None:
    """The check compared the URLs as strings: the same database without its default port
    loaded, and every retune then failed on Optuna's schema check in the store's database."""
    with pytest.raises(ConfigError, match="must not be the store's own database"):
        build_config({"store": {"url": store}, "tuning": {"storage_url": storage}}, env={})


def test_a_tuning_storage_through_a_symlink_to_the_store_s_file_is_a_config_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    store = f"sqlite:///{tmp_path}/real/tw.db"
    for storage in (
        f"sqlite:///{tmp_path}/link/tw.db",
        f"sqlite+pysqlite:///{tmp_path}/real/tw.db",
    ):
        with pytest.raises(ConfigError, match="must not be the store's own database"):
            build_config({"store": {"url": store}, "tuning": {"storage_url": storage}}, env={})


@pytest.mark.parametrize(
    ("store", "storage"),
    [
        ("postgresql+psycopg://u@h/tw", "postgresql+psycopg://u@h/optuna"),
        ("postgresql+psycopg://u@h/tw", "postgresql+psycopg://u@h/tw?options=-csearch_path%3Dopt"),
        ("postgresql+psycopg://u@h:5433/tw", "postgresql+psycopg://u@h/tw"),
    ],
    ids=["other-database", "other-schema", "other-port"],
)
def test_a_tuning_storage_of_its_own_is_accepted(store: str, storage: str) -> None:
    config = build_config({"store": {"url": store}, "tuning": {"storage_url": storage}}, env={})
    assert config.tuning.storage_url == storage


def test_an_empty_data_dir_is_a_config_error() -> None:
    """'' (a template rendered blank) put the store in whatever directory a command ran from."""
    with pytest.raises(ConfigError, match="data_dir"):
        build_config({"data_dir": ""}, env={})


def test_intra_op_threads_has_a_ceiling() -> None:
    """3,000,000,000 loaded and `serve` then crashed at start with a TypeError traceback."""
    with pytest.raises(ConfigError, match="scoring.intra_op_threads"):
        build_config({"scoring": {"intra_op_threads": 2**31}}, env={})


def test_a_data_dir_naming_a_file_is_a_config_error(tmp_path: Path) -> None:
    """It was refused by the store's mkdir as "[Errno 17] File exists", naming neither the
    key nor the rule."""
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="`data_dir` must be a directory"):
        build_config({"data_dir": str(a_file)}, env={})
