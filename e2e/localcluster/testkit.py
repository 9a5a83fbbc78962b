"""Small helpers the integration and e2e tests share: bounded waiting, reading objects and conditions, and finding
a ServeCluster's Ray pods by their labels (their names carry the generation's hash, `<cluster>-<gen>-head`)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .controlplane import ControlPlane

# The labels the operator puts on every Ray pod (operator/manifests/common.py), written out here: the tests find
# pods as a user would, by the labels the operator documents, not through the operator's code.
CLUSTER_LABEL = "serveplane.dev/cluster"
NODE_TYPE_LABEL = "serveplane.dev/node-type"
GROUP_LABEL = "serveplane.dev/worker-group"
GENERATION_LABEL = "serveplane.dev/generation"


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll `probe` until it returns something truthy (returned), or fail naming `what` and the last answer.

    OSError, KeyError and ValueError from the probe count as "not yet": a server still starting, a field
    not written yet.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, KeyError, ValueError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


def get_object(
    cp: ControlPlane, kind: str, name: str, namespace: str | None = None, *extra: str
) -> dict[str, Any] | None:
    """The object as `kubectl get -o json` shows it, or None when it does not exist."""
    args = ["get", kind, name, "-o", "json", *extra] + (["-n", namespace] if namespace else [])
    result = cp.kubectl(*args, check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition of type `kind` in the object's status, or {}."""
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return item
    return {}


def ray_pod_selector(cluster: str, node_type: str | None = None, group: str | None = None) -> str:
    """The kubectl label selector of a ServeCluster's Ray pods (not its Redis clean-up pod): all of them, its head
    (`node_type="head"`) or its workers, of one group with `group`."""
    parts = [f"{CLUSTER_LABEL}={cluster}", f"{NODE_TYPE_LABEL}={node_type}" if node_type else NODE_TYPE_LABEL]
    if group is not None:
        parts.append(f"{GROUP_LABEL}={group}")
    return ",".join(parts)


def ray_pods(
    cp: ControlPlane, cluster: str, namespace: str, node_type: str | None = None, group: str | None = None
) -> list[dict[str, Any]]:
    """A ServeCluster's Ray pods found by their labels, terminating ones included, by name (see ray_pod_selector)."""
    selector = ray_pod_selector(cluster, node_type, group)
    out = cp.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    return sorted(json.loads(out)["items"], key=lambda p: str(p["metadata"]["name"]))


def worker_pods(cp: ControlPlane, cluster: str, namespace: str, group: str | None = None) -> list[dict[str, Any]]:
    """A ServeCluster's worker pods (of one group with `group`), by name."""
    return ray_pods(cp, cluster, namespace, "worker", group)


def head_pod(cp: ControlPlane, cluster: str, namespace: str, generation: str | None = None) -> dict[str, Any] | None:
    """A ServeCluster's head pod (terminating or not), found by its labels, or None while it has none.

    A replaced head (its pod deleted) comes back under the same name, so a new head is told by its UID. With
    `generation`, that generation's head; without it, the cluster must have a single head: two heads mean an
    upgrade is under way, which a test not expecting one must not silently read past.
    """
    heads = [
        p for p in ray_pods(cp, cluster, namespace, "head")
        if generation is None or (p["metadata"].get("labels") or {}).get(GENERATION_LABEL) == generation
    ]
    assert len(heads) <= 1, f"{cluster} has several head pods: {[p['metadata']['name'] for p in heads]}"
    return heads[0] if heads else None


def head_pod_name(cp: ControlPlane, cluster: str, namespace: str) -> str:
    """The name of a ServeCluster's head pod, waiting (a minute at most) for there to be one."""
    head = wait_for(f"the head pod of {cluster}", lambda: head_pod(cp, cluster, namespace))
    return str(head["metadata"]["name"])


def generation_of(pod: dict[str, Any]) -> str:
    """The generation a Ray pod belongs to (its label; "" for a pod made before generations)."""
    return str((pod["metadata"].get("labels") or {}).get(GENERATION_LABEL, ""))
