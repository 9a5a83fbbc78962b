"""Register Node objects so the real scheduler has somewhere to place pods.

There is no kubelet: the Nodes are plain API objects whose status we write
ourselves. The node-lifecycle controller is disabled (see controlplane.py), so
nothing marks them NotReady for a missing heartbeat; ``ensure_ready`` can
re-assert the status anyway if a test changed it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping

from .rest import ApiClient

DEFAULT_NODE_NAMES = ("node-1",)
DEFAULT_CAPACITY: Mapping[str, str] = {
    "cpu": "16",
    "memory": "32Gi",
    "pods": "110",
    "ephemeral-storage": "100Gi",
}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(name: str, capacity: Mapping[str, str]) -> dict:
    now = _now()

    def condition(kind: str, status: str, reason: str) -> dict:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": "serveplane local node (no kubelet)",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "capacity": dict(capacity),
        "allocatable": dict(capacity),
        "conditions": [
            condition("Ready", "True", "KubeletReady"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": name},
        ],
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": "serveplane-local",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "none://",
            "osImage": "serveplane local control plane",
            "kernelVersion": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def _check(status: int, body: object, what: str) -> None:
    if status >= 300:
        raise RuntimeError(f"{what}: HTTP {status}: {body}")


def register(
    api: ApiClient, names: Iterable[str] = DEFAULT_NODE_NAMES, capacity: Mapping[str, str] = DEFAULT_CAPACITY
) -> None:
    """Create each Node (if missing) and mark it Ready with generous allocatable."""
    for name in names:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
        }
        status, body = api.request("POST", "/api/v1/nodes", node)
        if status != 409:
            _check(status, body, f"create node {name}")
        set_ready(api, name, capacity)


def set_ready(api: ApiClient, name: str, capacity: Mapping[str, str] = DEFAULT_CAPACITY) -> None:
    # The status subresource ignores status sent with the create, so it is a second call.
    status, body = api.request(
        "PATCH",
        f"/api/v1/nodes/{name}/status",
        {"status": _status(name, capacity)},
        content_type="application/merge-patch+json",
    )
    _check(status, body, f"set status of node {name}")


def ensure_ready(api: ApiClient, names: Iterable[str] = DEFAULT_NODE_NAMES) -> None:
    """Re-assert Ready on every named Node (creating any that went missing)."""
    register(api, names)
