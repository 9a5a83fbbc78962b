"""PURE: the NetworkPolicy guarding a ServeCluster's Ray pods (`<cluster>-ray`), built by the planner.

Ingress to the cluster's Ray pods is allowed only:
  - to Serve's HTTP and gRPC ports, from anywhere (the users' traffic);
  - to every port, from the cluster's own Ray pods (Ray's node-to-node traffic uses the GCS, the raylet's and
    object manager's ports and a range of worker ports, mostly dynamic);
  - to Ray's fixed ports (GCS, dashboard, client, agent, metrics), from the operator's pods (it calls the dashboard);
  - to the metrics port, from the peers the operator is configured with (Prometheus).
The kubelet's probes come from the node itself, which NetworkPolicy implementations (Calico, Cilium, ...) allow
to reach the node's own pods. Only a CNI that implements NetworkPolicy enforces any of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.cluster import ServeClusterSpec
from . import common

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace: selects a namespace by its name."""

RAY_PORTS = (
    ("gcs", common.GCS_PORT),
    ("dashboard", common.DASHBOARD_PORT),
    ("client", common.CLIENT_PORT),
    ("agent", common.AGENT_PORT),
    ("metrics", common.METRICS_PORT),
)


@dataclass(frozen=True)
class Access:
    """Who besides the cluster's own pods may reach Ray's ports: the operator's settings (the chart sets them)."""

    operator_namespace: str = "serveplane-system"
    operator_pod_labels: dict[str, str] = field(
        default_factory=lambda: {"app.kubernetes.io/name": "serveplane", "app.kubernetes.io/component": "operator"}
    )
    metrics_sources: tuple[dict[str, Any], ...] = ()
    """NetworkPolicyPeers (e.g. Prometheus's namespace) allowed to scrape the metrics port."""


def _ports(ports: list[int]) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def network_policy(*, cluster: str, namespace: str, uid: str, spec: ServeClusterSpec, access: Access) -> dict[str, Any]:
    meta = common.metadata(
        name=common.network_policy_name(cluster), namespace=namespace, cluster=cluster, uid=uid, component="network"
    )
    operator = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: access.operator_namespace}},
        "podSelector": {"matchLabels": dict(access.operator_pod_labels)},
    }
    rules: list[dict[str, Any]] = [
        {"ports": _ports([spec.serve.http_port, spec.serve.grpc_port])},
        {"from": [{"podSelector": {"matchLabels": common.selector(cluster)}}]},
        {"from": [operator], "ports": _ports([port for _, port in RAY_PORTS])},
    ]
    if access.metrics_sources:
        rules.append({"from": [dict(peer) for peer in access.metrics_sources], "ports": _ports([common.METRICS_PORT])})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": {"matchLabels": common.selector(cluster)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }
