"""ServiceMonitor, PrometheusRule and the Grafana dashboard refer to metrics the code really
exports, and to Services and ports that exist."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client import REGISTRY

from tests.deploy.conftest import K8S, named, of_kind, rendered

REQUIRED_ALERTS = {  # what the issue asks for, by what it watches
    "HomecareConsumerLagHigh": "homecare_consumer_lag",
    "HomecareDeadLetters": "homecare_dead_letters_total",
    "HomecareOutboxBacklog": "homecare_outbox_backlog",
    "HomecareMissedVisits": "homecare_alerts_open",
    "HomecareTimebankReserveRatioLow": "homecare_timebank_liability_ratio",
}
PROMQL_WORDS = {"sum", "max", "min", "avg", "by", "without", "rate", "increase", "irate",
                "histogram_quantile", "le", "and", "or", "unless", "on", "ignoring",
                "group_left", "group_right", "offset", "count", "bool", "abs", "label_values",
                "delta", "deriv", "clamp_min", "time", "vector"}


def exported_metric_names() -> set[str]:
    """Every sample name the services can expose (importing what defines metrics)."""
    import services.runtime.consumer  # noqa: F401
    import services.runtime.outbox  # noqa: F401
    import services.timebank.application  # noqa: F401
    from services.runtime.messaging import make_broker
    from services.runtime.settings import SharedSettings

    make_broker("localhost:9092", SharedSettings(), "homecare-test")  # FastStream's metrics
    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):
        for family in collector.describe() if hasattr(collector, "describe") else ():
            names.add(family.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names |= {family.name + s for s in ("_bucket", "_count", "_sum")}
    return names | set(REGISTRY._names_to_collectors)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (identifiers that are not functions, keywords,
    label names or recording rules)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_labels)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_groupings)
    words = set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_:]*", without_ranges))
    return {w for w in words if w not in PROMQL_WORDS and ":" not in w}


def test_prometheus_rules_alert_on_what_the_issue_names_using_real_metrics():
    """Alerts exist for consumer lag, DLQ growth, outbox backlog, missed visits and a low
    reserve ratio; every metric any rule uses is one the code exports; recording rules used
    are defined."""
    docs = rendered("production")
    rule = named(docs, "PrometheusRule", "homecare")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    recorded = {r["record"]: r for r in rules if "record" in r}
    exported = exported_metric_names()
    for name, watched in REQUIRED_ALERTS.items():
        expr = alerts[name]["expr"]
        used = metric_names(expr) | {m for rec in re.findall(r"[a-z_]+:[a-z_:]+", expr)
                                     for m in metric_names(recorded[rec]["expr"])}
        assert watched in used, (name, expr)
    for r in rules:
        assert metric_names(r["expr"]) <= exported, (r.get("alert") or r.get("record"),
                                                     metric_names(r["expr"]) - exported)
        for rec in re.findall(r"[a-z_]+:[a-z_:]+", r["expr"]):
            assert rec in recorded
        if "alert" in r:
            assert r["labels"]["severity"] in {"warning", "critical"}
            assert r["annotations"]["summary"]


def test_metric_name_extraction_sees_through_promql():
    """The PromQL reader finds metric names and nothing else (labels, functions, ranges)."""
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, route) '
        '(rate(homecare_http_request_seconds_bucket{status=~"5..", x="a b"}[5m])))'
    ) == {"homecare_http_request_seconds_bucket"}
    assert metric_names("max by (group) (homecare:consumer_lag:max) > 1000") == set()


def test_service_monitor_scrapes_every_service_on_its_metrics_path(overlay):
    """The ServiceMonitor selects all three Services, on a port name they have, at the path
    the host serves the metrics on."""
    _, docs = overlay
    monitor = named(docs, "ServiceMonitor", "homecare")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in of_kind(docs, "Service")
                if all(s["metadata"]["labels"].get(k) == v for k, v in selector.items())]
    assert {s["metadata"]["name"] for s in services} == {"dispatch", "ledger", "timebank"}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in services)
    assert endpoint["path"] == "/metrics/"
    from services.runtime.host import Host, create_http_app
    from services.runtime.settings import SharedSettings

    app = create_http_app(Host([], SharedSettings(), bootstrap_servers="unused:9092"))
    mounts = {getattr(r, "path", None) for r in app.routes}
    assert endpoint["path"].rstrip("/") in mounts


def dashboard() -> dict[str, Any]:
    return json.loads((K8S / "base" / "dashboards" / "homecare.json").read_text())


def test_grafana_dashboard_charts_the_named_metrics():
    """The dashboard JSON parses, ships in a ConfigMap for Grafana's sidecar, and its panels
    chart HTTP latency, messages, lag, DLQ, outbox, router, unassigned visits, alerts,
    entitlement minutes and liability: only with metrics the code exports."""
    board = dashboard()
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used <= exported_metric_names(), used - exported_metric_names()
    assert {"homecare_http_request_seconds_bucket", "homecare_messages_consumed_total",
            "homecare_outbox_published_total", "homecare_consumer_lag",
            "homecare_dead_letters_total", "homecare_outbox_backlog",
            "homecare_router_solve_seconds_bucket", "homecare_router_objective",
            "homecare_unassigned_visits", "homecare_alerts_open",
            "homecare_entitlement_minutes", "homecare_timebank_liability_ratio"} <= used
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    config_map = named(rendered("production"), "ConfigMap", "homecare-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["homecare.json"]) == board
