"""The chart's Grafana dashboard (helm/serveplane/files/grafana-dashboard.json) and serveplane.localcluster.promql.

The metric-name helpers on tricky PromQL and exposition texts; then the dashboard itself: valid JSON, every panel
queries something, every expression parses and selects a metric, every serveplane_* metric is one the operator or
the node agent declares, every ray_serve_* metric one Ray's Serve declares, and the labels it filters on are the ones
the chart's monitors put on the series. (That the names really come out of a running operator and Ray pod is checked
end to end, with the same helpers.)
"""
from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info, Summary, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from promql_parser import MatchOp

from serveplane.localcluster import promql
from serveplane.operator import metrics as operator_metrics
from serveplane.operator.api.kinds import APPS, CLUSTERS, DEPLOYMENTS
from serveplane.runtime.metrics import AgentMetrics

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "serveplane"


def dashboard() -> dict[str, Any]:
    return json.loads(promql.DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels") or [])
    return out


# --- metric_names ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "names"), [
    ('rate(http_requests_total{job="api"}[5m])', {"http_requests_total"}),
    # Grafana's variables: in a range ($__rate_interval, ${__range}) and inside label values.
    ('histogram_quantile(0.99, sum by (le, application) (rate(ray_serve_http_request_latency_ms_bucket'
     '{namespace=~"$namespace", serveplane_dev_cluster=~"${cluster}"}[$__rate_interval])))',
     {"ray_serve_http_request_latency_ms_bucket"}),
    ("sum(increase(a_total[${__range}]))", {"a_total"}),
    # Aggregations with by/without before or after, and label names that are keywords elsewhere.
    ("sum without (instance) (a) + sum(b) by (le)", {"a", "b"}),
    ("sum by (bool, on, offset, le) (x)", {"x"}),
    ('x{by="on", group_left="ignoring"}', {"x"}),
    # Vector matching and comparison modifiers.
    ("a / on(job) group_left(instance) b", {"a", "b"}),
    ("sum(a) by (le) / ignoring(le) group_right sum(b)", {"a", "b"}),
    ("a > bool 0.5", {"a"}),
    ("a unless on() b or c and d", {"a", "b", "c", "d"}),
    # offset, @, subqueries.
    ("a offset 5m + rate(b[5m] offset -1h)", {"a", "b"}),
    ("rate(a[5m] @ 100 offset 1m) + b @ end()", {"a", "b"}),
    ("max_over_time(rate(c[5m])[1h:1m])", {"c"}),
    ("rate(sum(d)[5m:])", {"d"}),
    # String literals are never names, even when they look like one or hold braces.
    ('count_values("le", a)', {"a"}),
    ('label_replace(up, "dst", "{a} $1", "src", "(.*)")', {"up"}),
    ('min_over_time(x{a="\\"quoted\\" y{z}"}[1h])', {"x"}),
    # Functions with numbers only, numbers, special floats.
    ("vector(1)", set()),
    ("time() - 1e3", set()),
    ("NaN + Inf", set()),
    ("topk(3, sum by (app) (rate(nginx_requests_total[5m])))", {"nginx_requests_total"}),
    ("quantile(0.9, q) * -r", {"q", "r"}),
    ("absent_over_time(up{job=\"x\"}[5m]) or vector(0)", {"up"}),
    # Recording-rule names with colons; names given as __name__.
    ("job:request_latency_seconds:mean5m", {"job:request_latency_seconds:mean5m"}),
    ('{__name__="foo", job="x"}', {"foo"}),
    ('{__name__=~"foo|bar"}', set()),
])
def test_metric_names(expr: str, names: set[str]) -> None:
    assert promql.metric_names(expr) == names


@pytest.mark.parametrize("expr", ["sum(", "rate(x[5m]", "a +", "bool", 'x{a="b"'])
def test_metric_names_refuses_what_is_not_promql(expr: str) -> None:
    with pytest.raises(ValueError, match="not PromQL"):
        promql.metric_names(expr)


def test_dashboard_metric_names_reads_rows_and_query_variables(tmp_path: Path) -> None:
    board = {
        "panels": [
            {"type": "timeseries", "targets": [{"expr": "rate(a_total[$__rate_interval])"}, {"expr": ""}]},
            {"type": "row", "collapsed": True, "panels": [{"type": "stat", "targets": [{"expr": "sum(b)"}]}]},
            {"type": "text"},
        ],
        "templating": {"list": [
            {"type": "datasource", "query": "prometheus"},
            {"type": "query", "query": {"query": 'label_values(c{namespace=~"$namespace"}, cluster)'}},
            {"type": "query", "query": "label_values(d, namespace)"},
            {"type": "query", "query": "query_result(topk(1, e))"},
            {"type": "query", "query": "label_values(namespace)"},
            {"type": "custom", "query": "x,y"},
        ]},
    }
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(board))
    assert promql.dashboard_metric_names(path) == {"a_total", "b", "c", "d", "e"}


# --- exported_names ------------------------------------------------------------------------------------------------

def sample_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("jobs", "a counter named without _total", registry=registry).inc()
    Counter("calls_total", "a counter named with _total, labelled, no child yet", ["code"], registry=registry)
    Histogram("latency_seconds", "a labelled histogram without children", ["method"], registry=registry)
    Summary("size_bytes", "a summary", registry=registry).observe(3)
    Gauge("up_now", "a gauge", registry=registry).set(1)
    Info("build", "an info", registry=registry).info({"version": "1"})
    return registry


@pytest.mark.parametrize("render", [generate_latest, generate_openmetrics], ids=["text-0.0.4", "openmetrics"])
def test_exported_names_expands_families_as_prometheus_client_names_their_samples(render: Any) -> None:
    names = promql.exported_names(render(sample_registry()).decode())
    assert {"jobs_total", "calls_total", "latency_seconds_bucket", "latency_seconds_sum", "latency_seconds_count",
            "size_bytes_sum", "size_bytes_count", "up_now", "build_info"} <= names
    # Never a name no series can have: the bare family of a counter or histogram, a doubled suffix.
    assert not {"jobs", "latency_seconds", "calls_total_total", "calls", "build"} & names


def test_exported_names_of_hand_written_text() -> None:
    text = """# HELP ray_serve_num_http_requests_total The number of HTTP requests processed.
# TYPE ray_serve_num_http_requests_total counter
ray_serve_num_http_requests_total{application="hello",route="/hello",status_code="200"} 5.0
# TYPE ray_serve_http_request_latency_ms histogram
ray_serve_http_request_latency_ms_bucket{le="+Inf"} 5.0
# HELP only_help A family with HELP and no TYPE.
untyped_sample 1
  # a comment
spaced_sample{a="b"}   2 1700000000000
# EOF
"""
    assert promql.exported_names(text) == {
        "ray_serve_num_http_requests_total", "ray_serve_http_request_latency_ms_bucket",
        "ray_serve_http_request_latency_ms_sum", "ray_serve_http_request_latency_ms_count", "only_help",
        "untyped_sample", "spaced_sample",
    }


# --- the dashboard --------------------------------------------------------------------------------------------------

def test_dashboard_is_valid_json_with_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "serveplane" and board["title"]
    assert promql.DASHBOARD.read_text().endswith("}\n")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "cluster", "application", "operator_namespace"):
        assert variables[name]["type"] == "query", name
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name
        # "All" must match series without the label too (a Prometheus that does not set it).
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*", name


def test_every_panel_queries_the_datasource_variable() -> None:
    board = dashboard()
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    graphs = [p for p in panels(board) if p["type"] != "row"]
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel.get("title") and panel.get("description"), panel.get("title")
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no target"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == panel["datasource"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard()):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_expression_selects_a_metric() -> None:
    for panel, expr in promql.dashboard_targets(dashboard()):
        assert promql.metric_names(expr), f"{panel['title']}: {expr}"


def declared_serveplane_names() -> set[str]:
    """Every metric the operator (operator/metrics.py, its collector included) and the node agent declare."""
    registry = CollectorRegistry()
    registry.register(operator_metrics.ResourcesCollector(lambda kind: [], (CLUSTERS, APPS, DEPLOYMENTS)))
    texts = [generate_latest(REGISTRY), generate_latest(registry), AgentMetrics(role="head", node_ip="x").render()]
    return {name for text in texts for name in promql.exported_names(text.decode()) if name.startswith("serveplane_")}


def test_every_serveplane_metric_is_declared_by_the_operator_or_the_agent() -> None:
    used = {name for name in promql.dashboard_metric_names() if name.startswith("serveplane_")}
    assert used, "the dashboard shows the operator"
    assert used <= declared_serveplane_names(), used - declared_serveplane_names()
    # The agent's own metrics are served on its agent port, which the chart's PodMonitor does not scrape.
    assert not {name for name in used if name.startswith("serveplane_agent_")}


# `metrics.Counter("serve_...")`, `ray_metrics.Gauge(name=f"serve_num_ongoing_{protocol_name}_requests")`, ...
_RAY_DECLARATION = re.compile(
    r"""\b(?:metrics|ray_metrics)\.(Counter|Gauge|Histogram)\(\s*(?:name\s*=\s*)?f?["'](serve_[^"']+)["']"""
)


def declared_ray_serve_names() -> set[str]:
    """The metrics Ray's Serve declares, as Ray's exporter names them: prefixed with ray_, counters with _total,
    histograms as _bucket/_sum/_count (as a scrape of a real Ray pod shows)."""
    names: set[str] = set()
    serve = Path(str(importlib.metadata.distribution("ray").locate_file("ray/serve")))
    for path in serve.rglob("*.py"):
        for kind, name in _RAY_DECLARATION.findall(path.read_text()):
            for protocol in ("http", "grpc"):
                base = "ray_" + name.replace("{protocol_name}", protocol)
                if kind == "Counter":
                    names.add(base if base.endswith("_total") else base + "_total")
                elif kind == "Histogram":
                    names.update(base + suffix for suffix in ("_bucket", "_sum", "_count"))
                else:
                    names.add(base)
    return names


def test_every_ray_metric_is_one_rays_serve_declares() -> None:
    used = {name for name in promql.dashboard_metric_names() if not name.startswith("serveplane_")}
    assert used and all(name.startswith("ray_serve_") for name in used), used
    declared = declared_ray_serve_names()
    assert "ray_serve_num_http_requests_total" in declared, "the declarations were not found in Ray's source"
    assert used <= declared, used - declared


def test_the_dashboard_shows_what_platform_teams_ask_for() -> None:
    names = promql.dashboard_metric_names()
    for name in (
        "serveplane_reconcile_total", "serveplane_dashboard_request_duration_seconds_bucket",
        "serveplane_spec_to_applied_seconds_bucket", "serveplane_resources",
        "ray_serve_num_http_requests_total", "ray_serve_num_grpc_requests_total",
        "ray_serve_num_http_error_requests_total", "ray_serve_http_request_latency_ms_bucket",
        "ray_serve_deployment_replica_healthy",
    ):
        assert name in names, name
    exprs = [expr for _, expr in promql.dashboard_targets(dashboard())]
    assert any('result="error"' in e and "serveplane_reconcile_total" in e for e in exprs), "reconcile errors"
    for quantile in ("0.5", "0.99"):
        assert any(f"histogram_quantile({quantile}," in e and "ray_serve_http_request_latency_ms_bucket" in e
                   for e in exprs), quantile


def test_ray_series_are_filtered_by_the_labels_the_pod_monitor_keeps() -> None:
    """Ray's series carry the pod's namespace and, through the PodMonitor's podTargetLabels, the ServeCluster's
    name as serveplane_dev_cluster (prometheus-operator turns the label's non-alphanumerics into _)."""
    podmonitor = (CHART / "templates" / "podmonitor.yaml").read_text()
    assert "podTargetLabels:\n    - serveplane.dev/cluster" in podmonitor
    wanted = {
        "ray_serve_": {"namespace": "$namespace", "serveplane_dev_cluster": "$cluster"},
        "serveplane_": {"namespace": "$operator_namespace"},
    }
    for panel, expr in promql.dashboard_targets(dashboard()):
        for selector in promql.selectors(expr):
            assert selector.name, f"{panel['title']}: {expr}"
            matchers = {m.name: (m.op, m.value) for m in selector.matchers.matchers}
            (labels,) = [labels for prefix, labels in wanted.items() if selector.name.startswith(prefix)]
            for label, variable in labels.items():
                assert matchers.get(label) == (MatchOp.Re, variable), f"{panel['title']}: {selector}"
