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
        names.update({f"{metric.name}_total", f"{metric.name}_bucket"})
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


@pytest.mark.prometheus
def test_the_label_delay_alert_follows_each_model_s_own_alarm_limit(tmp_path: Path) -> None:
    """`evaluation.label_delay_alarm_s` is per model: the alert fires while the daemon's
    `label_delay_high` alarm holds, not past a fixed week (a model allowed a day alarmed
    at two days and was never alerted; one allowed a month was alerted at eight days)."""
    promtool = _tool("promtool")
    rules = yaml.safe_load((CONFIGS / "prometheus" / "tunewatch.rules.yml").read_text())
    rule = next(
        r
        for group in rules["groups"]
        for r in group["rules"]
        if r["alert"] == "TunewatchLabelDelayHigh"
    )
    annotations = {
        k: v.replace("{{ $labels.model }}", "daily") for k, v in rule["annotations"].items()
    }
    days = 86_400
    tests = {
        "rule_files": [str(CONFIGS / "prometheus" / "tunewatch.rules.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # allowed a day, two days late: the daemon alarms
                    {
                        "series": 'tunewatch_label_delay_seconds{model="daily"}',
                        "values": f"{2 * days}x120",
                    },
                    {
                        "series": 'tunewatch_alarm{model="daily",event="label_delay_high"}',
                        "values": "1x120",
                    },
                    # allowed a month, eight days late: it does not
                    {
                        "series": 'tunewatch_label_delay_seconds{model="monthly"}',
                        "values": f"{8 * days}x120",
                    },
                    {
                        "series": 'tunewatch_alarm{model="monthly",event="label_delay_high"}',
                        "values": "0x120",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "90m",
                        "alertname": "TunewatchLabelDelayHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {"model": "daily", "severity": "ticket"},
                                "exp_annotations": annotations,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "label_delay.test.yml"
    path.write_text(yaml.safe_dump(tests))
    _run(promtool, "test", "rules", str(path))


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
    `for: 1h`, never fired across a 60 s gap 40 minutes in). A cleared alarm (0) still
    ends the alert at once."""
    promtool = _tool("promtool")
    rules = yaml.safe_load((CONFIGS / "prometheus" / "tunewatch.rules.yml").read_text())
    by_name = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}

    def firing(name: str) -> dict[str, object]:
        rule = by_name[name]
        annotations = {
            k: v.replace("{{ $labels.model }}", "credit") for k, v in rule["annotations"].items()
        }
        labels = {"model": "credit", **rule["labels"]}
        return {"exp_labels": labels, "exp_annotations": annotations}

    # 15 s samples: leader "a" until 40m, stale from 40m15s; leader "b" from 41m30s to
    # 71m30s (a 75 s gap), then the alarm clears (0) from 71m45s
    held_a, held_b = "{v}x160 stale", "_x166 {v}x120 0x8"
    series = [
        {
            "series": f'tunewatch_alarm{{model="credit",event="{event}",instance="{who}"}}',
            "values": values.format(v=1),
        }
        for event in ALARM_ALERTS.values()
        for who, values in (("a", held_a), ("b", held_b))
    ] + [
        {
            "series": f'tunewatch_drift_share{{model="credit",instance="{who}"}}',
            "values": values.format(v=0.8),
        }
        for who, values in (("a", held_a), ("b", held_b))
    ]
    in_gap = [
        {"eval_time": "41m", "alertname": name, "exp_alerts": [firing(name)]}
        for name in (
            "TunewatchDriftDetected",
            "TunewatchObjectiveDecaying",
            "TunewatchEstimateDropped",
            "TunewatchDriftShareHigh",
        )
    ]
    tests = {
        "rule_files": [str(CONFIGS / "prometheus" / "tunewatch.rules.yml")],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": series,
                "alert_rule_test": [
                    *in_gap,
                    {
                        "eval_time": "70m",
                        "alertname": "TunewatchLabelDelayHigh",
                        "exp_alerts": [firing("TunewatchLabelDelayHigh")],
                    },
                    {
                        "eval_time": "72m30s",
                        "alertname": "TunewatchDriftDetected",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "72m30s",
                        "alertname": "TunewatchLabelDelayHigh",
                        "exp_alerts": [],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "leader_change.test.yml"
    path.write_text(yaml.safe_dump(tests))
    _run(promtool, "test", "rules", str(path))


@pytest.mark.prometheus
def test_a_scheduled_job_that_keeps_failing_is_alerted_and_one_failure_is_not(
    tmp_path: Path,
) -> None:
    """Evaluations that kept failing left the figures at their last values, and no rule
    said so (the counter's help named an outcome, `failed`, it never carries)."""
    promtool = _tool("promtool")
    rules = yaml.safe_load((CONFIGS / "prometheus" / "tunewatch.rules.yml").read_text())
    rule = next(
        r
        for g in rules["groups"]
        for r in g["rules"]
        if r["alert"] == "TunewatchScheduledJobFailing"
    )
    annotations = {
        k: v.replace("{{ $labels.model }}", "credit").replace(
            "{{ $labels.outcome }}", "evaluate_failed"
        )
        for k, v in rule["annotations"].items()
    }
    counter = "tunewatch_evaluations_total"
    tests = {
        "rule_files": [str(CONFIGS / "prometheus" / "tunewatch.rules.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # one failure every 5 minutes from 10m on
                    {
                        "series": f'{counter}{{model="credit",outcome="evaluate_failed"}}',
                        "values": "0x10 0+0.2x50",
                    },
                    # one failure, once
                    {
                        "series": f'{counter}{{model="credit",outcome="compare_failed"}}',
                        "values": "0x10 1x50",
                    },
                    {"series": f'{counter}{{model="credit",outcome="ok"}}', "values": "0+1x60"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "40m",
                        "alertname": "TunewatchScheduledJobFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "model": "credit",
                                    "outcome": "evaluate_failed",
                                    "severity": "ticket",
                                },
                                "exp_annotations": annotations,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "failing.test.yml"
    path.write_text(yaml.safe_dump(tests))
    _run(promtool, "test", "rules", str(path))


def test_the_evaluations_counter_s_help_names_its_outcomes() -> None:
    help_text = ServingMetrics(registry=CollectorRegistry()).evaluations._documentation
    for outcome in ("ok", "insufficient_data", "comparison", "evaluate_failed", "compare_failed"):
        assert outcome in help_text


def test_every_label_an_alert_s_text_names_survives_its_aggregation() -> None:
    """`max by (model)` drops `instance`: the stale line-up alert's summary named the
    replica as an empty string."""
    rules = yaml.safe_load((CONFIGS / "prometheus" / "tunewatch.rules.yml").read_text())
    checked = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            named = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule.get("annotations", {}))))
            for kept in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
                assert named <= {label.strip() for label in kept.split(",")}, rule["alert"]
                checked.append(rule["alert"])
    assert "TunewatchLineupStale" in checked


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
