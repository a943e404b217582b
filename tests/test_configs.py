"""configs/ is data the operators deploy: every file must pass its own tool's check."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitor import ServingMetrics
from tests._promql import exported_series, legend_errors, read_query
from tests.conftest import service_missing
from tests.tunewatch.conftest import MODEL, make_daemon
from tunewatch._example import ExampleModel

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RULES = CONFIGS / "prometheus" / "tunewatch.rules.yml"
DASHBOARD = CONFIGS / "grafana" / "tunewatch-dashboard.json"
#: The series of Alertmanager's own the shipped rules read (configs/prometheus/prometheus.yml
#: scrapes it), with their label names: what a real Alertmanager 0.25 exports
#: (test_the_alertmanager_series_the_rules_read_are_what_alertmanager_exports).
ALERTMANAGER_SERIES = {"alertmanager_notifications_failed_total": frozenset({"integration"})}


def _readable() -> dict[str, frozenset[str]]:
    """Every series a shipped query may read, with its label names: tunewatch's, and the
    Alertmanager's that the rules watch the retune webhook's deliveries through."""
    return exported_series() | ALERTMANAGER_SERIES


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


def _shipped_queries() -> list[tuple[str, str]]:
    """Every PromQL query shipped: each rule's and each dashboard panel's, named."""
    rules = yaml.safe_load(RULES.read_text())
    queries = [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    queries += [
        (f"panel {p['id']} {t['refId']}", t["expr"])
        for p in dashboard["panels"]
        for t in p["targets"]
    ]
    return queries


def test_rules_and_dashboard_only_read_series_and_labels_tunewatch_exports() -> None:
    """A name was only looked for among every metric with every suffix, and labels not at
    all: `rate(tunewatch_alarm_total[5m])` (a gauge has no _total),
    `histogram_quantile(0.9, tunewatch_drift_share_bucket)` and
    `tunewatch_alarm{evnt="x"}` all passed, and each would draw or alert on nothing.
    (Alertmanager's series: ALERTMANAGER_SERIES, checked against a real one.)"""
    exported = _readable()
    queries = _shipped_queries()
    assert len(queries) > 20
    problems = {name: read_query(expr, exported)[1] for name, expr in queries}
    dashboard = json.loads(DASHBOARD.read_text())
    template = dashboard["templating"]["list"][1]["query"]
    metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", template).groups()  # type: ignore[union-attr]
    problems["$model"] = [] if label in exported.get(metric, ()) else [f"{metric} has no {label}"]
    assert {name: errors for name, errors in problems.items() if errors} == {}


@pytest.mark.parametrize(
    "expr",
    [
        pytest.param("rate(tunewatch_alarm_total[5m])", id="gauge-read-as-counter"),
        pytest.param(
            "histogram_quantile(0.9, sum by (le) (rate(tunewatch_drift_share_bucket[5m])))",
            id="gauge-read-as-histogram",
        ),
        pytest.param('tunewatch_alarm{evnt="x"}', id="misspelt-label"),
        pytest.param(
            "sum by (objective) (tunewatch_drift_share)", id="grouped-by-a-label-it-lacks"
        ),
        pytest.param(
            "tunewatch_label_coverage / on (version) tunewatch_label_delay_seconds",
            id="matched-on-a-label-it-lacks",
        ),
        pytest.param(
            "tunewatch_runs_total / tunewatch_max_error_rate", id="one-to-one-on-unequal-labels"
        ),
        pytest.param(
            'label_replace(tunewatch_http_errors_total, "model", "$1", "route", "(.*)")',
            id="label-replaced-from-a-label-it-lacks",
        ),
    ],
)
def test_the_query_check_refuses_what_tunewatch_does_not_export(expr: str) -> None:
    assert read_query(expr, exported_series())[1]


def test_every_dashboard_legend_tells_each_model_s_series_apart() -> None:
    """With "All" models shown, panels 4, 6 and 8 named each model's series alike
    ("coverage", "v3 hp=…"): two models' lines could not be told apart. Every label
    whose value differs between a query's series must be in its legend."""
    exported = exported_series()
    dashboard = json.loads(DASHBOARD.read_text())
    problems = {
        f"panel {p['id']} {t['refId']}": legend_errors(t["expr"], t["legendFormat"], exported)
        for p in dashboard["panels"]
        for t in p["targets"]
    }
    assert {name: errors for name, errors in problems.items() if errors} == {}


@pytest.mark.parametrize(
    ("expr", "legend"),
    [
        pytest.param('tunewatch_label_coverage{model=~"$model"}', "coverage", id="no-model"),
        pytest.param(
            'tunewatch_session_memory_bytes{model=~"$model"}',
            "v{{version}} hp={{hyperparameter_set}}",
            id="version-without-model",
        ),
        pytest.param(
            'sum by (type) (increase(tunewatch_events_total{model=~"$model"}[1h]))',
            "{{model}} {{type}}",
            id="names-a-label-summed-away",
        ),
    ],
)
def test_the_legend_check_refuses_a_legend_that_merges_series(expr: str, legend: str) -> None:
    assert legend_errors(expr, legend, exported_series())


def test_the_label_free_estimate_is_drawn_beside_the_accuracies_it_is_judged_against() -> None:
    """Panel 4 drew the estimated accuracy (0.722) against the realised objective, another
    metric (log loss, 0.617): how far off the estimate was, and the reference accuracy the
    `estimate_dropped` alarm measures its drop from, were not on the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    [panel] = [
        p
        for p in dashboard["panels"]
        if any("tunewatch_objective_estimated" in t["expr"] for t in p["targets"])
    ]
    read = {name for t in panel["targets"] for name in re.findall(r"tunewatch_\w+", t["expr"])}
    assert read == {
        "tunewatch_objective_estimated",
        "tunewatch_estimate_realised",
        "tunewatch_estimate_reference",
    }


def test_a_legend_may_leave_out_a_label_its_query_pins() -> None:
    expr = 'tunewatch_alarm{model="credit",event="drift_detected"}'
    assert legend_errors(expr, "drift alarm", exported_series()) == []


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
def test_a_replica_answering_503_store_unavailable_for_minutes_pages(tmp_path: Path) -> None:
    """A total store outage paged nobody: no rule read `store_unavailable`, and only the
    leader's `launch_jobs_failed` ticket climbed. One 503 (a blip) does not page."""
    counter = "tunewatch_http_errors_total"
    series = [
        # a sample every 30 s: 20 503s every 30 s from 5m to 15m on one replica
        {
            "series": f'{counter}{{code="store_unavailable",instance="a:8080"}}',
            "values": "0x9 20+20x20 420x40",
        },
        # a single 503 at 2m on another
        {
            "series": f'{counter}{{code="store_unavailable",instance="b:8080"}}',
            "values": "0x3 1x60",
        },
    ]
    name = "TunewatchStoreUnavailable"
    fired = _firing(name, instance="a:8080", model="-")
    expected: list[dict[str, object]] = [
        {"eval_time": "7m", "alertname": name, "exp_alerts": []},
        {"eval_time": "9m", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "14m", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "25m", "alertname": name, "exp_alerts": []},
    ]
    _promtool_test(tmp_path / "store.test.yml", "30s", series, expected)


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
    fired = _firing(name, model="-", outcome="purge_records_failed")
    expected: list[dict[str, object]] = [
        {"eval_time": "2h", "alertname": name, "exp_alerts": []},
        {"eval_time": "3h", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "40h", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "60h", "alertname": name, "exp_alerts": []},
    ]
    _promtool_test(tmp_path / "purge.test.yml", "1h", series, expected)


@pytest.mark.prometheus
def test_a_refused_rollback_pages_for_a_day(tmp_path: Path) -> None:
    """A champion its watch decided worse and could not roll back (its predecessor's
    artefact unreadable) went on serving with nothing raised."""
    series = [
        # a sample an hour; the rollback is refused between 2h and 3h
        {
            "series": 'tunewatch_events_total{model="credit",type="rollback_failed"}',
            "values": "0x2 1x40",
        },
        {
            "series": 'tunewatch_events_total{model="credit",type="rollback_triggered"}',
            "values": "0 1x40",
        },
    ]
    name = "TunewatchRollbackFailed"
    fired = _firing(name, model="credit")
    expected: list[dict[str, object]] = [
        {"eval_time": "2h", "alertname": name, "exp_alerts": []},
        {"eval_time": "3h", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "20h", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "30h", "alertname": name, "exp_alerts": []},
    ]
    _promtool_test(tmp_path / "rollback.test.yml", "1h", series, expected)


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


@pytest.mark.prometheus
def test_the_third_skipped_run_of_a_scheduled_job_alerts_and_one_skip_does_not(
    tmp_path: Path,
) -> None:
    """A run that comes due while the job's previous run is still going is skipped and
    counted as `<job>_skipped` (exported at 0 from when the job is scheduled), but no
    rule read it: an evaluation slower than its interval ran at half its rate, or less,
    and nothing said so."""
    counter = "tunewatch_evaluations_total"
    series = [
        # skips at 10m, 15m and 20m
        {
            "series": f'{counter}{{model="credit",outcome="evaluate_skipped"}}',
            "values": "0x9 1x4 2x4 3x30",
        },
        # one skip, once
        {"series": f'{counter}{{model="fraud",outcome="evaluate_skipped"}}', "values": "0x10 1x40"},
        {"series": f'{counter}{{model="-",outcome="launch_jobs_skipped"}}', "values": "0x50"},
        {"series": f'{counter}{{model="credit",outcome="ok"}}', "values": "0+1x50"},
    ]
    name = "TunewatchScheduledJobSkipped"
    fired = _firing(name, model="credit", outcome="evaluate_skipped")
    expected: list[dict[str, object]] = [
        {"eval_time": "19m", "alertname": name, "exp_alerts": []},
        {"eval_time": "20m", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "45m", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "85m", "alertname": name, "exp_alerts": []},  # an hour without
    ]
    _promtool_test(tmp_path / "skipped.test.yml", "1m", series, expected)


@pytest.mark.prometheus
def test_the_third_evaluation_with_an_unreadable_reference_alerts(tmp_path: Path) -> None:
    """A champion whose reference snapshot cannot be read is evaluated without drift or
    the label-free estimate: the daemon counts each such run as `reference_unreadable`
    (not `ok`; tests/tunewatch/test_evaluation_reference_unreadable.py), exported at 0
    from when the champion is served, and three within an hour alert like three failed
    runs of a job. A snapshot never registered is no failure and counts `ok`."""
    counter = "tunewatch_evaluations_total"
    series = [
        {
            "series": f'{counter}{{model="credit",outcome="reference_unreadable"}}',
            "values": "0x9 1x4 2x4 3x30",
        },
        {"series": f'{counter}{{model="credit",outcome="ok"}}', "values": "0x50"},
        {"series": f'{counter}{{model="unreferenced",outcome="ok"}}', "values": "0+1x50"},
    ]
    name = "TunewatchScheduledJobFailing"
    fired = _firing(name, model="credit", outcome="reference_unreadable")
    expected: list[dict[str, object]] = [
        {"eval_time": "19m", "alertname": name, "exp_alerts": []},
        {"eval_time": "20m", "alertname": name, "exp_alerts": [fired]},
    ]
    _promtool_test(tmp_path / "reference.test.yml", "1m", series, expected)


def test_the_evaluations_counter_s_help_names_its_outcomes() -> None:
    help_text = ServingMetrics(registry=CollectorRegistry()).evaluations._documentation
    for outcome in ("ok", "insufficient_data", "comparison", "evaluate_failed", "compare_failed"):
        assert outcome in help_text


def test_every_alert_carries_the_model_label() -> None:
    """The rules' header says so, and Alertmanager groups by it; the retention purge's
    alert summed it away (`sum by (outcome)`), though its counter exports model `-`."""
    exported = _readable()
    rules = yaml.safe_load(RULES.read_text())
    lacking = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            series, _ = read_query(rule["expr"], exported)
            if series is None or "model" not in series.labels:
                lacking.append(rule["alert"])
    assert lacking == []


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


def _exported_before_the_first_failure(trained: list[ExampleModel], tmp_path: Path) -> bool:
    """Whether the daemon exports a served champion's failed runs before its first: its
    line-up loaded, nothing run yet."""
    daemon, _ = make_daemon(tmp_path, trained)
    try:
        daemon.runtime.load(MODEL)
        labels = {"model": MODEL, "version": "1", "role": "champion", "code": "non_finite_output"}
        value = daemon.metrics.registry.get_sample_value("tunewatch_run_failures_total", labels)
        return value is not None
    finally:
        daemon.close()


@pytest.mark.prometheus
def test_a_champion_s_first_failed_run_counts_toward_its_alert(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The failed runs are fed to the rules as the daemon exports them. They were exported
    from the first failure, at 1: `increase()` cannot count a series' first sample, so the
    rule's `>= 5` clause read the fifth failure as four (5 failed runs of 90 never
    alerted); the promtool input started every series at 0 and could not see it.

    One failure a minute (of 80 runs) from the first minute, sampled every 15 s: with
    the failures exported at 0 the clause holds at the fifth failure and the alert fires
    ten minutes later, at 15m; born at 1, a minute later."""
    at_zero = _exported_before_the_first_failure(trained, tmp_path / "daemon")
    samples = 80
    failures = [k // 4 for k in range(samples + 1)]  # the first at 1m
    values = " ".join("_" if n == 0 and not at_zero else str(n) for n in failures)
    labels = 'model="q",version="1",role="champion"'
    series = [
        {"series": f"tunewatch_runs_total{{{labels}}}", "values": f"0+20x{samples}"},
        {
            "series": f'tunewatch_run_failures_total{{{labels},code="non_finite_output"}}',
            "values": values,
        },
        {"series": 'tunewatch_max_error_rate{model="q"}', "values": f"0.001x{samples}"},
    ]
    name = "TunewatchChampionRunsFailing"
    fired = _firing(name, model="q", version="1", role="champion")
    expected = [
        {"eval_time": "14m45s", "alertname": name, "exp_alerts": []},
        {"eval_time": "15m", "alertname": name, "exp_alerts": [fired]},
    ]
    _promtool_test(tmp_path / "first_failure.test.yml", "15s", series, expected)


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


def _counting(interval_s: int, hours: int, sample_s: int) -> str:
    """promtool values of a count that rises by one every ``interval_s`` (0 until the
    first), sampled every ``sample_s`` for ``hours``: every run of an ``interval_s`` job
    failing, as both its ``<job>_failed`` counter and its streak gauge export it."""
    per = interval_s // sample_s
    return " ".join(f"{k}x{per - 1}" for k in range(hours * 3600 // interval_s + 1))


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("outcome", "interval_s"),
    [
        pytest.param("evaluate_failed", 300, id="every-5-minutes"),
        pytest.param("evaluate_failed", 1800, id="every-30-minutes"),
        pytest.param("reference_unreadable", 3600, id="hourly-unreadable-reference"),
        pytest.param("compare_failed", 3600, id="hourly-comparison"),
    ],
)
def test_a_scheduled_job_failing_every_run_alerts_at_its_third_failure_at_any_interval(
    tmp_path: Path, outcome: str, interval_s: int
) -> None:
    """Three failures within an hour cannot happen to a job run every 30 minutes or less
    often (a failed run is tried again at its next interval): an hourly evaluation whose
    reference could not be read, its drift alarm dropped to 0, raised nothing for ever.
    tunewatch_scheduled_streak counts a job's runs failed in a row (0 after a success):
    its third alerts, however far apart the runs are."""
    values = _counting(interval_s, 4, 60)
    labels = f'model="credit",outcome="{outcome}"'
    series = [
        {"series": f"tunewatch_evaluations_total{{{labels}}}", "values": values},
        {"series": f"tunewatch_scheduled_streak{{{labels}}}", "values": values},
    ]
    name = "TunewatchScheduledJobFailing"
    third = 3 * interval_s // 60  # minutes
    fired = _firing(name, model="credit", outcome=outcome)
    expected: list[dict[str, object]] = [
        {"eval_time": f"{third - 1}m", "alertname": name, "exp_alerts": []},
        {"eval_time": f"{third + 1}m", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "4h", "alertname": name, "exp_alerts": [fired]},
    ]
    _promtool_test(tmp_path / "failing_every_run.test.yml", "1m", series, expected)


@pytest.mark.prometheus
def test_a_run_that_succeeds_ends_the_failing_streak_s_alert(tmp_path: Path) -> None:
    """The streak is the runs failed since the last success: an hourly job that failed
    three times and then ran is no longer alerted; one failing every other run never is."""
    counter, streak = "tunewatch_evaluations_total", "tunewatch_scheduled_streak"
    labels = 'model="{m}",outcome="evaluate_failed"'
    series = [
        # a sample every 10 minutes: fails at 1h, 2h, 3h; succeeds at 4h
        {"series": counter + "{" + labels.format(m="mended") + "}", "values": "0x5 1x5 2x5 3x20"},
        {
            "series": streak + "{" + labels.format(m="mended") + "}",
            "values": "0x5 1x5 2x5 3x5 0x14",
        },
        # fails at 1h and 3h, succeeds at 2h and 4h
        {"series": counter + "{" + labels.format(m="flaky") + "}", "values": "0x5 1x11 2x20"},
        {"series": streak + "{" + labels.format(m="flaky") + "}", "values": "0x5 1x5 0x5 1x5 0x14"},
    ]
    name = "TunewatchScheduledJobFailing"
    fired = _firing(name, model="mended", outcome="evaluate_failed")
    expected: list[dict[str, object]] = [
        {"eval_time": "3h10m", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "4h10m", "alertname": name, "exp_alerts": []},
    ]
    _promtool_test(tmp_path / "mended.test.yml", "10m", series, expected)


@pytest.mark.prometheus
def test_an_hourly_job_that_overruns_every_run_alerts_at_its_third_skip(tmp_path: Path) -> None:
    """An hourly evaluation taking 70 minutes has one run skipped an hour, never three:
    the skipped rule read only `increase(...[1h]) >= 3`. tunewatch_scheduled_streak
    counts the runs skipped since the job last finished a run within its interval: the
    third overrun alerts. A job skipped once that then keeps its interval does not."""
    counter, streak = "tunewatch_evaluations_total", "tunewatch_scheduled_streak"
    slow, once = (
        'model="slow",outcome="evaluate_skipped"',
        'model="once",outcome="evaluate_skipped"',
    )
    hourly = _counting(3600, 5, 600)
    series = [
        {"series": f"{counter}{{{slow}}}", "values": hourly},
        {"series": f"{streak}{{{slow}}}", "values": hourly},
        {"series": f"{counter}{{{once}}}", "values": "0x5 1x24"},
        {"series": f"{streak}{{{once}}}", "values": "0x5 1x1 0x22"},
    ]
    name = "TunewatchScheduledJobSkipped"
    fired = _firing(name, model="slow", outcome="evaluate_skipped")
    expected: list[dict[str, object]] = [
        {"eval_time": "2h50m", "alertname": name, "exp_alerts": []},
        {"eval_time": "3h10m", "alertname": name, "exp_alerts": [fired]},
    ]
    _promtool_test(tmp_path / "overrun.test.yml", "10m", series, expected)


@pytest.mark.prometheus
def test_retune_deliveries_that_do_nothing_open_a_ticket(tmp_path: Path) -> None:
    """An `action: retune` alert naming its model with a typo was answered 200 and
    ignored, a delivery with a wrong token answered 401, a delivery Alertmanager gave up
    on counted in its own metrics: no rule read any of them, and no retune ever ran.
    Benign ignores (a resolve of an episode never seen firing, a group's alerts past
    max_alerts) and other routes' 401s alert on nothing."""
    ignored, http = "tunewatch_alerts_ignored_total", "tunewatch_http_requests_total"
    hook = 'route="/v1/alerts/alertmanager"'
    failed = "alertmanager_notifications_failed_total"
    once = "0x9 1x500"  # a sample a minute: once at 10m
    series = [
        {"series": f'{ignored}{{reason="model_unknown",instance="a:8080"}}', "values": once},
        {"series": f'{ignored}{{reason="resolved_unseen",instance="a:8080"}}', "values": once},
        {"series": f'{ignored}{{reason="truncated",instance="a:8080"}}', "values": "0x9 900x500"},
        {"series": f'{http}{{{hook},status="401",instance="a:8080"}}', "values": once},
        {"series": f'{http}{{{hook},status="200",instance="a:8080"}}', "values": "0+1x510"},
        {"series": f'{http}{{route="/v2/models/{{model}}/infer",status="401"}}', "values": once},
        {"series": f'{failed}{{integration="webhook",instance="am:9093"}}', "values": once},
        {"series": f'{failed}{{integration="email",instance="am:9093"}}', "values": once},
    ]
    alerts = {
        "TunewatchAlertsIgnored": _firing(
            "TunewatchAlertsIgnored", model="-", reason="model_unknown"
        ),
        "TunewatchAlertWebhookRefused": _firing(
            "TunewatchAlertWebhookRefused", model="-", status="401"
        ),
        "TunewatchAlertmanagerWebhookFailing": _firing(
            "TunewatchAlertmanagerWebhookFailing", model="-", instance="am:9093"
        ),
    }
    expected = [
        *({"eval_time": "9m", "alertname": name, "exp_alerts": []} for name in alerts),
        *({"eval_time": "11m", "alertname": name, "exp_alerts": [a]} for name, a in alerts.items()),
        {"eval_time": "7h", "alertname": "TunewatchAlertsIgnored", "exp_alerts": []},
        {"eval_time": "7h", "alertname": "TunewatchAlertWebhookRefused", "exp_alerts": []},
        {"eval_time": "7h", "alertname": "TunewatchAlertmanagerWebhookFailing", "exp_alerts": []},
    ]
    _promtool_test(tmp_path / "webhook.test.yml", "1m", series, expected)


@pytest.mark.prometheus
def test_a_replica_serving_no_champion_for_a_stale_lineup_pages(tmp_path: Path) -> None:
    """A champion that would not load leaves its model answering every request 503
    model_not_ready, and only the 10-minute ticket on the stale line-up fired. A replica
    whose champion serves while a shadow version would not load is no outage."""
    stale, champion = "tunewatch_lineup_stale", "tunewatch_champion_version"
    series = [
        # 15 s samples; `down` never loaded its champion on a:8080
        {"series": f'{stale}{{model="down",instance="a:8080"}}', "values": "1x60"},
        {"series": f'{stale}{{model="down",instance="b:8080"}}', "values": "0x60"},
        {"series": f'{champion}{{model="down",instance="b:8080"}}', "values": "1x60"},
        # `shadowed`'s shadow would not load; its champion serves
        {"series": f'{stale}{{model="shadowed",instance="a:8080"}}', "values": "1x60"},
        {"series": f'{champion}{{model="shadowed",instance="a:8080"}}', "values": "3x60"},
    ]
    name = "TunewatchChampionNotServed"
    fired = _firing(name, model="down", instance="a:8080")
    expected: list[dict[str, object]] = [
        {"eval_time": "1m45s", "alertname": name, "exp_alerts": []},
        {"eval_time": "2m15s", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "14m", "alertname": name, "exp_alerts": [fired]},
    ]
    _promtool_test(tmp_path / "champion_not_served.test.yml", "15s", series, expected)


@pytest.mark.prometheus
def test_a_stale_lineup_keeps_its_alert_s_timer_across_a_restart(tmp_path: Path) -> None:
    """The replica restarted at 8m (a minute without a scrape, its series marked stale):
    read as an instant vector, the stale line-up's `for: 10m` started again and its
    ticket waited until 19m15s."""
    stale = "tunewatch_lineup_stale"
    series = [
        {
            "series": f'{stale}{{model="shadowed",instance="a:8080"}}',
            "values": "1x32 stale _x3 1x60",
        }
    ]
    name = "TunewatchLineupStale"
    fired = _firing(name, model="shadowed", instance="a:8080")
    expected: list[dict[str, object]] = [
        {"eval_time": "9m45s", "alertname": name, "exp_alerts": []},
        {"eval_time": "10m15s", "alertname": name, "exp_alerts": [fired]},
    ]
    _promtool_test(tmp_path / "stale_restart.test.yml", "15s", series, expected)


@pytest.mark.prometheus
def test_an_alarm_the_new_leader_clears_ends_its_alert_at_once(tmp_path: Path) -> None:
    """The old leader's last 1, held two minutes by `last_over_time`, outweighed the new
    leader's fresh 0 under `max by (model)`: a cleared drift alarm kept paging for up to
    two minutes after a leader change. Leader "a" exports 1 until 10m; leader "b" exports
    1 from 10m and clears the alarm (0) from 10m30s."""
    leaders = (("a", "{v}x40 stale"), ("b", "_x40 {v} {v} {cleared}x60"))
    series = [
        {
            "series": f'tunewatch_alarm{{model="credit",event="{event}",instance="{who}"}}',
            "values": values.format(v=1, cleared=0),
        }
        for event in ALARM_ALERTS.values()
        for who, values in leaders
    ] + [
        {
            "series": f'tunewatch_drift_share{{model="credit",instance="{who}"}}',
            "values": values.format(v=0.8, cleared=0.1),
        }
        for who, values in leaders
    ]
    cleared = (*ALARM_ALERTS, "TunewatchDriftShareHigh")
    expected = [
        {
            "eval_time": "10m15s",
            "alertname": "TunewatchDriftDetected",
            "exp_alerts": [_firing("TunewatchDriftDetected", model="credit")],
        },
        *(
            {"eval_time": t, "alertname": name, "exp_alerts": []}
            for name in cleared
            for t in ("11m", "11m30s", "12m")
        ),
    ]
    _promtool_test(tmp_path / "cleared_by_new_leader.test.yml", "15s", series, expected)


def test_the_drift_share_alert_speaks_of_columns_not_features() -> None:
    """tunewatch_drift_share is the share of every tested column, the prediction and the
    label among them, not of the model's features alone."""
    rules = yaml.safe_load(RULES.read_text())
    [rule] = [
        r for g in rules["groups"] for r in g["rules"] if r["alert"] == "TunewatchDriftShareHigh"
    ]
    assert "columns" in rule["annotations"]["summary"]
    assert "features" not in rule["annotations"]["summary"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.prometheus
def test_the_alertmanager_series_the_rules_read_are_what_alertmanager_exports(
    tmp_path: Path,
) -> None:
    """The rule on failed webhook notifications reads Alertmanager's own metrics: a real
    Alertmanager, run with the shipped routing, exports each series of
    ALERTMANAGER_SERIES with exactly those labels, and the `webhook` integration."""
    routing = yaml.safe_load((CONFIGS / "alertmanager" / "alertmanager.yml").read_text())
    token = tmp_path / "alertmanager.token"
    token.write_text("tw_test")
    for receiver in routing["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["http_config"]["authorization"]["credentials_file"] = str(token)
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(routing))
    address = f"127.0.0.1:{_free_port()}"
    process = subprocess.Popen(
        [
            _tool("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address={address}",
            "--cluster.listen-address=",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        log = []
        for line in process.stderr:  # until it listens, or exits (EOF)
            log.append(line)
            if "Listening on" in line:
                break
        else:
            pytest.fail("alertmanager did not start:\n" + "".join(log))
        scraped = httpx.get(f"http://{address}/metrics", timeout=30).text
    finally:
        process.terminate()
        process.communicate(timeout=30)  # the rest of its log read, the pipe closed
    exported: dict[str, set[frozenset[str]]] = {}
    integrations = set()
    for family in text_string_to_metric_families(scraped):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).add(frozenset(sample.labels))
            if sample.name == "alertmanager_notifications_failed_total":
                integrations.add(sample.labels.get("integration"))
    assert {name: exported.get(name) for name in ALERTMANAGER_SERIES} == {
        name: {labels} for name, labels in ALERTMANAGER_SERIES.items()
    }
    assert "webhook" in integrations


@pytest.mark.prometheus
def test_an_event_whose_trigger_notifies_alerts_once_and_resolves(tmp_path: Path) -> None:
    """``do: notify`` (srm_detected and challenger_worse by default) reached nobody: the
    event was recorded and counted, and no shipped rule read it. Each is counted in
    ``tunewatch_notifications_total`` and alerts for the 15 minutes after it."""
    counter = "tunewatch_notifications_total"
    series = [
        # a sample a minute; srm_detected raised once, at 5 minutes
        {"series": f'{counter}{{model="credit",event="srm_detected"}}', "values": "0x4 1x40"},
        {"series": f'{counter}{{model="credit",event="challenger_worse"}}', "values": "0x45"},
    ]
    name = "TunewatchNotification"
    fired = _firing(name, model="credit", event="srm_detected")
    expected: list[dict[str, object]] = [
        {"eval_time": "4m", "alertname": name, "exp_alerts": []},
        {"eval_time": "6m", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "18m", "alertname": name, "exp_alerts": [fired]},
        {"eval_time": "25m", "alertname": name, "exp_alerts": []},
    ]
    _promtool_test(tmp_path / "notify.test.yml", "1m", series, expected)
