"""Metric names on both sides of a dashboard: the ones PromQL expressions select, the ones the chart's Grafana
dashboard queries, and the ones an exporter's `/metrics` text offers. A test compares the last two, so a panel
can never query a metric that nothing exports (a renamed metric, a Ray upgrade).

    from serveplane.localcluster import promql

    missing = promql.dashboard_metric_names() - promql.exported_names(operator_text + ray_pod_text)

PromQL is parsed by `promql-parser` (Python bindings of GreptimeDB's Rust parser, a dev dependency), so function
names, aggregations, `by`/`without`/`on`/`ignoring`/`group_left`/`offset`/`bool`, label names, strings, durations
and numbers are never mistaken for metric names. Grafana's variables are replaced first (the parser knows none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "serveplane" / "files" / "grafana-dashboard.json"
"""The chart's dashboard, shipped in a ConfigMap by templates/grafana-dashboard.yaml."""

# A string literal (left alone: label values like "$namespace" stay strings), or a Grafana variable outside one:
# $name, ${name}, ${name:format}, [[name]]. Outside strings they stand for durations ($__rate_interval, $__range).
_STRING_OR_VARIABLE = re.compile(
    r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)|(\$\{[^}]*\}|\$\w+|\[\[\w+(?::\w+)?\]\])"""
)
# Grafana's query variables: label_values(<series selector>, label) and query_result(<PromQL>) select metrics;
# label_values(label) and metrics(regex) name none.
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((?P<expr>.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\s*\((?P<expr>.*)\)\s*$", re.S)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# What prometheus_client (and Prometheus' text format) writes for a family of each type: the family's own name
# stands alone only where listed; counters get _total unless their name has it (the 0.0.4 format's TYPE line
# already carries it, OpenMetrics' does not).
_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("_sum", "_count"),
}


def _substitute_variables(expr: str) -> str:
    return _STRING_OR_VARIABLE.sub(lambda m: m.group(1) or "5m", expr)


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """The vector selectors of `expr` (those of its range selectors and subqueries too), in order; ValueError when
    `expr` is not PromQL. Grafana's variables stand as they are in label values ("$namespace")."""
    try:
        tree = promql_parser.parse(_substitute_variables(expr))
    except ValueError as error:
        raise ValueError(f"not PromQL: {expr!r}: {error}") from error
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(tree, pre_visit=visit)
    return found


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` selects: the names of its vector and range selectors, and `{__name__="x"}`.

    A name matched only by a regex (`{__name__=~"a|b"}`) is not listed. ValueError when `expr` is not PromQL.
    """
    names: set[str] = set()
    for selector in selectors(expr):
        if selector.name:
            names.add(selector.name)
        groups = [selector.matchers.matchers, *selector.matchers.or_matchers]
        for matcher in (m for group in groups for m in group):
            if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
                names.add(matcher.value)
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # a collapsed row holds its panels


def dashboard_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(panel, expr) for every Prometheus target of every panel, rows' panels included."""
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                yield panel, str(target["expr"])


def variable_metric_names(query: str) -> set[str]:
    """The metric names a Grafana Prometheus query variable reads (`label_values(sel, label)`, `query_result(e)`)."""
    found = _LABEL_VALUES.match(query) or _QUERY_RESULT.match(query)
    return metric_names(found.group("expr")) if found else set()


def dashboard_metric_names(path: Path | None = None) -> set[str]:
    """Every metric name the dashboard at `path` (default: the chart's) queries: in every target expression of
    every panel, and in its query variables (which must find series too, or its selectors stay empty)."""
    dashboard = json.loads((path or DASHBOARD).read_text())
    names = {name for _, expr in dashboard_targets(dashboard) for name in metric_names(expr)}
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            names |= variable_metric_names(text)
    return names


def exported_names(exposition_text: str) -> set[str]:
    """The metric names a scrape of `exposition_text` (Prometheus text format or OpenMetrics) offers: every
    sample's name, plus each family of a `# TYPE` line as its samples are named (a histogram as _bucket, _sum and
    _count; a summary's _sum and _count; a counter with _total), so a family with no sample yet counts too; a name
    with only a `# HELP` line counts as it is."""
    names: set[str] = set()
    typed: dict[str, str] = {}
    helped: set[str] = set()
    for raw in exposition_text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                typed[parts[2]] = parts[3].strip().lower() if len(parts) > 3 else "untyped"
            elif len(parts) >= 3 and parts[1] == "HELP":
                helped.add(parts[2])
            continue
        sample = _METRIC_NAME.match(line)
        if sample:
            names.add(sample.group(0))
    for family, kind in typed.items():
        if kind == "counter":
            names.add(family if family.endswith("_total") else f"{family}_total")
        elif kind == "info":
            names.add(family if family.endswith("_info") else f"{family}_info")
        elif kind in _SUFFIXES:
            names.update(family + suffix for suffix in _SUFFIXES[kind])
        else:
            names.add(family)
    names.update(helped - set(typed))
    return names
