"""PURE: the head pod and worker pods of a ServeCluster, one pod per Ray node.

The container runs `python -m serveplane.runtime head|worker`, which starts Ray and the node agent; the agent
answers the probes and the preStop drain. Each pod is built the same way for the head and every worker group:
the operator's pod, its podTemplate merged in (podtemplate.py), then what depends on the merged Ray container:
the `ray start` flags its resources imply and the memory-backed /dev/shm (rayresources.py).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..api.cluster import RAY_CONTAINER, EnvVar, HeadSpec, ServeClusterSpec, WorkerGroupSpec
from . import autoscaler, common, podtemplate, rayenv, rayresources

_PORTS = [
    ("gcs", common.GCS_PORT),
    ("dashboard", common.DASHBOARD_PORT),
    ("client", common.CLIENT_PORT),
    ("agent", common.AGENT_PORT),
    ("metrics", common.METRICS_PORT),
]


SHM_VOLUME = "dshm"
SHM_PATH = "/dev/shm"
# Ray needs no privilege (the runtime image runs as uid 1000). Not readOnlyRootFilesystem: Ray writes its session
# under /tmp. Not runAsNonRoot: the kubelet can only check it against a numeric USER, which a user's image may lack.
SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _env(
    given: list[EnvVar], cluster: str, spec: ServeClusterSpec, *, node_type: str, uid: str, generation: str
) -> list[dict[str, Any]]:
    extra = [e.to_wire() for e in given]
    head = node_type == autoscaler.HEAD_NODE_TYPE
    downward: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "SERVEPLANE_CLUSTER", "value": cluster},
        {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
        *rayenv.ray_env(spec, head=head, cluster=cluster, uid=uid, generation=generation),
        *(autoscaler.node_env(node_type) if spec.autoscaling.enabled else []),
    ]
    names = {e["name"] for e in extra}
    return [e for e in downward if e["name"] not in names] + list(extra)


def _args(role: str, spec: ServeClusterSpec, params: dict[str, str], head_address: str | None) -> list[str]:
    args = [
        role,
        f"--agent-port={common.AGENT_PORT}",
        f"--http-port={spec.serve.http_port}",
        f"--metrics-port={common.METRICS_PORT}",
    ]
    if head_address:
        args.append(f"--address={head_address}")
    else:
        args += [f"--port={common.GCS_PORT}", f"--dashboard-port={common.DASHBOARD_PORT}"]
    args += [f"--ray-param={key}={value}" for key, value in sorted(params.items())]
    return args


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": common.AGENT_PORT},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


DRAIN_COMMAND = ["python", "-m", "serveplane.runtime", "drain", f"--agent-port={common.AGENT_PORT}"]
"""The preStop hook: drain the pod's proxy and Serve through the node agent, and wait until it is done."""


def _pod(
    *,
    name: str,
    node: HeadSpec | WorkerGroupSpec,
    namespace: str,
    cluster: str,
    uid: str,
    spec: ServeClusterSpec,
    image: str,
    head_address: str | None,
    extra_labels: dict[str, str],
    generation: str,
) -> dict[str, Any]:
    """One Ray node's pod: the head when `head_address` is None, else a worker joining that head."""
    component = "head" if head_address is None else "worker"
    node_type = node.name if isinstance(node, WorkerGroupSpec) else autoscaler.HEAD_NODE_TYPE
    image = spec.image or image
    meta = common.metadata(name=name, namespace=namespace, cluster=cluster, uid=uid, component=component)
    meta["labels"].update({common.NODE_TYPE_LABEL: component, common.GENERATION_LABEL: generation, **extra_labels})
    container: dict[str, Any] = {
        "name": RAY_CONTAINER,
        "image": image,
        "command": ["python", "-m", "serveplane.runtime"],
        "args": [],  # set once the podTemplate is merged: its resources imply flags
        "env": _env(node.env, cluster, spec, node_type=node_type, uid=uid, generation=generation),
        "ports": [{"name": port_name, "containerPort": port} for port_name, port in _PORTS],
        "readinessProbe": _probe("/readyz", 5, 3),
        # Generous: Ray takes tens of seconds to start on small machines; the agent answers /livez at once.
        "livenessProbe": _probe("/livez", 10, 6),
        # An exec hook: it runs in the pod, so the agent sees the drain come from the pod itself (loopback), which
        # is all it lets drain without the cluster's token; an httpGet hook would come from the node.
        "lifecycle": {"preStop": {"exec": {"command": DRAIN_COMMAND}}},
        "securityContext": SECURITY_CONTEXT,
    }
    if node.resources:
        container["resources"] = node.resources
    built = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 60,
            "enableServiceLinks": False,
            "containers": [container],
        },
    }
    pod = podtemplate.merge(built, node.pod_template)
    ray = pod["spec"]["containers"][0]
    resources = ray.get("resources") or {}
    params = rayresources.ray_start_params(node.ray_start_params, resources)
    if spec.autoscaling.enabled and head_address is None:
        params["no-monitor"] = "true"  # the autoscaler container is the cluster's one autoscaler
    ray["args"] = _args(component, spec, params, head_address)
    _shared_memory(pod, ray, rayresources.shm_size_limit(node.ray_start_params, resources))
    if spec.autoscaling.enabled and head_address is None:
        autoscaler.add_to_head(pod, cluster=cluster, namespace=namespace, generation=generation, ray_env=ray["env"])
    return pod


def _shared_memory(pod: dict[str, Any], ray: dict[str, Any], size_limit: int | None) -> None:
    """A memory-backed /dev/shm for Ray's object store, unless the template mounts something there.

    Container runtimes give /dev/shm 64 MiB; Ray then keeps its objects in /tmp, on disk. A template volume
    named `dshm` (merged by name) is used in place of the operator's.
    """
    mounts = ray.setdefault("volumeMounts", [])
    if any(mount.get("mountPath") == SHM_PATH for mount in mounts):
        return
    mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})
    volumes = pod["spec"].setdefault("volumes", [])
    if not any(volume.get("name") == SHM_VOLUME for volume in volumes):
        empty_dir: dict[str, Any] = {"medium": "Memory"}
        if size_limit is not None:
            empty_dir["sizeLimit"] = str(size_limit)
        volumes.append({"name": SHM_VOLUME, "emptyDir": empty_dir})


RAY_PARAM_PREFIX = "--ray-param="


def ray_params(pod: dict[str, Any]) -> dict[str, str]:
    """The `ray start` flags a built pod passes to the runtime (its Ray container's --ray-param arguments)."""
    args = pod["spec"]["containers"][0]["args"]
    pairs = (arg[len(RAY_PARAM_PREFIX):].partition("=") for arg in args if arg.startswith(RAY_PARAM_PREFIX))
    return {key: value for key, _, value in pairs}


def group_resources(
    *, cluster: str, namespace: str, uid: str, spec: ServeClusterSpec, image: str, generation: str
) -> dict[str, dict[str, float]]:
    """Per worker group, the Ray resources each of its pods offers (what Ray's autoscaler sizes new nodes by)."""
    out = {}
    for group in spec.worker_groups:
        pod = _pod(
            name=common.worker_pod_name(cluster, generation, group.name, 0), node=group, namespace=namespace,
            cluster=cluster, uid=uid, spec=spec, image=image, generation=generation, extra_labels={},
            head_address=common.head_address(cluster, namespace, generation),
        )
        out[group.name] = rayresources.ray_resources(ray_params(pod))
    return out


def pod_spec_hash(pod: dict[str, Any]) -> str:
    """Hash of what a running pod cannot change in place; a different hash means the pod must be replaced."""
    return hashlib.sha256(json.dumps(pod["spec"], sort_keys=True).encode()).hexdigest()[:16]


def _stamp(pod: dict[str, Any]) -> dict[str, Any]:
    pod["metadata"].setdefault("annotations", {})[common.POD_HASH_ANNOTATION] = pod_spec_hash(pod)
    return pod


def head_pod(
    *, cluster: str, namespace: str, uid: str, spec: ServeClusterSpec, image: str, generation: str
) -> dict[str, Any]:
    pod = _pod(
        name=common.head_pod_name(cluster, generation), node=spec.head, namespace=namespace, cluster=cluster,
        uid=uid, spec=spec, image=image, head_address=None, extra_labels={}, generation=generation,
    )
    return _stamp(pod)


def generation_name(
    *, cluster: str, namespace: str, uid: str, spec: ServeClusterSpec, image: str, serve_start: str | None = None
) -> str:
    """The generation the spec asks for: a hash of what every Ray node of one cluster must run alike, which is
    what the head's pod spec holds (the image, the head's settings and Ray flags, the runtime's command, GCS and
    auth settings), and of Serve's start options (`serve_start`, compose.start_key), which Serve reads only when
    it starts on a new head. Worker groups are not in it: their changes roll in place."""
    head = head_pod(cluster=cluster, namespace=namespace, uid=uid, spec=spec, image=image, generation="")
    digest = pod_spec_hash(head)
    if serve_start is not None:
        digest = hashlib.sha256(f"{digest}/{serve_start}".encode()).hexdigest()
    return digest[:5]


def ray_pods(
    *,
    cluster: str,
    namespace: str,
    uid: str,
    spec: ServeClusterSpec,
    image: str,
    generation: str,
    workers: Mapping[str, Sequence[int]] | None = None,
) -> list[dict[str, Any]]:
    """A generation's pods, the head first, then each worker group's in order; `workers` gives the indices of
    each group's pods (autoscaling.workers), by default 0 to replicas - 1."""
    indices = workers if workers is not None else {g.name: range(g.replicas) for g in spec.worker_groups}
    address = common.head_address(cluster, namespace, generation)
    head = head_pod(cluster=cluster, namespace=namespace, uid=uid, spec=spec, image=image, generation=generation)
    return [head] + [
        _stamp(
            _pod(
                name=common.worker_pod_name(cluster, generation, group.name, index), node=group,
                namespace=namespace, cluster=cluster, uid=uid, spec=spec, image=image, head_address=address,
                extra_labels={common.GROUP_LABEL: group.name}, generation=generation,
            )
        )
        for group in spec.worker_groups
        for index in indices.get(group.name, ())
    ]
