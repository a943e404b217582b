"""configs/ is data the operators deploy: every file must pass its own tool's check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

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
