"""The alert rules and the Grafana dashboard (infra/prometheus, infra/grafana) name only metrics the
code exposes, and the rules pass promtool's checks and unit tests where promtool is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.core.metrics import exposition
from pipeline.core.settings import Settings
from pipeline.operations.scrape import ScrapeCollector
from pipeline.runtime import Runtime

INFRA = Path(__file__).resolve().parents[2] / "infra"
ALERTS = INFRA / "prometheus" / "alerts.yaml"
ALERT_TESTS = INFRA / "prometheus" / "alerts_test.yaml"
DASHBOARD = INFRA / "grafana" / "dmp.json"
NAME = re.compile(r"\bdmp_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "summary": ("_count", "_sum", "")}


class _OneQueue:
    """Stands in for Redis: the broker's gauges have their names whatever the queue holds."""

    def depths(self, now_ms: float) -> dict[str, tuple[int, float]]:
        return {"dmp.documents": (0, 0.0)}


@pytest.fixture(scope="module")
def exposed(tmp_path_factory) -> set[str]:
    """Every series name the API process exposes (its counters and the scrape-time gauges)."""
    rt = Runtime.from_settings(Settings(home=tmp_path_factory.mktemp("monitoring") / "home"), prepare=True)
    text = exposition(ScrapeCollector(rt, _OneQueue()))[0].decode()  # type: ignore[arg-type]
    rt.close()
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names |= {family.removesuffix("_total") + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


def _dashboard_queries() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def test_every_alert_names_metrics_that_exist(exposed):
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {
        "DmpQueueGrowing", "DmpItemsStuck", "DmpNotificationsFailing", "DmpAuditChainBroken", "DmpRetentionMissed",
    }  # fmt: skip
    for rule in rules:
        named = set(NAME.findall(rule["expr"]))
        assert named and named <= exposed, (rule["alert"], named - exposed)


def test_every_dashboard_panel_queries_metrics_that_exist(exposed):
    queries = _dashboard_queries()
    assert queries
    for query in queries:
        named = set(NAME.findall(query))
        assert named and named <= exposed, (query, named - exposed)


def test_the_alert_unit_tests_feed_series_that_exist(exposed):
    series = [s["series"] for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for s in test["input_series"]]
    assert {name.split("{")[0] for name in series} <= exposed


def _promtool() -> str:
    # make test puts Debian's promtool beside the venv's python when apt can fetch it.
    found = shutil.which("promtool") or shutil.which("promtool", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus, or dpkg -x of its .deb; it ships promtool)")
    return found


def test_the_alert_rules_pass_promtool_check_rules():
    result = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_pass_their_promtool_unit_tests():
    result = subprocess.run(
        [_promtool(), "test", "rules", ALERT_TESTS.name], capture_output=True, text=True, timeout=120, cwd=ALERT_TESTS.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
