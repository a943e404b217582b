"""A token's name is the actor of everything done with it: one named like an actor the
daemon itself audits as (``tunewatch``, ``system``, ``scheduler``, ``job:<id>``) made an
operator's promotion read exactly as the comparison loop's automatic one."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from tunewatch._actions import Dispatcher
from tunewatch._bundle import export_bundle
from tunewatch._errors import InvalidValueError
from tunewatch._evaluation import Evaluator
from tunewatch._evaluation_events import PolicyEvents
from tunewatch._registry import Registry
from tunewatch.comparison._results import ACTOR as COMPARISON_ACTOR
from tunewatch.store import Store


def _default_actor(function: object) -> str:
    default = inspect.signature(function).parameters["actor"].default  # type: ignore[arg-type]
    assert isinstance(default, str), function
    return default


def _daemon_actors() -> set[str]:
    """The actors the daemon's own code audits as: the comparison loop's, and each
    default ``actor`` of a path the daemon runs without a person behind it."""
    return {
        COMPARISON_ACTOR,
        _default_actor(Evaluator.evaluate),
        _default_actor(PolicyEvents.decide),
        _default_actor(Dispatcher.handle),
        _default_actor(Dispatcher.handle_after),
        _default_actor(Dispatcher.retry),
        _default_actor(Registry.regulate_configured),
        _default_actor(Store.purge_records),
        _default_actor(export_bundle),
        "system",  # the bootstrap token's creation and rotation (_bootstrap_token.py)
        "scheduler",  # the retention task reads its purges back by it (_retention_task.py)
        "job:17",  # a tuning job registering its candidate (_tuning.py: f"job:{job.id}")
    }


def test_the_daemon_audits_as_tunewatch_system_scheduler_and_job_ids() -> None:
    """What the rest of this file reserves is what the daemon writes: a new actor in the
    daemon's code fails here until it is reserved too."""
    assert _daemon_actors() == {"tunewatch", "system", "scheduler", "job:17"}


def _assert_refused(store: Store, name: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        store.add_token(name=name, role="operator", token_hash="1" * 64, actor="alice")
    assert info.value.code == "invalid_value"
    assert "the daemon's own actors in the audit log" in info.value.message
    assert f"got {name!r}" in info.value.message
    assert store.list_tokens() == [] and store.audit_log() == []


@pytest.mark.parametrize("name", sorted(_daemon_actors()))
def test_a_token_cannot_be_named_as_an_actor_the_daemon_audits_as(store: Store, name: str) -> None:
    _assert_refused(store, name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Tunewatch", id="capital"),
        pytest.param("SYSTEM", id="upper_case"),
        pytest.param("\uff53cheduler", id="fullwidth_s"),
        pytest.param("\u017fystem", id="long_s"),
        pytest.param("job:*", id="the_audit_filter_for_every_job"),
        pytest.param("Job:3", id="job_capital"),
        pytest.param("job\uff1a3", id="job_fullwidth_colon"),
        pytest.param("job:ops", id="job_prefix_any_rest"),
    ],
)
def test_a_token_name_that_reads_as_a_daemon_actor_is_refused(store: Store, name: str) -> None:
    """Case folded and NFKC-normalised, as the bootstrap admin's lookalikes are: `System`
    reads in the audit log as the daemon's `system`."""
    _assert_refused(store, name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("tunewatch-ci", id="a_longer_name"),
        pytest.param("system ops", id="inner_space"),
        pytest.param("jobs", id="jobs"),
        pytest.param("job-runner", id="job_hyphen"),
        pytest.param("my-job:3", id="job_colon_not_first"),
    ],
)
def test_a_token_name_containing_a_daemon_actor_is_stored(store: Store, name: str) -> None:
    row = store.add_token(name=name, role="operator", token_hash="1" * 64, actor="alice")
    assert row.name == name


def test_the_cli_refuses_a_token_named_tunewatch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunewatch._cli import main

    url = f"sqlite:///{tmp_path / 'tw.db'}"
    config = tmp_path / "tunewatch.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "store": {"url": url}}))
    assert (
        main(["--config", str(config), "tokens", "create", "tunewatch", "--role", "operator"]) == 2
    )
    captured = capsys.readouterr()
    assert "the daemon's own actors in the audit log" in captured.err
    assert "got 'tunewatch'" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""  # no token shown
    with Store.open(url) as store:
        assert store.list_tokens() == []
