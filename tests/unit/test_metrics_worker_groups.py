"""The worker-group gauge reads the ServeClusters' status.workerGroups at scrape time."""
from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from serveplane.operator import metrics
from serveplane.operator.api.kinds import APPS, CLUSTERS


def test_each_groups_desired_running_and_requested_pods_are_gauges() -> None:
    clusters = [{
        "metadata": {"namespace": "ns", "name": "demo"},
        "status": {"workerGroups": [{"name": "cpu", "desired": 2, "running": 1, "requested": 5},
                                    {"name": "gpu", "desired": 1, "running": 1}]},
    }]

    def resources(kind: str) -> list[dict[str, Any]]:
        return clusters if kind == CLUSTERS else []

    registry = CollectorRegistry()
    registry.register(metrics.ResourcesCollector(resources, (CLUSTERS, APPS)))
    text = generate_latest(registry).decode()
    for series in (
        'serveplane_worker_group_pods{cluster="demo",group="cpu",namespace="ns",state="desired"} 2.0',
        'serveplane_worker_group_pods{cluster="demo",group="cpu",namespace="ns",state="running"} 1.0',
        'serveplane_worker_group_pods{cluster="demo",group="cpu",namespace="ns",state="requested"} 5.0',
        'serveplane_worker_group_pods{cluster="demo",group="gpu",namespace="ns",state="desired"} 1.0',
    ):
        assert series in text, text
    assert 'group="gpu",namespace="ns",state="requested"' not in text, "no autoscaler, no ask"
