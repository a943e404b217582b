"""The shipped alerts on which replica leads the scheduler (`tunewatch_scheduler_leader`,
exported by every process that runs the scheduler: 1 by the one holding the lease), run
through `promtool test rules`. With no leader nothing is evaluated and the alerts on the
leader's figures resolve unseen; with two, each exports its own figures and the rules'
`max by (model)` read a stale alarm over the real one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_configs import _firing, _promtool_test

NO_LEADER = "TunewatchSchedulerNoLeader"
TWO_LEADERS = "TunewatchSchedulerTwoLeaders"
JOB = "tunewatch"


def _leader(instance: str, values: str, job: str = JOB) -> dict[str, str]:
    """`tunewatch_scheduler_leader` of one replica, a sample every 15 s."""
    return {
        "series": f'tunewatch_scheduler_leader{{job="{job}",instance="{instance}"}}',
        "values": values,
    }


def _check(tmp_path: Path, series: list[dict[str, str]], expected: list[dict[str, object]]) -> None:
    _promtool_test(tmp_path / "leader.test.yml", "15s", series, expected)


@pytest.mark.prometheus
def test_replicas_none_of_which_leads_page_after_five_minutes(tmp_path: Path) -> None:
    series = [_leader("a:8080", "0x80"), _leader("b:8080", "0x80")]
    fired = _firing(NO_LEADER, job=JOB, model="-")
    expected: list[dict[str, object]] = [
        {"eval_time": "4m", "alertname": NO_LEADER, "exp_alerts": []},
        {"eval_time": "6m", "alertname": NO_LEADER, "exp_alerts": [fired]},
        {"eval_time": "6m", "alertname": TWO_LEADERS, "exp_alerts": []},
    ]
    _check(tmp_path, series, expected)


@pytest.mark.prometheus
def test_a_leader_gone_with_no_replica_left_pages(tmp_path: Path) -> None:
    """Every target gone (the only replica down, or all of them): no series is left to
    sum, and a sum over nothing raised nothing."""
    series = [_leader("a:8080", "1x40 stale"), _leader("b:8080", "0x40 stale")]
    fired = _firing(NO_LEADER, job=JOB, model="-")
    expected: list[dict[str, object]] = [
        {"eval_time": "14m", "alertname": NO_LEADER, "exp_alerts": []},
        {"eval_time": "17m", "alertname": NO_LEADER, "exp_alerts": [fired]},
    ]
    _check(tmp_path, series, expected)


@pytest.mark.prometheus
def test_one_leader_and_a_failover_gap_page_nobody(tmp_path: Path) -> None:
    """Leader a is killed at 10m; b takes the lease once it expires (40 s by default) and
    is scraped a minute after a's last sample."""
    series = [
        _leader("a:8080", "1x40 stale"),
        _leader("b:8080", "0x44 1x80"),
        # another deployment scraped under its own job, led by its own replica
        _leader("c:8080", "1x120", job="tunewatch-eu"),
    ]
    expected: list[dict[str, object]] = [
        {"eval_time": eval_time, "alertname": alert, "exp_alerts": []}
        for eval_time in ("5m", "11m", "13m", "25m")
        for alert in (NO_LEADER, TWO_LEADERS)
    ]
    _check(tmp_path, series, expected)


@pytest.mark.prometheus
def test_two_leaders_for_two_minutes_alert_and_a_scrape_s_overlap_does_not(
    tmp_path: Path,
) -> None:
    """a and b both lead from 5m to 10m (one whose lease ran out kept saying so); at 20m a
    hands over to c with one scrape saying both lead."""
    series = [
        _leader("a:8080", "1x80 0x40"),
        _leader("b:8080", "0x20 1x20 0x80"),
        _leader("c:8080", "0x79 1x41"),
    ]
    fired = _firing(TWO_LEADERS, job=JOB, model="-")
    expected: list[dict[str, object]] = [
        {"eval_time": "4m", "alertname": TWO_LEADERS, "exp_alerts": []},
        {"eval_time": "8m", "alertname": TWO_LEADERS, "exp_alerts": [fired]},
        {"eval_time": "8m", "alertname": NO_LEADER, "exp_alerts": []},
        {"eval_time": "12m", "alertname": TWO_LEADERS, "exp_alerts": []},
        {"eval_time": "22m", "alertname": TWO_LEADERS, "exp_alerts": []},
    ]
    _check(tmp_path, series, expected)
