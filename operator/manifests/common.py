"""PURE: names, labels, ports and owner references shared by every object a ServeCluster owns."""
from __future__ import annotations

from typing import Any

from ..api.base import API_VERSION

CLUSTER_LABEL = "serveplane.dev/cluster"
NODE_TYPE_LABEL = "serveplane.dev/node-type"
GROUP_LABEL = "serveplane.dev/worker-group"
# Set by the operator from Serve's own proxy report; the serve Service selects on it, so traffic goes only
# to pods whose proxy is healthy while pods without replicas (drained proxy) still count as Ready.
PROXY_LABEL = "serveplane.dev/proxy"
PROXY_HEALTHY = "healthy"
# The actor ID of the proxy that was last reported HEALTHY on the pod: tells a proxy that a restarted controller
# re-discovers (the same actor) from a new one after the node's Ray restarted.
PROXY_ACTOR_LABEL = "serveplane.dev/proxy-actor"
POD_HASH_ANNOTATION = "serveplane.dev/pod-spec-hash"
# The generation of the Ray cluster a pod belongs to (generations.py): a hash of what all its nodes run alike.
GENERATION_LABEL = "serveplane.dev/generation"

GCS_PORT = 6379
DASHBOARD_PORT = 8265
CLIENT_PORT = 10001
AGENT_PORT = 8471
METRICS_PORT = 8080


def head_service_name(cluster: str) -> str:
    return f"{cluster}-head"


def serve_service_name(cluster: str) -> str:
    return f"{cluster}-serve"


def token_secret_name(cluster: str) -> str:
    """The Secret holding the cluster's Ray auth token (key `token`), made by the operator."""
    return f"{cluster}-ray-token"


def network_policy_name(cluster: str) -> str:
    return f"{cluster}-ray"


def generation_head_service_name(cluster: str, generation: str) -> str:
    """The headless Service by which a generation's workers find their own head's GCS."""
    return f"{cluster}-{generation}-head"


def head_pod_name(cluster: str, generation: str) -> str:
    return f"{cluster}-{generation}-head"


def worker_pod_name(cluster: str, generation: str, group: str, index: int) -> str:
    return f"{cluster}-{generation}-worker-{group}-{index}"


def head_address(cluster: str, namespace: str, generation: str) -> str:
    return f"{generation_head_service_name(cluster, generation)}.{namespace}.svc.cluster.local:{GCS_PORT}"


def is_head(pod: dict[str, Any]) -> bool:
    return bool((pod["metadata"].get("labels") or {}).get(NODE_TYPE_LABEL) == "head")


def dashboard_url(cluster: str, namespace: str) -> str:
    return f"http://{head_service_name(cluster)}.{namespace}.svc.cluster.local:{DASHBOARD_PORT}"


def selector(cluster: str) -> dict[str, str]:
    return {CLUSTER_LABEL: cluster}


def labels(cluster: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "ray",
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "serveplane",
        "app.kubernetes.io/managed-by": "serveplane",
        CLUSTER_LABEL: cluster,
    }


OWNER_UID_ANNOTATION = "serveplane.dev/owner-uid"
"""The owner of a dependent that must outlive a foreground deletion of its ServeCluster, and so has no
ownerReference: the Redis clean-up pod."""


def owner_reference(cluster: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServeCluster",
        "name": cluster,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(*, name: str, namespace: str, cluster: str, uid: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels(cluster, component),
        "ownerReferences": [owner_reference(cluster, uid)],
    }
