"""The operator's Prometheus metrics. Labels are bounded: kinds, results, methods and status classes only."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "serveplane_reconcile_total", "Reconciles of a ServeCluster and everything on it, by result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "serveplane_reconcile_duration_seconds", "Duration of one reconcile.", ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DASHBOARD_REQUESTS = Counter(
    "serveplane_dashboard_requests_total", "Requests to Ray dashboards' Serve API, by method and status.",
    ["method", "code"],
)
DASHBOARD_SECONDS = Histogram(
    "serveplane_dashboard_request_duration_seconds", "Latency of requests to Ray dashboards.", ["method"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SUBMISSIONS = Counter(
    "serveplane_serve_config_submissions_total", "Serve configs PUT to a head, by reason and result.",
    ["reason", "result"],
)
SPEC_TO_APPLIED_SECONDS = Histogram(
    "serveplane_spec_to_applied_seconds", "From a change of the composed Serve config to Serve accepting it.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
POD_ACTIONS = Counter(
    "serveplane_pod_actions_total", "Ray pods created or deleted by the operator.", ["action"]
)
RESOURCES = Gauge(
    "serveplane_resources", "Resources by kind and the status of their Ready condition.", ["kind", "ready"]
)

_ready: dict[tuple[str, str, str], str] = {}


def record_ready(kind: str, namespace: str, name: str, ready: str | None) -> None:
    """Track one resource's Ready status and refresh the per-kind gauge; None forgets the resource."""
    key = (kind, namespace, name)
    if ready is None:
        _ready.pop(key, None)
    else:
        _ready[key] = ready
    counts: dict[str, int] = {"True": 0, "False": 0, "Unknown": 0}
    for (other, _, _), value in _ready.items():
        if other == kind:
            counts[value] = counts.get(value, 0) + 1
    for value, count in counts.items():
        RESOURCES.labels(kind, value).set(count)
