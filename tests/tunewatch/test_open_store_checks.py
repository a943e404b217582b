"""What opening the store checks before a process uses it: the config against the models
the store holds (a configured name that differs from a stored one only in case, a cost
matrix of another size than a stored model's classes), and, for a command that must not
make a store, that a PostgreSQL store exists (as a SQLite file must)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import yaml

from tests.tunewatch.conftest import make_daemon
from tunewatch import ConfigError, build_config
from tunewatch._cli import main
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._open_store import check_stored_models
from tunewatch._version_metadata import VersionMetadata
from tunewatch.store import Store

MODEL = "credit"
TWO = [[0, 1], [5, 0]]
THREE = [[0, 1, 1], [5, 0, 1], [1, 1, 0]]


def _config(data_dir: Path, models: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"data_dir": str(data_dir), "scheduler": {"enabled": False}, "models": models, **extra}


def _write(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def credit(tmp_path: Path, trained: list[ExampleModel]) -> Path:
    """A data dir whose store holds ``credit`` (binary): version 1 champion, 2 shadow."""
    data = tmp_path / "data"
    daemon, _ = make_daemon(data, trained)
    daemon.close()
    return data


# --- a configured name that differs from a stored one in case ------------------------


@pytest.mark.parametrize("named", ["Credit", "CREDIT"])
def test_a_configured_model_named_like_a_stored_one_but_for_case_is_refused_at_start(
    credit: Path, named: str
) -> None:
    """The config regulated `Credit`; the store's model is `credit`: the daemon started,
    stored safe ranges for a model that does not exist, and `credit` was promoted with no
    approver."""
    raw = _config(credit, [{"name": named, "task": "binary", "regulated": True}])
    with pytest.raises(
        ConfigError,
        match=rf"^models\.0\.name: .*{named!r}.*{MODEL!r}.*model names are case-sensitive",
    ):
        Daemon(build_config(raw, env={}), env={})
    with Store.open(f"sqlite:///{credit / 'tunewatch.db'}") as store:
        assert [m.name for m in store.list_models()] == [MODEL]
        assert store.stored_safe_ranges(named) is None  # nothing stored for the phantom


def test_the_cli_refuses_to_promote_under_a_config_that_misnames_the_model(
    credit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(
        tmp_path / "c.yaml",
        _config(credit, [{"name": "Credit", "task": "binary", "regulated": True}]),
    )
    argv = ["--config", str(config), "--actor", "alice"]
    assert main([*argv, "promote", MODEL, "2", "--reason", "r"]) == 2
    err = capsys.readouterr().err
    assert "models.0.name" in err and "case-sensitive" in err
    with Store.open(f"sqlite:///{credit / 'tunewatch.db'}") as store:
        assert store.champion(MODEL).version == 1  # type: ignore[union-attr]
    # the exact name: the promotion waits for an approver (exit 3: not promoted yet)
    _write(config, _config(credit, [{"name": MODEL, "task": "binary", "regulated": True}]))
    assert main([*argv, "promote", MODEL, "2", "--reason", "r"]) == 3
    assert "waits for an approver" in capsys.readouterr().out
    # approving under the misnamed config is refused as promoting is; then approved
    bob = ["--config", str(config), "--actor", "bob"]
    with Store.open(f"sqlite:///{credit / 'tunewatch.db'}") as store:
        [pending] = store.list_approvals(model=MODEL, status="pending")
    _write(config, _config(credit, [{"name": "Credit", "task": "binary", "regulated": True}]))
    assert main([*bob, "approve", str(pending.id), "--reason", "ok"]) == 2
    assert "models.0.name" in capsys.readouterr().err
    with Store.open(f"sqlite:///{credit / 'tunewatch.db'}") as store:
        assert store.get_approval(pending.id).status == "pending"
    _write(config, _config(credit, [{"name": MODEL, "task": "binary", "regulated": True}]))
    assert main([*bob, "approve", str(pending.id), "--reason", "ok"]) == 0
    assert "version 2 is champion" in capsys.readouterr().out


def test_a_configured_model_stored_with_spaces_around_its_name_is_refused(store: Store) -> None:
    """An earlier release stored names with a space first or last (`" Fraud "`), which a
    config cannot name: `fraud` configured is not it."""
    from tunewatch.store._schema import models

    with store.engine.begin() as conn:  # the store refuses such a name now
        row = {"task": "binary", "feature_names": ["a"], "regulated": False}
        conn.execute(sa.insert(models).values(name=" Fraud ", created_at=datetime.now(UTC), **row))
    config = build_config({"models": [{"name": "fraud", "task": "binary"}]}, env={})
    with pytest.raises(ConfigError, match=r"^models\.0\.name: .*'fraud'.*' Fraud '"):
        check_stored_models(config, store)


def test_a_configured_model_listed_under_both_spellings_is_not_refused(credit: Path) -> None:
    """The config names the stored `credit` exactly, and `Credit` beside it: a model to
    come, not a misspelling."""
    models = [{"name": MODEL, "task": "binary"}, {"name": "Credit", "task": "binary"}]
    Daemon(build_config(_config(credit, models), env={}), env={}).close()


def test_a_configured_model_not_stored_yet_is_said_once_at_start(
    credit: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A config written before the model's first registration still starts; it is said,
    so that a name the store will never hold is not silent."""
    raw = _config(credit, [{"name": "fraud", "task": "binary", "regulated": True}])
    with caplog.at_level(logging.INFO, logger="tunewatch._open_store"):
        Daemon(build_config(raw, env={}), env={}).close()
    said = [r for r in caplog.records if "'fraud'" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "not registered yet" in said[0].getMessage()
    assert repr(MODEL) in said[0].getMessage()  # the models the store holds


def test_a_stored_model_the_config_does_not_list_is_said_to_run_on_defaults(
    credit: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model removed from the config kept serving, and was compared and promoted under
    the default triggers (its config had said notify only), with nothing logged."""
    listed = _config(credit, [{"name": MODEL, "task": "binary"}])
    with caplog.at_level(logging.INFO, logger="tunewatch._open_store"):
        Daemon(build_config(listed, env={}), env={}).close()
        assert not [r for r in caplog.records if "does not list" in r.getMessage()]
        Daemon(build_config(_config(credit, []), env={}), env={}).close()
    [said] = [r for r in caplog.records if "does not list" in r.getMessage()]
    assert said.levelno == logging.WARNING and repr(MODEL) in said.getMessage()
    assert "decided better is promoted" in said.getMessage()


def test_a_config_saying_regulated_false_of_a_model_stored_regulated_is_said_at_start(
    credit: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regulation only tightens: a config's ``regulated: false`` does not clear the stored
    flag, and its every promotion still waited for an approver with nothing saying why
    the operator's explicit setting was not applied. Left out, the key is not said."""
    regulating = _config(credit, [{"name": MODEL, "task": "binary", "regulated": True}])
    Daemon(build_config(regulating, env={}), env={}).close()
    unset = _config(credit, [{"name": MODEL, "task": "binary"}])
    cleared = _config(credit, [{"name": MODEL, "task": "binary", "regulated": False}])
    with caplog.at_level(logging.INFO, logger="tunewatch._open_store"):
        Daemon(build_config(unset, env={}), env={}).close()
        assert not [r for r in caplog.records if "regulated" in r.getMessage()]
        Daemon(build_config(cleared, env={}), env={}).close()
    [said] = [r for r in caplog.records if "regulated" in r.getMessage()]
    assert said.levelno == logging.WARNING
    assert said.getMessage() == (
        "models.0.regulated: false, but the store holds model 'credit' regulated: "
        "regulation only tightens, so every promotion of it still waits for an approver "
        "(the config cannot clear the stored flag)"
    )


# --- a cost matrix against a stored multiclass model's classes ----------------------


def _three_class_onnx(*, dynamic: bool = False) -> bytes:
    """A 3-class logistic regression; ``dynamic``: its graph leaves the probabilities'
    columns undeclared (a session's run gives them)."""
    import onnx
    from sklearn.linear_model import LogisticRegression

    from retune import to_onnx

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    data = to_onnx(LogisticRegression(max_iter=200).fit(x, y), 3, name="lr")
    if not dynamic:
        return data
    model = onnx.ModelProto.FromString(data)
    (probabilities,) = [o for o in model.graph.output if o.name == "probabilities"]
    probabilities.type.tensor_type.shape.dim[1].dim_param = "classes"
    return model.SerializeToString()


def _multiclass(matrix: list[list[int]]) -> dict[str, Any]:
    return {
        "name": "m",
        "task": "multiclass",
        "objective": {"name": "cost", "params": {"cost_matrix": matrix}},
    }


@pytest.fixture(params=["declared", "dynamic"])
def three_classes(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A data dir whose store holds `m`, a 3-class model, registered under a config that
    did not list it; its graph declares its classes, or leaves them dynamic."""
    data = tmp_path / "data"
    daemon = Daemon(build_config(_config(data, []), env={}), env={})
    try:
        metadata = VersionMetadata(task="multiclass", feature_names=("a", "b", "c"))
        onnx = _three_class_onnx(dynamic=request.param == "dynamic")
        daemon.registry.register("m", onnx, metadata, actor="t", stage="champion")
    finally:
        daemon.close()
    return data


COST_MESSAGE = r"^models\.0\.objective\.params\.cost_matrix: .*2x2.*'m'.*3 classes"


def test_a_cost_matrix_not_of_a_stored_model_s_classes_is_refused_at_start(
    three_classes: Path,
) -> None:
    """Registration refused it; a config changed after the registration started, and
    every decay window and tuning trial of the model failed to score."""
    config = build_config(_config(three_classes, [_multiclass(TWO)]), env={})
    with pytest.raises(ConfigError, match=COST_MESSAGE):
        Daemon(config, env={})
    with Store.open(config.store_url) as store, pytest.raises(ConfigError, match=COST_MESSAGE):
        check_stored_models(config, store)
    fits = build_config(_config(three_classes, [_multiclass(THREE)]), env={})
    Daemon(fits, env={}).close()


@pytest.mark.parametrize(
    "argv",
    [["evaluate", "m"], ["compare", "m"], ["retune", "m", "--reason", "r"]],
    ids=lambda argv: argv[0],
)
def test_commands_that_score_a_model_refuse_a_cost_matrix_not_of_its_classes(
    three_classes: Path, tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path / "c.yaml", _config(three_classes, [_multiclass(TWO)]))
    assert main(["--config", str(config), "--actor", "alice", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tunewatch: error: models.0.objective.params.cost_matrix: ")
    with Store.open(f"sqlite:///{three_classes / 'tunewatch.db'}") as store:
        assert store.list_jobs(model="m", limit=10) == []


# --- retune checks the config against the stored model ------------------------------


def test_retune_refuses_a_config_task_other_than_the_stored_model_s(
    credit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It queued a job that failed with `objective 'rmse' does not apply to binary
    models`, where evaluate and compare named `models.0.task`."""
    config = _write(tmp_path / "c.yaml", _config(credit, [{"name": MODEL, "task": "regression"}]))
    assert (
        main(["--config", str(config), "--actor", "alice", "retune", MODEL, "--reason", "r"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tunewatch: error: models.0.task: ")
    with Store.open(f"sqlite:///{credit / 'tunewatch.db'}") as store:
        assert store.list_jobs(model=MODEL, limit=10) == []


# --- a command that must not make a store, on PostgreSQL ----------------------------

READERS = [["jobs"], ["models"], ["audit"], ["approvals"], ["evaluate", MODEL]]


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
            return sorted(sa.inspect(conn).get_table_names(schema=schema))
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("argv", READERS, ids=lambda argv: argv[0])
def test_a_command_reading_a_store_refuses_an_empty_postgresql_schema(
    pg_url: str, tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only command pointed at an existing but empty database made the whole
    schema there and answered "no jobs" / "audit chain intact", exit 0."""
    schema = pg_url.rpartition("%3D")[2]
    url = pg_url.replace("postgres@", "postgres:s3cret@")  # the server trusts the user
    config = _write(tmp_path / "c.yaml", {"data_dir": str(tmp_path / "d"), "store": {"url": url}})
    assert main(["--config", str(config), "--actor", "alice", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tunewatch: error: no store in ")
    assert f"schema {schema!r}" in err[0] and "database 'test'" in err[0]
    assert "s3cret" not in err[0] and "postgres:***@" in err[0]
    assert _tables(pg_url) == []
    # `migrate` makes it; the command then reads it
    assert main(["--config", str(config), "migrate"]) == 0
    assert main(["--config", str(config), "--actor", "alice", "jobs"]) == 0
    assert "alembic_version" in _tables(pg_url)
