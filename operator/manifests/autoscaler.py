"""PURE: what Ray's autoscaler needs on a ServeCluster with spec.autoscaling.enabled.

The autoscaler runs in a container of its own beside the head (`python -m serveplane.runtime autoscaler`), under a
ServiceAccount of the cluster's own, bound to the chart's autoscaler ClusterRole (read this namespace's pods and
its ServeCluster, patch the ServeCluster's status; nothing else). Only that container gets the account's token,
through a projected volume: the Ray container, which runs users' code, gets none. Every Ray node tells Ray which
pod and group it is (RAY_CLOUD_INSTANCE_ID, RAY_NODE_TYPE_NAME), which is how the autoscaler ties Ray's nodes to
pods; the head starts no autoscaler of Ray's own (--no-monitor).
"""
from __future__ import annotations

from typing import Any

from ..api.base import API_VERSION
from . import common

CONTAINER = "autoscaler"
HEAD_NODE_TYPE = "head"
TOKEN_VOLUME = "autoscaler-token"
# Where in-cluster clients (Ray's own included) look for the ServiceAccount's token, CA and namespace.
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3600
V2_ENV = {"name": "RAY_enable_autoscaler_v2", "value": "1"}
DEFAULT_CLUSTER_ROLE = "serveplane-autoscaler"


def account_name(cluster: str) -> str:
    return f"{cluster}-autoscaler"


def node_env(node_type: str) -> list[dict[str, Any]]:
    """What ties a Ray node to its pod and group for the autoscaler (Ray reads these when it starts)."""
    return [
        {"name": "RAY_CLOUD_INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "RAY_NODE_TYPE_NAME", "value": node_type},
        V2_ENV,
    ]


def service_account(*, cluster: str, namespace: str, uid: str) -> dict[str, Any]:
    meta = common.metadata(name=account_name(cluster), namespace=namespace, cluster=cluster, uid=uid,
                           component="autoscaler")
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False}


def role_binding(*, cluster: str, namespace: str, uid: str, cluster_role: str) -> dict[str, Any]:
    meta = common.metadata(name=account_name(cluster), namespace=namespace, cluster=cluster, uid=uid,
                           component="autoscaler")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": account_name(cluster), "namespace": namespace}],
    }


def _token_volume() -> dict[str, Any]:
    return {
        "name": TOKEN_VOLUME,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_SECONDS}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [
                    {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
                ]}},
            ]
        },
    }


def add_to_head(
    pod: dict[str, Any], *, cluster: str, namespace: str, generation: str, ray_env: list[dict[str, Any]]
) -> None:
    """The autoscaler's container, its token volume and ServiceAccount, on a head pod; `ray_env` is the Ray
    container's environment (the auth token among it: the autoscaler talks to the GCS like any Ray client)."""
    env = [e for e in ray_env if e["name"] in ("POD_NAME", "POD_NAMESPACE", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")]
    env += [
        {"name": "SERVEPLANE_CLUSTER", "value": cluster},
        {"name": "SERVEPLANE_GENERATION", "value": generation},
        # What it reads and writes, named here so the runtime repeats none of the operator's API or labels.
        {"name": "SERVEPLANE_CLUSTER_PATH",
         "value": f"/apis/{API_VERSION}/namespaces/{namespace}/serveclusters/{cluster}"},
        {"name": "SERVEPLANE_POD_SELECTOR",
         "value": f"{common.CLUSTER_LABEL}={cluster},{common.GENERATION_LABEL}={generation}"},
        {"name": "SERVEPLANE_GCS_ADDRESS", "value": f"127.0.0.1:{common.GCS_PORT}"},
        V2_ENV,
    ]
    ray = pod["spec"]["containers"][0]
    pod["spec"]["containers"].append({
        "name": CONTAINER,
        "image": ray["image"],
        "command": ["python", "-m", "serveplane.runtime", "autoscaler"],
        "env": env,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [{"name": TOKEN_VOLUME, "mountPath": TOKEN_PATH, "readOnly": True}],
        **({"securityContext": ray["securityContext"]} if ray.get("securityContext") else {}),
    })
    pod["spec"].setdefault("volumes", []).append(_token_volume())
    pod["spec"]["serviceAccountName"] = account_name(cluster)
    pod["spec"]["automountServiceAccountToken"] = False
