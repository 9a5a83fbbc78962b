"""PURE: the Ray cluster's pods: KubeRay's head and worker groups -> the ServeCluster's head and workerGroups.

The Ray container's image, resources and env and the `ray start` flags map to the groups' fields; the rest of a pod
template goes to their podTemplate as it is, but for what serveplane owns (command, probes, preStop, Ray's ports).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ..api.cluster import RAY_CONTAINER
from ..manifests import common
from .dispatch import dispatch, off_or_note
from .mapping import dig, errors
from .names import k8s_name
from .outputs import Output, child

# `ray start` flags serveplane's runtime sets itself and refuses from rayStartParams (runtime/args.py:
# RESERVED_RAY_PARAMS; the operator may not import the runtime, a unit test keeps the two equal).
RESERVED_RAY_PARAMS = frozenset(
    {"address", "block", "dashboard-host", "dashboard-port", "head", "metrics-export-port", "node-ip-address",
     "port", "temp-dir"}
)
# The ports serveplane's Ray container declares itself (manifests/pods.py), by name and number.
OPERATOR_PORTS = {
    "gcs": common.GCS_PORT,
    "dashboard": common.DASHBOARD_PORT,
    "client": common.CLIENT_PORT,
    "agent": common.AGENT_PORT,
    "metrics": common.METRICS_PORT,
}


_CONTAINER_REASONS = {
    "command": "serveplane's runtime starts Ray (python -m serveplane.runtime); `ray start` flags go in rayStartParams",
    "args": "serveplane's runtime starts Ray (python -m serveplane.runtime); `ray start` flags go in rayStartParams",
    "lifecycle": "serveplane's preStop hook drains the node through its agent; this one would replace it",
    "readinessProbe": "serveplane's probes ask its node agent (/readyz)",
    "livenessProbe": "serveplane's probes ask its node agent (/livez)",
    "startupProbe": "serveplane's probes ask its node agent",
}


@dataclass
class Node:
    """A head or worker group being converted: its HeadSpec/WorkerGroupSpec fields and its Ray container's image."""

    path: str
    out: Output
    consumed: frozenset[str]
    """Input paths already mapped elsewhere (GCS fault tolerance's env and flags)."""
    serve_ports: frozenset[int]
    spec: dict[str, Any] = field(default_factory=dict)
    image: str | None = None
    ray_container: dict[str, Any] = field(default_factory=dict)
    sidecars: list[Any] = field(default_factory=list)
    pod: dict[str, Any] = field(default_factory=dict)
    pod_metadata: dict[str, Any] = field(default_factory=dict)


def _ports(ports: Any, path: str, node: Node) -> None:
    """KubeRay's samples declare Ray's ports on the container; serveplane declares those itself. Other ports (a
    user's own server's) are kept."""
    if not isinstance(ports, list):
        node.out.note(path, "ports must be a list")
        return
    if not ports:
        node.out.map(path)
    kept = []
    taken = {str(p) for p in set(OPERATOR_PORTS.values()) | node.serve_ports}
    for index, port in enumerate(ports):
        where = child(path, index)
        number, name = str(dig(port, "containerPort")), str(dig(port, "name"))
        if isinstance(port, dict) and (number in taken or name in OPERATOR_PORTS):
            node.out.note(where, f"{port.get('name', 'port')} {port.get('containerPort')}: serveplane's Ray "
                          "container declares Ray's and Serve's ports itself")
        else:
            kept.append(port)
            node.out.map(where)
    if kept:
        node.ray_container["ports"] = kept


def _env(env: Any, path: str, node: Node) -> None:
    if not isinstance(env, list):
        node.out.note(path, "env must be a list")
        return
    kept = []
    for index, item in enumerate(env):
        where = child(path, index)
        if where not in node.consumed:
            kept.append(item)
            node.out.map(where)
    if not env:
        node.out.map(path)
    if kept:
        node.spec["env"] = kept


def _ray_container(container: Any, path: str, node: Node) -> None:
    """KubeRay's first container is Ray's: its image, resources and env map to the group's fields, what
    serveplane owns (command, probes, preStop, Ray's ports) is noted, the rest goes to the podTemplate's `ray`."""
    def image(value: Any, where: str) -> None:
        node.image = value
        node.out.map(where)

    def resources(value: Any, where: str) -> None:
        node.spec["resources"] = value
        node.out.map(where)

    def extra(key: str, value: Any, where: str) -> None:
        node.ray_container[key] = value
        node.out.map(where)

    handlers: dict[str, Callable[[Any, str], None]] = {
        "name": lambda v, w: node.out.map(w),  # serveplane's Ray container is always called `ray`
        "image": image,
        "resources": resources,
        "env": lambda v, w: _env(v, w, node),
        "ports": lambda v, w: _ports(v, w, node),
    }
    dispatch(container, path, node.out, handlers, _CONTAINER_REASONS, "container", otherwise=extra)


def _containers(containers: Any, path: str, node: Node) -> None:
    if not isinstance(containers, list) or not containers:
        node.out.note(path, "a pod template needs its Ray container first")
        return
    _ray_container(containers[0], child(path, 0), node)
    sidecars = []
    for index, sidecar in enumerate(containers[1:], start=1):
        if isinstance(sidecar, dict) and sidecar.get("name") == RAY_CONTAINER:
            node.out.note(child(path, index), f"a sidecar named {RAY_CONTAINER} would merge into serveplane's Ray "
                          "container; rename it")
            continue
        sidecars.append(sidecar)
        node.out.map(child(path, index))
    node.sidecars = sidecars


def _pod_spec(spec: Any, path: str, node: Node) -> None:
    """Every field of the pod spec but `containers` goes to the podTemplate as it is (nodeSelector, tolerations,
    affinity, volumes, serviceAccountName, ...): the podTemplate merges them into serveplane's pod."""
    def keep(key: str, value: Any, where: str) -> None:
        node.pod[key] = value
        node.out.map(where)

    handlers = {"containers": lambda v, w: _containers(v, w, node)}
    dispatch(spec, path, node.out, handlers, {}, "pod template spec", otherwise=keep)


def _template(template: Any, path: str, node: Node) -> None:
    def metadata(value: Any, where: str) -> None:
        reasons = {k: "serveplane names its pods itself" for k in ("name", "generateName", "namespace")}
        dispatch(value, where, node.out, {"labels": keep, "annotations": keep}, reasons, "pod template metadata")

    def keep(value: Any, where: str) -> None:
        node.pod_metadata[where.rpartition(".")[2]] = value
        node.out.map(where)

    dispatch(template, path, node.out, {"metadata": metadata, "spec": lambda v, w: _pod_spec(v, w, node)}, {},
              "pod template")


def _pod_template(node: Node, cluster_image: str | None) -> dict[str, Any] | None:
    """The podTemplate of a group: what _template kept, the Ray container's extras in an entry named `ray`."""
    ray = dict(node.ray_container)
    if node.image is not None and node.image != cluster_image:
        ray["image"] = node.image
    spec = dict(node.pod)
    containers = ([{"name": RAY_CONTAINER, **ray}] if ray else []) + node.sidecars
    if containers:
        spec["containers"] = containers
    template: dict[str, Any] = {}
    if spec:
        template["spec"] = spec
    if node.pod_metadata:
        template["metadata"] = node.pod_metadata
    return template or None


def _ray_start_params(params: Any, path: str, node: Node) -> None:
    """`ray start` flags, as strings (YAML may have made numbers or booleans of them); the runtime's own refused."""
    if not isinstance(params, dict):
        node.out.note(path, "rayStartParams must be a map")
        return
    kept: dict[str, str] = {}
    for key, value in params.items():
        where = child(path, str(key))
        if where in node.consumed:
            continue
        if key in RESERVED_RAY_PARAMS:
            node.out.note(where, "serveplane's runtime sets this `ray start` flag itself")
            continue
        kept[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
        node.out.map(where)
    if not params:
        node.out.map(path)
    if kept:
        node.spec["ray_start_params"] = kept


_GROUP_REASONS = {
    "resources": "ServeCluster has no Ray resources override per group: put num-cpus, num-gpus, memory or resources "
    "in rayStartParams",
    "labels": "ServeCluster has no Ray node labels per group: put them in rayStartParams (labels)",
}
_HEAD_REASONS = {
    **_GROUP_REASONS,
    "serviceType": "serveplane's head Service is always ClusterIP (spec.service.type is the serve Service's)",
    "headService": "serveplane builds the head Service itself (<name>-head)",
}


def _node(group: Any, path: str, node: Node, extra: Mapping[str, Callable[[Any, str], None]],
          reasons: Mapping[str, str], what: str) -> None:
    handlers = {
        "rayStartParams": lambda v, w: _ray_start_params(v, w, node),
        "template": lambda v, w: _template(v, w, node),
        **extra,
    }
    dispatch(group, path, node.out, handlers, reasons, what)


def head(group: Any, node: Node) -> None:
    """HeadSpec fields of KubeRay's headGroupSpec, into `node`."""
    extra = {
        "enableIngress": lambda v, w: off_or_note(
            v, w, node.out, "serveplane's Ingress (spec.ingress) routes to the applications, not to the dashboard"
        ),
    }
    _node(group, node.path, node, extra, _HEAD_REASONS, "headGroupSpec")


def _replicas(group: Mapping[str, Any], path: str, node: Node) -> None:
    """KubeRay's replicas clamped to [minReplicas, maxReplicas] as KubeRay does (absent: minReplicas)."""
    low, high, wanted = group.get("minReplicas"), group.get("maxReplicas"), group.get("replicas")
    replicas = wanted if wanted is not None else low or 0
    if isinstance(high, int) and isinstance(low, int) and low > high:
        node.out.forget(child(path, "minReplicas"))
        node.out.note(child(path, "minReplicas"), "above maxReplicas (KubeRay then runs maxReplicas)")
        low = None
    if isinstance(high, int) and isinstance(replicas, int):
        replicas = min(replicas, high)
    if isinstance(low, int) and isinstance(replicas, int):
        replicas = max(replicas, low)
    if wanted is not None and replicas != wanted:
        node.out.remark(f"{child(path, 'replicas')}: KubeRay runs {replicas} (between minReplicas and maxReplicas), "
                        "written so")
    node.spec["replicas"] = replicas
    if low is not None:
        node.spec["min_replicas"] = low
    if high is not None:
        node.spec["max_replicas"] = high


def worker_group(group: Any, node: Node, names: set[str]) -> None:
    """WorkerGroupSpec fields of one entry of KubeRay's workerGroupSpecs, into `node`."""
    def name(value: Any, where: str) -> None:
        node.spec["name"] = k8s_name(str(value))[:30].strip("-")
        if node.spec["name"] != value:
            node.out.remark(f"{where}: worker group {value} is named {node.spec['name']}")
        node.out.map(where)

    def counted(value: Any, where: str) -> None:
        node.out.map(where)  # read by _replicas, with the others

    def hosts(value: Any, where: str) -> None:
        off_or_note(value, where, node.out, "serveplane runs one pod per Ray node: a multi-host group (a TPU "
                     "slice) has no equivalent", off=1)

    extra = {
        "groupName": name, "replicas": counted, "minReplicas": counted, "maxReplicas": counted, "numOfHosts": hosts,
        "suspend": lambda v, w: off_or_note(v, w, node.out, "a worker group cannot be suspended: set replicas 0"),
        "scaleStrategy": lambda v, w: off_or_note(
            v, w, node.out, "KubeRay's autoscaler's state; serveplane's autoscaler keeps its choice in status", off={}
        ),
    }
    reasons = {
        **_GROUP_REASONS,
        "idleTimeoutSeconds": "serveplane's autoscaler has one idle timeout (spec.autoscaling.idleTimeoutSeconds)",
    }
    _node(group, node.path, node, extra, reasons, "workerGroupSpec")
    if isinstance(group, dict):
        _replicas(group, node.path, node)
        if node.spec.get("name") in names:
            node.spec["name"] = f"{node.spec['name'][:27]}-{len(names)}"
        names.add(str(node.spec.get("name")))


def group_spec(model: type[BaseModel], node: Node, cluster_image: str | None) -> dict[str, Any] | None:
    """The HeadSpec/WorkerGroupSpec of a converted group (by field name), or None (noted) if its model refuses it."""
    data = dict(node.spec)
    template = _pod_template(node, cluster_image)
    if template:
        data["pod_template"] = template
    try:
        model.model_validate(data)
    except ValidationError as error:
        node.out.forget(node.path)
        node.out.note(node.path, f"{model.__name__} refuses it: {errors(error)}")
        return None
    return data
