"""configs/ is data the operators deploy: every file must pass its own tool's check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitor import ServingMetrics
from tests.conftest import service_missing

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        service_missing(
            f"{name} is not installed (Debian packages prometheus, prometheus-alertmanager)"
        )
    assert path is not None
    return path


def _run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_prometheus_rules_and_config_pass_promtool() -> None:
    promtool = _tool("promtool")
    _run(promtool, "check", "rules", str(CONFIGS / "prometheus" / "tunewatch.rules.yml"))
    _run(promtool, "check", "config", str(CONFIGS / "prometheus" / "prometheus.yml"))


@pytest.mark.prometheus
def test_alertmanager_config_passes_amtool() -> None:
    _run(_tool("amtool"), "check-config", str(CONFIGS / "alertmanager" / "alertmanager.yml"))


def _exported_names() -> set[str]:
    names = set()
    for metric in ServingMetrics().registry.collect():
        for sample in metric.samples:
            names.add(sample.name)
        names.add(metric.name)
        names.update(f"{metric.name}_{suffix}" for suffix in ("total", "bucket", "count", "sum"))
    return names


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(tunewatch_[a-z0-9_]+)", expr))


def test_rules_and_dashboard_only_use_metrics_tunewatch_exports() -> None:
    exported = _exported_names()
    rules = (CONFIGS / "prometheus" / "tunewatch.rules.yml").read_text()
    dashboard = json.loads((CONFIGS / "grafana" / "tunewatch-dashboard.json").read_text())
    used = _metric_names(rules)
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= _metric_names(target["expr"])
    used |= _metric_names(dashboard["templating"]["list"][1]["query"])
    assert used and used <= exported, sorted(used - exported)


def test_no_shipped_rule_on_the_daemon_s_own_alarm_queues_a_retune() -> None:
    """The daemon retunes on the decisions `tunewatch_alarm` exports itself, under its
    cool-downs and new-evidence rule; a shipped rule on that gauge labelled
    `action: retune` queued a second job on the same evidence at Alertmanager's next
    repeat, once the first delivery had met the `alert_received` cool-down."""
    rules = yaml.safe_load((CONFIGS / "prometheus" / "tunewatch.rules.yml").read_text())
    on_alarm = [
        rule
        for group in rules["groups"]
        for rule in group["rules"]
        if "tunewatch_alarm" in rule["expr"]
    ]
    assert on_alarm
    retuning = [r["alert"] for r in on_alarm if r.get("labels", {}).get("action") == "retune"]
    assert retuning == []


RULES = CONFIGS / "prometheus" / "tunewatch.rules.yml"


def _firing(alert: str, **labels: str) -> dict[str, object]:
    """What `promtool test rules` should see of ``alert`` firing with ``labels``: the
    rule's own labels added, ``{{ $labels.X }}`` in its annotations filled in."""
    rules = yaml.safe_load(RULES.read_text())
    [rule] = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == alert]
    annotations = {}
    for key, text in rule["annotations"].items():
        for name, value in labels.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", value)
        annotations[key] = text
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}


def _promtool_test(
    path: Path, interval: str, series: list[dict[str, str]], alerts: list[dict[str, object]]
) -> None:
    """Run the shipped rules over ``series`` (a sample every ``interval``) and check
    ``alerts`` (promtool's ``alert_rule_test`` entries) with `promtool test rules`."""
    promtool = _tool("promtool")
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": interval,
        "tests": [{"interval": interval, "input_series": series, "alert_rule_test": alerts}],
    }
    path.write_text(yaml.safe_dump(tests))
    _run(promtool, "test", "rules", str(path))


@pytest.mark.prometheus
def test_the_label_delay_alert_follows_each_model_s_own_alarm_limit(tmp_path: Path) -> None:
    """`evaluation.label_delay_alarm_s` is per model: the alert fires while the daemon's
    `label_delay_high` alarm holds, not past a fixed week (a model allowed a day alarmed
    at two days and was never alerted; one allowed a month was alerted at eight days)."""
    days = 86_400
    delay, alarm = "tunewatch_label_delay_seconds", "tunewatch_alarm"
    series = [
        # allowed a day, two days late: the daemon alarms
        {"series": f'{delay}{{model="daily"}}', "values": f"{2 * days}x120"},
        {"series": f'{alarm}{{model="daily",event="label_delay_high"}}', "values": "1x120"},
        # allowed a month, eight days late: it does not
        {"series": f'{delay}{{model="monthly"}}', "values": f"{8 * days}x120"},
        {"series": f'{alarm}{{model="monthly",event="label_delay_high"}}', "values": "0x120"},
    ]
    fired = _firing("TunewatchLabelDelayHigh", model="daily")
    expected = [{"eval_time": "90m", "alertname": "TunewatchLabelDelayHigh", "exp_alerts": [fired]}]
    _promtool_test(tmp_path / "label_delay.test.yml", "1m", series, expected)


ALARM_ALERTS = {
    "TunewatchDriftDetected": "drift_detected",
    "TunewatchObjectiveDecaying": "decay_detected",
    "TunewatchEstimateDropped": "estimate_dropped",
    "TunewatchLabelDelayHigh": "label_delay_high",
}


@pytest.mark.prometheus
def test_an_alarm_held_across_a_leader_change_keeps_its_alert_and_for_timer(
    tmp_path: Path,
) -> None:
    """Only the leader exports the evaluation figures; a new leader exports the stored
    alarm after it takes the lease (up to lease_ttl_s + lease_ttl_s / 3 after a leader is
    killed, plus a scrape). Read as an instant vector, each alert resolved in that gap
    and fired again as a new episode, its `for:` timer restarted (TunewatchLabelDelayHigh,
    `for: 1h`, never fired across a 75 s gap 40 minutes in). A cleared alarm (0) still
    ends the alert at once."""
    # 15 s samples: leader "a" until 40m, stale from 40m15s; leader "b" from 41m30s to
    # 71m30s (a 75 s gap), then the alarm clears (0) from 71m45s
    held_a, held_b = "{v}x160 stale", "_x166 {v}x120 0x8"
    leaders = (("a", held_a), ("b", held_b))
    series = [
        {
            "series": f'tunewatch_alarm{{model="credit",event="{event}",instance="{who}"}}',
            "values": values.format(v=1),
        }
        for event in ALARM_ALERTS.values()
        for who, values in leaders
    ] + [
        {
            "series": f'tunewatch_drift_share{{model="credit",instance="{who}"}}',
            "values": values.format(v=0.8),
        }
        for who, values in leaders
    ]
    in_gap = (
        "TunewatchDriftDetected",
        "TunewatchObjectiveDecaying",
        "TunewatchEstimateDropped",
        "TunewatchDriftShareHigh",
    )
    expected = [
        *(
            {"eval_time": "41m", "alertname": name, "exp_alerts": [_firing(name, model="credit")]}
            for name in in_gap
        ),
        {
            "eval_time": "70m",
            "alertname": "TunewatchLabelDelayHigh",
            "exp_alerts": [_firing("TunewatchLabelDelayHigh", model="credit")],
        },
        {"eval_time": "72m30s", "alertname": "TunewatchDriftDetected", "exp_alerts": []},
        {"eval_time": "72m30s", "alertname": "TunewatchLabelDelayHigh", "exp_alerts": []},
    ]
    _promtool_test(tmp_path / "leader_change.test.yml", "15s", series, expected)


@pytest.mark.prometheus
def test_one_failed_retention_purge_alerts_for_two_days(tmp_path: Path) -> None:
    """The purge runs once a day: the three-failures-an-hour rule could never see it
    fail, and a purge that kept failing let the store grow unalerted."""
    counter = "tunewatch_evaluations_total"
    series = [
        # a sample an hour; the purge fails once, between 2h and 3h
        {"series": f'{counter}{{model="-",outcome="purge_records_failed"}}', "values": "0x2 1x70"},
    ]
    name = "TunewatchRetentionPurgeFailing"
    fired = _firing(name, outcome="purge_records_failed")
    expected: list[dict[str, object]] = [
        {"eval_time": "2h", "alertname": name, "exp_alerts": []},
        {"eval_time": "3h", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "40h", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "60h", "alertname": name, "exp_alerts": []},
    ]
    _promtool_test(tmp_path / "purge.test.yml", "1h", series, expected)


@pytest.mark.prometheus
def test_the_third_failure_of_a_scheduled_job_alerts_and_one_failure_does_not(
    tmp_path: Path,
) -> None:
    """Evaluations that kept failing left the figures at their last values, and no rule
    said so (the counter's help named an outcome, `failed`, it never carries).

    The exporter creates each scheduled job's `<job>_failed` series at 0 when the leader
    schedules the job (tests/tunewatch/test_metrics_series_at_zero.py), so the third
    failure alerts. Created at its first failure, as it was, the series began at 1, which
    `increase()` cannot count: three failures read about 2 and the alert waited for a
    fourth (model "born_at_one" below)."""
    counter = "tunewatch_evaluations_total"
    # a sample a minute; failures at 10m, 15m and 20m
    failures = "0x9 1x4 2x4 3x30"
    series = [
        {"series": f'{counter}{{model="credit",outcome="evaluate_failed"}}', "values": failures},
        # the same three failures of a series the exporter did not create before the first
        {
            "series": f'{counter}{{model="born_at_one",outcome="evaluate_failed"}}',
            "values": "_x9" + failures.removeprefix("0x9"),
        },
        # one failure, once
        {"series": f'{counter}{{model="credit",outcome="compare_failed"}}', "values": "0x10 1x40"},
        {"series": f'{counter}{{model="credit",outcome="ok"}}', "values": "0+1x50"},
    ]
    name = "TunewatchScheduledJobFailing"
    fired = _firing(name, model="credit", outcome="evaluate_failed")
    expected: list[dict[str, object]] = [
        {"eval_time": "19m", "alertname": name, "exp_alerts": []},
        {"eval_time": "20m", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "45m", "alertname": name, "exp_alerts": [fired]},
    ]
    _promtool_test(tmp_path / "failing.test.yml", "1m", series, expected)


def test_the_evaluations_counter_s_help_names_its_outcomes() -> None:
    help_text = ServingMetrics(registry=CollectorRegistry()).evaluations._documentation
    for outcome in ("ok", "insufficient_data", "comparison", "evaluate_failed", "compare_failed"):
        assert outcome in help_text


def test_every_label_an_alert_s_text_names_survives_its_aggregation() -> None:
    """`max by (model)` drops `instance`: the stale line-up alert's summary named the
    replica as an empty string. (The aggregation right of a `group_left` only supplies a
    value to compare with: the left side's labels are kept.)"""
    rules = yaml.safe_load((CONFIGS / "prometheus" / "tunewatch.rules.yml").read_text())
    checked = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            named = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule.get("annotations", {}))))
            expr = re.sub(r"group_left \w+ by \([^)]*\)", "group_left", rule["expr"])
            for kept in re.findall(r"\bby \(([^)]*)\)", expr):
                assert named <= {label.strip() for label in kept.split(",")}, rule["alert"]
                checked.append(rule["alert"])
    assert {"TunewatchLineupStale", "TunewatchChampionRunsFailing"} <= set(checked)


#: A generous Alertmanager alert as delivered (labels, annotations, generatorURL):
#: a real one of the shipped rules is about 600 bytes.
ALERT_BYTES = 8 * 1024


def test_the_shipped_webhook_groups_fit_the_daemon_s_body_limit() -> None:
    """`max_alerts: 0` (never truncate) let a group past `server.max_body_bytes`: a 413,
    which Alertmanager does not retry and resends every group_interval, so none of the
    group's alerts was ever acted on."""
    from tunewatch._config import ServerConfig

    routing = yaml.safe_load((CONFIGS / "alertmanager" / "alertmanager.yml").read_text())
    hooks = [hook for r in routing["receivers"] for hook in r.get("webhook_configs", [])]
    assert hooks
    limit = ServerConfig().max_body_bytes
    for hook in hooks:
        assert 0 < hook.get("max_alerts", 0) and hook["max_alerts"] * ALERT_BYTES <= limit


def _runs(model: str, version: str, role: str, runs: str, failed: str) -> list[dict[str, str]]:
    """The run counters of one version: ``runs`` (every run) and ``failed`` (code
    run_failed), as promtool input values."""
    labels = f'model="{model}",version="{version}",role="{role}"'
    return [
        {"series": f"tunewatch_runs_total{{{labels}}}", "values": runs},
        {"series": f'tunewatch_run_failures_total{{{labels},code="run_failed"}}', "values": failed},
    ]


@pytest.mark.prometheus
def test_failed_runs_alert_against_each_model_s_max_error_rate(tmp_path: Path) -> None:
    """A champion failing 2% of its runs pages against the default limit (0.001), not
    against a model allowing 5%; a challenger failing every run opens a ticket; three
    failures in ten minutes are no rate; a challenger at half its limit stays quiet though
    few of its runs have a latency (a batched backlog's jobs have none: the rule divided
    by the latency count, 2 failures in 553 timed runs of 4,000); a version that left
    service (rolled back, retired: its series removed) alerts no more."""
    limit = "tunewatch_max_error_rate"
    series = [
        *_runs("a", "1", "champion", "0+100x40", "0+2x40"),
        {"series": f'{limit}{{model="a"}}', "values": "0.001x40"},
        *_runs("b", "1", "champion", "0+100x40", "0+2x40"),
        {"series": f'{limit}{{model="b"}}', "values": "0.05x40"},
        *_runs("a", "2", "challenger", "0+1x40", "0+1x40"),
        *_runs("c", "1", "champion", "0+1x40", "0+0.3x40"),
        {"series": f'{limit}{{model="c"}}', "values": "0.001x40"},
        *_runs("d", "2", "challenger", "0+1200x40", "0+0.6x40"),
        {
            "series": 'tunewatch_inference_latency_seconds_count{model="d",version="2",'
            'role="challenger",hyperparameter_set="h"}',
            "values": "0+166x40",
        },
        {"series": f'{limit}{{model="d"}}', "values": "0.001x40"},
        # e's champion fails 20% of its runs, and is rolled back after 4 minutes
        *_runs("e", "1", "champion", "0+100x4 stale", "0+20x4 stale"),
        {"series": f'{limit}{{model="e"}}', "values": "0.001x40"},
    ]
    champion = _firing("TunewatchChampionRunsFailing", model="a", version="1", role="champion")
    challenger = _firing(
        "TunewatchChallengerRunsFailing", model="a", version="2", role="challenger"
    )
    expected = [
        # e was rolled back at 4 minutes: its failures still in the rate's window, the rule
        # without its "still exported" clause paged for it from 11 to 13 minutes
        {"eval_time": "12m", "alertname": "TunewatchChampionRunsFailing", "exp_alerts": []},
        {"eval_time": "14m", "alertname": "TunewatchChampionRunsFailing", "exp_alerts": [champion]},
        {
            "eval_time": "25m",
            "alertname": "TunewatchChallengerRunsFailing",
            "exp_alerts": [challenger],
        },
        {"eval_time": "40m", "alertname": "TunewatchChampionRunsFailing", "exp_alerts": [champion]},
    ]
    _promtool_test(tmp_path / "runs_failing.test.yml", "1m", series, expected)


@pytest.mark.prometheus
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """The dashboard's queries were only checked for the metric names they read: one
    Prometheus cannot parse showed an error panel. `promtool test rules` evaluates each
    (``$model`` as Grafana's "All") over no series: empty, unless it does not parse."""
    dashboard = json.loads((CONFIGS / "grafana" / "tunewatch-dashboard.json").read_text())
    exprs = [
        target["expr"].replace("$model", ".*")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]
    assert len(exprs) > 12
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [],
                "promql_expr_test": [
                    {"expr": expr, "eval_time": "5m", "exp_samples": []} for expr in exprs
                ],
            }
        ],
    }
    path = tmp_path / "dashboard.test.yml"
    path.write_text(yaml.safe_dump(tests))
    _run(_tool("promtool"), "test", "rules", str(path))
