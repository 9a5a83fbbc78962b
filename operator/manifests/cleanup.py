"""PURE: the pod that removes a deleted ServeCluster's GCS state from Redis (`serveplane.runtime redis-cleanup`).

It has no owner reference: it runs while its ServeCluster is being deleted, and a garbage collector deleting in the
foreground would remove it with the cluster's other dependents. The operator deletes it once it succeeded.
"""
from __future__ import annotations

from typing import Any

from ..api.cluster import GcsFaultToleranceSpec
from . import common, rayenv
from .pods import SECURITY_CONTEXT

COMPONENT = "redis-cleanup"


def cleanup_pod_name(cluster: str) -> str:
    return f"{cluster}-redis-cleanup"


def is_cleanup_pod(pod: dict[str, Any]) -> bool:
    return (pod["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == COMPONENT


def redis_cleanup_pod(
    *, cluster: str, namespace: str, uid: str, ft: GcsFaultToleranceSpec, image: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": cleanup_pod_name(cluster),
            "namespace": namespace,
            "labels": common.labels(cluster, COMPONENT),
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
                    "env": rayenv.redis_env(ft, uid),
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                    "securityContext": SECURITY_CONTEXT,
                }
            ],
        },
    }
