"""PURE: what Ray's autoscaler (autoscaler.py) needs to know of a ServeCluster, and how its decisions become the
ServeCluster's status.autoscaler.

The operator publishes each worker group's bounds and Ray resources in status.workerGroups (it derives them from
the spec exactly as it builds the pods); this module reads them back into Ray's autoscaling config, and turns
launch and terminate requests into per-group asks, capped by maxReplicas, with the pods chosen to go named.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HEAD_NODE_TYPE = "head"
# Ray's config schema knows its own providers and "external" ones, named by a module; the autoscaler takes
# serveplane's provider object directly (autoscaler.ServeplaneAutoscaler), so Ray never loads this name.
PROVIDER_MODULE = "serveplane.runtime.autoscaler.Provider"
# Ray's node-provider flags (ray.autoscaler._private.constants): pods are made by the operator, which runs Ray in
# them itself; Ray neither installs nor restarts anything, nor checks launch configs.
PROVIDER_FLAGS = {
    "disable_node_updaters": True,
    "disable_launch_config_check": True,
    "foreground_node_launch": True,
    "worker_liveness_check": False,
}
# Fields of the older autoscaler's config schema that Ray still validates; empty for pods.
LEGACY_FIELDS: dict[str, Any] = {
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
    "auth": {},
}


class NotReady(Exception):
    """The ServeCluster's status does not describe its groups yet (the operator has not written it)."""


def groups(cluster: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """status.workerGroups by name."""
    return {g["name"]: g for g in (cluster.get("status") or {}).get("workerGroups") or []}


def autoscaling_config(cluster: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """Ray's autoscaling config for a ServeCluster: one node type per worker group, sized by the Ray resources the
    operator gives its pods, bounded by its minReplicas and maxReplicas."""
    spec = cluster.get("spec") or {}
    found = groups(cluster)
    missing = [g["name"] for g in spec.get("workerGroups") or [] if g["name"] not in found]
    if missing:
        raise NotReady(f"status.workerGroups lacks {missing}")
    autoscaling = spec.get("autoscaling") or {}
    types: dict[str, Any] = {HEAD_NODE_TYPE: {"min_workers": 0, "max_workers": 0, "node_config": {}, "resources": {}}}
    for name, group in found.items():
        types[name] = {
            "min_workers": int(group.get("minReplicas", 0)),
            "max_workers": int(group.get("maxReplicas", 0)),
            "node_config": {},
            "resources": {k: float(v) for k, v in (group.get("rayResources") or {}).items()},
        }
    idle = autoscaling.get("idleTimeoutSeconds")
    return {
        "provider": {"type": "external", "module": PROVIDER_MODULE, "namespace": namespace, **PROVIDER_FLAGS},
        "cluster_name": cluster["metadata"]["name"],
        "head_node_type": HEAD_NODE_TYPE,
        "available_node_types": types,
        "max_workers": sum(t["max_workers"] for t in types.values()),
        "idle_timeout_minutes": None if idle is None else float(idle) / 60.0,
        "upscaling_speed": float(autoscaling.get("upscalingSpeed", 1.0)),
        **LEGACY_FIELDS,
    }


@dataclass(frozen=True)
class Node:
    """A Ray pod as the autoscaler sees it."""

    pod: str
    node_type: str
    running: bool


def node_of(pod: Mapping[str, Any], container: str = "ray") -> Node | None:
    """A pod's node type is what its Ray container tells Ray (RAY_NODE_TYPE_NAME); None for a pod without one, or
    one being deleted (gone, as far as the autoscaler is concerned)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    spec_containers = (pod.get("spec") or {}).get("containers") or []
    ray = next((c for c in spec_containers if c.get("name") == container), None)
    node_type = next((e.get("value") for e in (ray or {}).get("env") or [] if e.get("name") == "RAY_NODE_TYPE_NAME"),
                     None)
    if not node_type:
        return None
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    state = next((s.get("state") or {} for s in statuses if s.get("name") == container), {})
    return Node(pod=pod["metadata"]["name"], node_type=node_type, running="running" in state)


@dataclass
class Asks:
    """Per group: the workers asked for and the pods chosen to go."""

    replicas: dict[str, int] = field(default_factory=dict)
    to_delete: dict[str, list[str]] = field(default_factory=dict)

    def wire(self, generation: str) -> dict[str, Any]:
        return {
            "generation": generation,
            "groups": {
                name: {"replicas": count, "workersToDelete": sorted(self.to_delete.get(name, []))}
                for name, count in sorted(self.replicas.items())
            },
        }


def current_asks(cluster: Mapping[str, Any], nodes: Iterable[Node], generation: str) -> Asks:
    """Where the asks stand: this generation's autoscaler's last ones, else what the operator runs (a new
    autoscaler starts from the pods as they are); pods chosen to go that are gone are forgotten."""
    live = {n.pod for n in nodes}
    stored = (cluster.get("status") or {}).get("autoscaler") or {}
    asked = stored.get("groups") or {}
    asks = Asks()
    for name, group in groups(cluster).items():
        mine = asked.get(name) if isinstance(asked.get(name), Mapping) else None
        if mine is not None and "replicas" in mine:
            asks.replicas[name] = int(mine["replicas"])
        else:
            asks.replicas[name] = int(group.get("desired", 0))
        if mine is not None and stored.get("generation") == generation:
            asks.to_delete[name] = [p for p in mine.get("workersToDelete") or [] if p in live]
    return asks


def launch(cluster: Mapping[str, Any], asks: Asks, shape: Mapping[str, int], nodes: Iterable[Node]) -> dict[str, int]:
    """Add `shape` (node type -> count) to the asks, each group capped by its maxReplicas; returns what the cap
    refused, per group. A group is asked for at least the workers it has (none chosen to go)."""
    bounds = groups(cluster)
    have: dict[str, int] = {}
    doomed = {p for pods in asks.to_delete.values() for p in pods}
    for node in nodes:
        if node.node_type != HEAD_NODE_TYPE and node.pod not in doomed:
            have[node.node_type] = have.get(node.node_type, 0) + 1
    refused: dict[str, int] = {}
    for name, count in shape.items():
        if name not in bounds:
            refused[name] = count
            continue
        start = max(asks.replicas.get(name, 0), have.get(name, 0))
        cap = int(bounds[name].get("maxReplicas", start))
        asks.replicas[name] = min(cap, start + count)
        if start + count > cap:
            refused[name] = start + count - cap
    return refused


def terminate(asks: Asks, pods: Iterable[str], nodes: Iterable[Node]) -> list[str]:
    """Take the chosen worker pods off their groups' asks and name them to go; returns the ids not known as
    workers (the head, or pods already gone)."""
    by_pod = {n.pod: n for n in nodes}
    unknown = []
    for pod in pods:
        node = by_pod.get(pod)
        if node is None or node.node_type == HEAD_NODE_TYPE:
            unknown.append(pod)
            continue
        chosen = asks.to_delete.setdefault(node.node_type, [])
        if pod not in chosen:
            chosen.append(pod)
            asks.replicas[node.node_type] = max(0, asks.replicas.get(node.node_type, 0) - 1)
    return unknown


def describe(before: Asks, after: Asks, why: str) -> str | None:
    """One line for status.autoscaler.lastDecision (and the operator's Event), or None when nothing changed."""
    changes = [
        f"{name} {before.replicas.get(name, 0)} -> {count}"
        for name, count in sorted(after.replicas.items())
        if before.replicas.get(name, 0) != count
    ]
    return f"{', '.join(changes)} workers: {why}" if changes else None
