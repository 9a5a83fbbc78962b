"""The operator's Prometheus metrics. Labels are bounded: kinds, results, methods and status classes, but for the
worker-group gauge, one series per worker group and state (as KubeRay's per-cluster metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from . import conditions
from .api.kinds import CLUSTERS

RECONCILES = Counter(
    "serveplane_reconcile_total", "Reconciles of a ServeCluster and everything on it, by result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "serveplane_reconcile_duration_seconds",
    "Duration of one reconcile.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DASHBOARD_REQUESTS = Counter(
    "serveplane_dashboard_requests_total",
    "Requests to Ray dashboards' Serve API, by method and status.",
    ["method", "code"],
)
DASHBOARD_SECONDS = Histogram(
    "serveplane_dashboard_request_duration_seconds",
    "Latency of requests to Ray dashboards.",
    ["method"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HEAD_RECOVERIES = Counter(
    "serveplane_head_recoveries_total",
    "New head pods on which Serve came back: RecoveredFromGcs (by itself, GCS fault tolerance) or Resubmitted.",
    ["how"],
)
SUBMISSIONS = Counter(
    "serveplane_serve_config_submissions_total",
    "Serve configs PUT to a head, by reason and result.",
    ["reason", "result"],
)
SPEC_TO_APPLIED_SECONDS = Histogram(
    "serveplane_spec_to_applied_seconds",
    "From a change of the composed Serve config to Serve accepting it.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
LEADER = Gauge(
    "serveplane_leader", "1 while this operator reconciles: it holds the lease, or runs without leader election."
)
POD_ACTIONS = Counter("serveplane_pod_actions_total", "Ray pods created or deleted by the operator.", ["action"])


class ResourcesCollector(Collector):
    """`serveplane_resources`: resources by kind and the status of their Ready condition, read from the store
    at scrape time, so the gauge can never disagree with the statuses the operator last saw."""

    def __init__(self, resources: Callable[[str], list[dict[str, Any]]], kinds: tuple[str, ...]) -> None:
        self._resources = resources
        self._kinds = kinds

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "serveplane_resources",
            "Resources by kind and the status of their Ready condition.",
            labels=["kind", "ready"],
        )
        yield self._worker_groups()
        for kind in self._kinds:
            counts = {"True": 0, "False": 0, "Unknown": 0}
            for obj in self._resources(kind):
                found = conditions.find((obj.get("status") or {}).get("conditions") or [], conditions.READY)
                value = str(found.get("status")) if found else "Unknown"
                counts[value] = counts.get(value, 0) + 1
            for value, count in counts.items():
                gauge.add_metric([kind, value], count)
        yield gauge

    def _worker_groups(self) -> Metric:
        """`serveplane_worker_group_pods`: each worker group's desired and running pods and, with Ray's
        autoscaler, what it asks for, from the ServeClusters' status.workerGroups."""
        gauge = GaugeMetricFamily(
            "serveplane_worker_group_pods",
            "Worker pods of a ServeCluster's group: desired (what the operator runs), running (Ready) and requested "
            "(Ray's autoscaler's ask, before minReplicas/maxReplicas).",
            labels=["namespace", "cluster", "group", "state"],
        )
        for obj in self._resources(CLUSTERS):
            meta = obj.get("metadata") or {}
            for group in (obj.get("status") or {}).get("workerGroups") or []:
                for state in ("desired", "running", "requested"):
                    if group.get(state) is not None:
                        labels = [str(meta.get("namespace")), str(meta.get("name")), str(group.get("name")), state]
                        gauge.add_metric(labels, float(group[state]))
        return gauge
