"""The three kinds of the API: their models, names and how kubectl shows them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .application import ServeApplicationSpec, ServeApplicationStatus
from .base import GROUP, VERSION
from .cluster import NAME_RULES, ServeClusterSpec, ServeClusterStatus
from .deployment import ServeDeploymentSpec, ServeDeploymentStatus

CATEGORY = "serveplane"


def _condition(kind: str) -> str:
    return f'.status.conditions[?(@.type=="{kind}")].status'


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: list[str]
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: list[dict[str, Any]]
    scale: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    create_rules: tuple[tuple[str, str], ...] = ()
    """CEL rules on the whole object, (rule, message), checked when it is created: what its metadata.name must be."""

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{VERSION}"


AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
READY = {"name": "Ready", "type": "string", "jsonPath": _condition("Ready")}
REASON = {"name": "Status", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'}

SERVE_CLUSTER = Kind(
    kind="ServeCluster",
    plural="serveclusters",
    short_names=["scl"],
    description="A Ray cluster (a head pod and worker pods, one pod per Ray node) that runs Ray Serve: the head "
    "runs Serve's controller and every pod a Serve proxy, exposed by a Service and an optional Ingress.",
    spec=ServeClusterSpec,
    status=ServeClusterStatus,
    columns=[
        REASON,
        READY,
        {"name": "Nodes", "type": "integer", "jsonPath": ".status.readyNodes"},
        {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredNodes"},
        {"name": "Proxies", "type": "integer", "jsonPath": ".status.healthyProxies"},
        {"name": "Generation", "type": "string", "jsonPath": ".status.activeGeneration"},
        {"name": "Upgrade", "type": "string", "jsonPath": ".status.upgrade.step"},
        {"name": "Head", "type": "string", "jsonPath": ".status.headPod", "priority": 1},
        AGE,
    ],
    create_rules=NAME_RULES,
)

SERVE_APPLICATION = Kind(
    kind="ServeApplication",
    plural="serveapplications",
    short_names=["sapp"],
    description="One Ray Serve application (import path, route prefix, args, runtime env) on a ServeCluster; "
    "many applications share one cluster, each at its own route prefix.",
    spec=ServeApplicationSpec,
    status=ServeApplicationStatus,
    columns=[
        REASON,
        READY,
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.cluster"},
        {"name": "Route", "type": "string", "jsonPath": ".status.routePrefix"},
        {"name": "Serve", "type": "string", "jsonPath": ".status.serveStatus"},
        {"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1},
        AGE,
    ],
)

SERVE_DEPLOYMENT = Kind(
    kind="ServeDeployment",
    plural="servedeployments",
    short_names=["sdep"],
    description="Settings of one deployment of a ServeApplication (replicas, autoscaling, actor options, user "
    "config); `kubectl scale` sets its numReplicas.",
    spec=ServeDeploymentSpec,
    status=ServeDeploymentStatus,
    columns=[
        REASON,
        READY,
        {"name": "Application", "type": "string", "jsonPath": ".spec.application"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Desired", "type": "integer", "jsonPath": ".spec.numReplicas"},
        {"name": "Serve", "type": "string", "jsonPath": ".status.serveStatus"},
        AGE,
    ],
    scale={"specReplicasPath": ".spec.numReplicas", "statusReplicasPath": ".status.replicas"},
)

KINDS: tuple[Kind, ...] = (SERVE_CLUSTER, SERVE_APPLICATION, SERVE_DEPLOYMENT)


# The plurals the operator's store and planner key objects by: its own kinds, and the core kinds it owns.
CLUSTERS, APPS, DEPLOYMENTS = SERVE_CLUSTER.plural, SERVE_APPLICATION.plural, SERVE_DEPLOYMENT.plural
PODS, SERVICES, INGRESSES = "pods", "services", "ingresses"
SECRETS, NETWORKPOLICIES = "secrets", "networkpolicies"
# The autoscaler's ServiceAccount and RoleBinding (spec.autoscaling).
SERVICEACCOUNTS, ROLEBINDINGS = "serviceaccounts", "rolebindings"
