"""CLI listings that stop at a limit say so when they held rows back: ``jobs``, the
evaluations by kind, ``comparisons --challenger`` and the events ``evaluate`` ends with.
Each stopped at its limit without a word, and the rows left out read as none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tunewatch._cli import main
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore, LookValues

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MODEL = "credit"


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "tunewatch.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    url = f"sqlite:///{tmp_path / 'data' / 'tunewatch.db'}"
    assert main(["--config", str(path), "migrate"]) == 0
    with Store.open(url) as store:
        store.ensure_model(name=MODEL, task="binary", feature_names=["x0"])
        for i in range(2):  # version 2 is the challenger of the comparison listings
            store.add_version(
                model=MODEL,
                artefact_sha256=f"v{i}".encode().hex().ljust(64, "0"),
                hyperparameters={"i": i},
                size_bytes=1,
                actor="bob",
            )
    return path, url


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), "--actor", "alice", *args])


def _notices(err: str) -> list[str]:
    """The command's own lines on stderr (not the log's)."""
    return [line for line in err.splitlines() if line.startswith("tunewatch:")]


def _add_jobs(url: str, count: int) -> None:
    with Store.open(url) as store:
        for i in range(count):
            store.create_job(model=MODEL, kind="retune", trigger={"event": f"e{i}"}, spec={})


def _add_evaluations(url: str, count: int) -> None:
    with Store.open(url) as store:
        for i in range(count):
            store.add_evaluation(
                model=MODEL,
                version=1,
                kind="drift",
                status="ok",
                window_start=None,
                window_end=T0 + timedelta(hours=i),
                payload={"alarm": False, "n_current": i},
            )


def _add_looks(url: str, count: int) -> None:
    with Store.open(url) as store:
        comparisons = ComparisonStore(store)
        test, _ = comparisons.get_or_create_test(
            model=MODEL,
            kind="paired",
            champion_version=1,
            challenger_version=2,
            correction=None,
            state={},
        )
        for n in range(1, count + 1):
            look = LookValues(
                method="confidence_sequence",
                n=n,
                estimate=0.0,
                ci_low=-1.0,
                ci_high=1.0,
                p_value=0.5,
                adjusted_p_value=0.5,
                decision="continue",
            )
            test = comparisons.record_look(test, consumed=(), look=look, state={}, status="open")


def _add_events(url: str, numbers: range) -> None:
    with Store.open(url) as store:
        for i in numbers:
            store.add_event(model=MODEL, type=f"type{i}", payload={})


def test_jobs_past_the_limit_say_older_ones_exist(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = sqlite_backend
    _add_jobs(url, 4)
    capsys.readouterr()

    assert run(config, "jobs", "--limit", "3") == 0
    captured = capsys.readouterr()
    assert [int(line.split()[0]) for line in captured.out.splitlines()] == [4, 3, 2]  # newest
    [notice] = _notices(captured.err)
    assert "3 newest jobs shown" in notice and "--before-id 2 lists them" in notice

    assert run(config, "jobs", "--model", MODEL, "--limit", "3") == 0
    assert "3 newest jobs of credit shown" in _notices(capsys.readouterr().err)[0]

    # the pages the notices name, down to the oldest with no notice
    assert run(config, "jobs", "--limit", "2", "--before-id", "4") == 0
    captured = capsys.readouterr()
    assert [int(line.split()[0]) for line in captured.out.splitlines()] == [3, 2]
    [notice] = _notices(captured.err)
    assert "2 jobs before job 4 shown" in notice and "--before-id 2 lists them" in notice
    assert run(config, "jobs", "--limit", "2", "--before-id", "2") == 0
    captured = capsys.readouterr()
    assert [int(line.split()[0]) for line in captured.out.splitlines()] == [1]
    assert _notices(captured.err) == []

    assert run(config, "jobs", "--limit", "4") == 0  # all of them: nothing held back
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 4 and _notices(captured.err) == []


def test_evaluations_past_the_limit_say_older_ones_exist(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = sqlite_backend
    _add_evaluations(url, 4)
    capsys.readouterr()

    assert run(config, "drift", MODEL, "--limit", "3") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split()[1] for line in lines] == ["03:00:00Z", "02:00:00Z", "01:00:00Z"]  # newest
    [notice] = _notices(captured.err)
    assert "3 newest drift evaluations of credit shown" in notice
    assert notice.endswith("older ones exist: --before-id 2 lists them")  # the oldest shown

    assert run(config, "drift", MODEL, "--version", "1", "--limit", "3") == 0
    [notice] = _notices(capsys.readouterr().err)
    assert "3 newest drift evaluations of credit version 1 shown" in notice

    assert run(config, "drift", MODEL, "--limit", "4") == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 4 and _notices(captured.err) == []


def test_a_challengers_looks_past_the_limit_say_older_ones_exist(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = sqlite_backend
    _add_looks(url, 4)
    capsys.readouterr()

    assert run(config, "comparisons", MODEL, "--challenger", "2", "--limit", "3") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    # the newest three, printed oldest first as the evidence grew
    assert [line.split()[3] for line in lines] == ["n=2", "n=3", "n=4"]
    [notice] = _notices(captured.err)
    assert "3 newest looks of credit version 2 shown" in notice and "use --limit" in notice

    assert run(config, "comparisons", MODEL, "--challenger", "2", "--limit", "4") == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 4 and _notices(captured.err) == []


def test_a_challenger_with_no_looks_says_so(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``comparisons --challenger`` of a version never compared printed nothing at all,
    which read as a command that did not run."""
    config, _ = sqlite_backend
    capsys.readouterr()

    assert run(config, "comparisons", MODEL, "--challenger", "2") == 0
    assert capsys.readouterr().out == "no looks at credit version 2 yet\n"


def test_evaluate_says_when_more_events_exist_than_the_five_it_shows(
    sqlite_backend: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``evaluate`` ends with the model's five newest events, a summary; with a sixth it
    did not say others exist."""
    config, url = sqlite_backend
    _add_events(url, range(5))
    capsys.readouterr()

    assert run(config, "evaluate", MODEL) == 0  # it raises no event itself here
    captured = capsys.readouterr()
    events = [line for line in captured.out.splitlines() if line.startswith("event ")]
    assert [line.split()[3] for line in events] == ["type4", "type3", "type2", "type1", "type0"]
    assert _notices(captured.err) == []

    _add_events(url, range(5, 6))  # a sixth, the newest
    assert run(config, "evaluate", MODEL) == 0
    captured = capsys.readouterr()
    events = [line for line in captured.out.splitlines() if line.startswith("event ")]
    assert [line.split()[3] for line in events] == ["type5", "type4", "type3", "type2", "type1"]
    [notice] = _notices(captured.err)
    assert "the 5 newest events of credit shown" in notice
    assert "GET /v1/events?model=credit" in notice


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("jobs",), id="jobs"),
        pytest.param(("drift", MODEL), id="drift"),
        pytest.param(("telemetry", MODEL), id="telemetry"),
        pytest.param(("comparisons", MODEL), id="comparisons"),
    ],
)
@pytest.mark.parametrize("limit", [pytest.param("0", id="zero"), pytest.param("10001", id="past")])
def test_listing_limits_are_bounded_as_the_apis(
    sqlite_backend: tuple[Path, str],
    command: tuple[str, ...],
    limit: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, _ = sqlite_backend
    with pytest.raises(SystemExit) as exited:
        run(config, *command, "--limit", limit)
    assert exited.value.code == 2
    assert "`limit` must be an integer in [1, 10000]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("1_0", id="underscore"),
        pytest.param("+1", id="plus"),
        pytest.param(" 1", id="space"),
        pytest.param("\uff13", id="fullwidth"),
    ],
)
def test_ids_and_numbers_are_read_in_ascii_digits_only_as_the_api_reads_them(
    sqlite_backend: tuple[Path, str], spelling: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``int`` also reads ``1_0`` (10), ``+1``, `` 1`` and other scripts' digits: `report
    credit ３` printed v3's report, where the API refuses the spelling (a typo named
    another version)."""
    config, _ = sqlite_backend
    with pytest.raises(SystemExit) as exited:
        run(config, "report", MODEL, spelling)
    assert exited.value.code == 2
    assert "`version` must be an integer in [1, 2147483647] in ASCII digits" in (
        capsys.readouterr().err
    )
