"""PURE: the whole ServeClusterSpec of a RayCluster's spec or a RayService's, assembled from its parts.

The one place that knows the order of the parts: the Serve options before the pods (the serve ports), GCS fault
tolerance before the head (the paths it uses), and a RayService's serve Service and upgrade strategy.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.cluster import HeadSpec, ServeOptions, ServiceSpec, UpgradeType, WorkerGroupSpec
from .clusterwide import GCS_ANNOTATIONS, autoscaling, gcs_fault_tolerance
from .dispatch import dispatch, off_or_note
from .mapping import MISSING, map_field
from .names import Context
from .outputs import Output, child
from .pods import Node, group_spec, head, worker_group
from .serveconfig import free_grpc_port, parse_serve_config, serve_options

_CLUSTER_REASONS = {
    "rayVersion": "a ServeCluster runs the Ray of its image (spec.image); there is no version to declare",
    "managedBy": "a ServeCluster is always managed by serveplane's operator",
    "headServiceAnnotations": "ServeCluster has no annotations for the head Service (spec.service annotates the "
    "serve Service)",
}


@dataclass
class ClusterParts:
    """A ServeClusterSpec (by field name) being assembled from KubeRay's fields."""

    out: Output
    ctx: Context
    spec: dict[str, Any] = field(default_factory=dict)


def ray_cluster(
    rc: Any, path: str, parts: ClusterParts, annotations: Mapping[str, Any], annotations_path: str
) -> None:
    """The ServeClusterSpec fields of a RayClusterSpec (RayCluster.spec, or a RayService's rayClusterConfig)."""
    out = parts.out
    if not isinstance(rc, dict):
        out.note(path, "the Ray cluster's spec must be a map")
        for key in set(GCS_ANNOTATIONS) & set(annotations):  # settings of that spec
            out.note(child(annotations_path, key), "the Ray cluster's spec is not a map")
        return
    gcs, consumed = gcs_fault_tolerance(rc, path, annotations, annotations_path, out)
    if gcs:
        parts.spec["gcs_fault_tolerance"] = gcs
    serve = parts.spec.get("serve", {})
    serve_ports = frozenset(
        serve.get(name, ServeOptions.model_fields[name].default) for name in ("http_port", "grpc_port")
    )
    head_node = Node(child(path, "headGroupSpec"), out, frozenset(consumed), serve_ports)
    groups: list[Node] = []
    names: set[str] = set()

    def head_handler(value: Any, where: str) -> None:
        head(value, head_node)

    def workers(value: Any, where: str) -> None:
        if not isinstance(value, list):
            out.note(where, "workerGroupSpecs must be a list")
            return
        if not value:
            out.map(where)
        for index, group in enumerate(value):
            node = Node(child(where, index), out, frozenset(), serve_ports)
            worker_group(group, node, names)
            groups.append(node)

    scaling = autoscaling(rc, path, out)
    handlers: dict[str, Callable[[Any, str], None]] = {
        "headGroupSpec": head_handler,
        "workerGroupSpecs": workers,
        "enableInTreeAutoscaling": lambda v, w: None,  # read by autoscaling
        "autoscalerOptions": lambda v, w: None,
        "gcsFaultToleranceOptions": lambda v, w: None,  # read by gcs_fault_tolerance
        "suspend": lambda v, w: off_or_note(v, w, out, "a ServeCluster cannot be suspended; delete it instead"),
    }
    dispatch(rc, path, out, handlers, _CLUSTER_REASONS, "RayClusterSpec")
    if scaling:
        parts.spec["autoscaling"] = scaling
    _assemble_nodes(parts, head_node, groups)


def _assemble_nodes(parts: ClusterParts, head_node: Node, groups: list[Node]) -> None:
    """spec.image (the head's Ray image, or --image), spec.head and spec.workerGroups; a worker group whose Ray
    image differs keeps it in its podTemplate."""
    image = parts.ctx.image or head_node.image
    if parts.ctx.image is not None:
        for node in [head_node, *groups]:
            if node.image is not None and node.image != image:
                parts.out.remark(f"{node.path}: the Ray image {node.image} is replaced by --image {image}")
            node.image = image
    if image is not None:
        parts.spec["image"] = image
    if image is not None and parts.ctx.image is None:
        parts.out.remark(
            f"spec.image {image}: serveplane's pods run `python -m serveplane.runtime` from it, so it needs "
            "serveplane's runtime: build one FROM it as helm/Dockerfile.runtime does and give it with --image"
        )
    head_spec = group_spec(HeadSpec, head_node, image)
    if head_spec is not None:
        parts.spec["head"] = head_spec
    worker_specs = [group_spec(WorkerGroupSpec, node, image) for node in groups]
    if groups:
        parts.spec["worker_groups"] = [spec for spec in worker_specs if spec is not None]


def _serve_service(service: Any, path: str, parts: ClusterParts) -> None:
    """RayService's serveService (a whole Service) -> spec.service: its type and annotations."""
    out = parts.out
    result: dict[str, Any] = {}

    def annotations(value: Any, where: str) -> None:
        converted = map_field(ServiceSpec, "annotations", value, where, out)
        if converted is not MISSING:
            result["annotations"] = converted

    def service_spec(value: Any, where: str) -> None:
        def service_type(kind: Any, at: str) -> None:
            converted = map_field(ServiceSpec, "type", kind, at, out)
            if converted is not MISSING:
                result["type"] = converted

        reasons = {"ports": "the serve Service's ports are spec.serve's httpPort and grpcPort",
                   "selector": "serveplane selects the pods whose Serve proxy is healthy itself"}
        dispatch(value, where, out, {"type": service_type}, reasons, "serveService spec")

    reasons = {"name": "serveplane names the serve Service itself (<name>-serve)",
               "labels": "ServeCluster has no labels for the serve Service"}
    handlers = {
        "metadata": lambda v, w: dispatch(v, w, out, {"annotations": annotations}, reasons, "serveService metadata"),
        "spec": service_spec,
    }
    dispatch(service, path, out, handlers, {}, "serveService")
    if result:
        parts.spec["service"] = result


# KubeRay's upgrade types: NewCluster brings a whole new cluster up and then moves traffic (BlueGreen);
# NewClusterWithIncrementalUpgrade moves it step by step (Incremental).
_UPGRADE_TYPES = {"NewCluster": UpgradeType.BLUE_GREEN, "NewClusterWithIncrementalUpgrade": UpgradeType.INCREMENTAL}


def _upgrade(service_spec: Mapping[str, Any], path: str, parts: ClusterParts) -> None:
    """upgradeStrategy and rayClusterDeletionDelaySeconds -> spec.upgradeStrategy."""
    out = parts.out
    result: dict[str, Any] = {}
    strategy = service_spec.get("upgradeStrategy")

    def kind(value: Any, where: str) -> None:
        if value in _UPGRADE_TYPES:
            result["type"] = _UPGRADE_TYPES[value].value
            out.map(where)
        else:
            out.note(where, f"{value}: serveplane always rolls a change out as a new generation (there is no "
                     "`None`); Recreate is the closest but has an outage")

    def options(value: Any, where: str) -> None:
        out.note(where, "serveplane's Incremental upgrade grows the new generation pod by pod (maxSurgePods) and "
                 "moves traffic with each pod; it has no percentages, interval or Gateway")

    if strategy is not None:
        dispatch(strategy, child(path, "upgradeStrategy"), out, {"type": kind, "clusterUpgradeOptions": options},
                  {}, "upgradeStrategy")
    if "rayClusterDeletionDelaySeconds" in service_spec:
        result["old_generation_delay_seconds"] = service_spec["rayClusterDeletionDelaySeconds"]
        out.map(child(path, "rayClusterDeletionDelaySeconds"))
    if "type" not in result:
        out.remark("KubeRay upgrades a RayService by a whole new cluster (NewCluster) unless told otherwise; this "
                   "ServeCluster keeps serveplane's default, Incremental: set spec.upgradeStrategy.type BlueGreen "
                   "for KubeRay's way")
    if result:
        parts.spec["upgrade_strategy"] = result


_SERVICE_REASONS = {
    "serviceUnhealthySecondThreshold": "deprecated and unused in KubeRay; serveplane reports an unhealthy "
    "application in its conditions",
    "deploymentUnhealthySecondThreshold": "deprecated and unused in KubeRay; serveplane reports an unhealthy "
    "deployment in its conditions",
}


def ray_service_spec(spec: Any, path: str, parts: ClusterParts, annotations: Mapping[str, Any],
                     annotations_path: str) -> dict[str, Any] | None:
    """The ServeCluster fields of a RayService's spec; returns its Serve config (parsed), if any."""
    out = parts.out
    if not isinstance(spec, dict):
        out.note(path, "a RayService's spec must be a map")
        return None
    config: dict[str, Any] | None = None

    def serve_config(value: Any, where: str) -> None:
        nonlocal config
        config = parse_serve_config(value, where, out)

    handlers: dict[str, Callable[[Any, str], None]] = {
        "serveConfigV2": serve_config,
        "rayClusterConfig": lambda v, w: ray_cluster(v, w, parts, annotations, annotations_path),
        "serveService": lambda v, w: _serve_service(v, w, parts),
        "upgradeStrategy": lambda v, w: None,  # read by _upgrade
        "rayClusterDeletionDelaySeconds": lambda v, w: None,
        "excludeHeadPodFromServeSvc": lambda v, w: off_or_note(
            v, w, out, "ServeCluster cannot keep the head pod out of the serve Service: every pod's proxy serves "
            "(spec.serve.proxyLocation EveryNode) or the head's alone (HeadOnly)"
        ),
    }
    # The Serve config's options decide the serve ports, which the containers' port declarations are checked against.
    if isinstance(spec.get("serveConfigV2"), str):
        serve_config(spec["serveConfigV2"], child(path, "serveConfigV2"))
        handlers["serveConfigV2"] = lambda v, w: None
        if config is not None:
            set_serve(parts, config, child(path, "serveConfigV2"))
    dispatch(spec, path, out, handlers, _SERVICE_REASONS, "RayServiceSpec")
    _upgrade(spec, path, parts)
    return config


def set_serve(parts: ClusterParts, config: Mapping[str, Any], path: str) -> None:
    options = serve_options(config, path, parts.out)
    free_grpc_port(options, parts.out)
    if options:
        parts.spec["serve"] = options
