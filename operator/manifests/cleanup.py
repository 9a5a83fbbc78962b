"""PURE: the pod that removes GCS state from Redis (`serveplane.runtime redis-cleanup`): a deleted ServeCluster's,
or that of generations an upgrade retired. The namespaces it cleans are in its NAMESPACES_ANNOTATION too, so the
operator knows what a finished clean-up removed.

It has no owner reference: it runs while its ServeCluster is being deleted, and a garbage collector deleting in the
foreground would remove it with the cluster's other dependents. The operator deletes it once it succeeded.
"""
from __future__ import annotations

from typing import Any

from ..api.cluster import GcsFaultToleranceSpec
from . import common, rayenv
from .pods import SECURITY_CONTEXT

COMPONENT = "redis-cleanup"
# Read by serveplane.runtime's redis-cleanup (runtime/redis_cleanup.py, the same name): a comma-separated list.
NAMESPACES_ENV = "SERVEPLANE_REDIS_NAMESPACES"
NAMESPACES_ANNOTATION = "serveplane.dev/redis-namespaces"


def cleanup_pod_name(cluster: str) -> str:
    return f"{cluster}-redis-cleanup"


def is_cleanup_pod(pod: dict[str, Any]) -> bool:
    return (pod["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == COMPONENT


def cleaned_namespaces(pod: dict[str, Any]) -> set[str]:
    listed = (pod["metadata"].get("annotations") or {}).get(NAMESPACES_ANNOTATION, "")
    return {n for n in listed.split(",") if n}


def redis_cleanup_pod(
    *, cluster: str, namespace: str, uid: str, ft: GcsFaultToleranceSpec, image: str, namespaces: list[str]
) -> dict[str, Any]:
    listed = ",".join(sorted(namespaces))
    env = [e for e in rayenv.redis_env(ft, uid) if e["name"] != "RAY_external_storage_namespace"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": cleanup_pod_name(cluster),
            "namespace": namespace,
            "labels": common.labels(cluster, COMPONENT),
            "annotations": {NAMESPACES_ANNOTATION: listed, common.OWNER_UID_ANNOTATION: uid},
        },
        "spec": {
            # A Redis that is briefly away must not leave the cluster's keys behind: the kubelet retries.
            "restartPolicy": "OnFailure",
            "enableServiceLinks": False,
            "containers": [
                {
                    "name": "redis-cleanup",
                    "image": image,
                    "command": ["python", "-m", "serveplane.runtime", "redis-cleanup"],
                    "env": [*env, {"name": NAMESPACES_ENV, "value": listed}],
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                    "securityContext": SECURITY_CONTEXT,
                }
            ],
        },
    }
