"""PURE: the head Service, the serve Service and the Ingress of a ServeCluster."""
from __future__ import annotations

from typing import Any

from ..api.cluster import ProxyLocation, ServeClusterSpec
from . import common


def head_service(*, cluster: str, namespace: str, uid: str, generation: str) -> dict[str, Any]:
    """The head Service users and tools reach the dashboard by: the active generation's head."""
    return _head_service(common.head_service_name(cluster), cluster, namespace, uid, generation)


def generation_head_service(*, cluster: str, namespace: str, uid: str, generation: str) -> dict[str, Any]:
    """The head Service a generation's workers join by: their own head, whatever generation is active."""
    name = common.generation_head_service_name(cluster, generation)
    return _head_service(name, cluster, namespace, uid, generation)


def _head_service(name: str, cluster: str, namespace: str, uid: str, generation: str) -> dict[str, Any]:
    """Headless, and publishing not-ready addresses: workers must reach the GCS before the head is Ready."""
    meta = common.metadata(name=name, namespace=namespace, cluster=cluster, uid=uid, component="head")
    selector = {**common.selector(cluster), common.NODE_TYPE_LABEL: "head"}
    if generation:  # pods made before generations carry no label
        selector[common.GENERATION_LABEL] = generation
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [
                {"name": "gcs", "port": common.GCS_PORT, "targetPort": common.GCS_PORT},
                {"name": "dashboard", "port": common.DASHBOARD_PORT, "targetPort": common.DASHBOARD_PORT},
                {"name": "client", "port": common.CLIENT_PORT, "targetPort": common.CLIENT_PORT},
            ],
        },
    }


def serve_service(*, cluster: str, namespace: str, uid: str, spec: ServeClusterSpec) -> dict[str, Any]:
    meta = common.metadata(
        name=common.serve_service_name(cluster), namespace=namespace, cluster=cluster, uid=uid, component="serve"
    )
    if spec.service.annotations:
        meta["annotations"] = dict(spec.service.annotations)
    chosen = {**common.selector(cluster), common.PROXY_LABEL: common.PROXY_HEALTHY}
    if spec.serve.proxy_location == ProxyLocation.HEAD_ONLY:
        chosen[common.NODE_TYPE_LABEL] = "head"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": spec.service.type.value,
            "selector": chosen,
            "ports": [
                {
                    "name": "http", "port": spec.serve.http_port, "targetPort": spec.serve.http_port,
                    "appProtocol": "http",
                },
                {
                    "name": "grpc", "port": spec.serve.grpc_port, "targetPort": spec.serve.grpc_port,
                    "appProtocol": "grpc",
                },
            ],
        },
    }


def ingress(
    *, cluster: str, namespace: str, uid: str, spec: ServeClusterSpec, routes: list[str]
) -> dict[str, Any] | None:
    """One path per application's route prefix; None when the Ingress is disabled or nothing is routed."""
    if not spec.ingress.enabled or not routes:
        return None
    meta = common.metadata(
        name=common.serve_service_name(cluster), namespace=namespace, cluster=cluster, uid=uid, component="serve"
    )
    if spec.ingress.annotations:
        meta["annotations"] = dict(spec.ingress.annotations)
    paths = [
        {
            "path": route,
            "pathType": "Prefix",
            "backend": {"service": {"name": common.serve_service_name(cluster), "port": {"name": "http"}}},
        }
        for route in sorted(routes)
    ]
    rule: dict[str, Any] = {"http": {"paths": paths}}
    if spec.ingress.host:
        rule["host"] = spec.ingress.host
    body: dict[str, Any] = {"rules": [rule]}
    if spec.ingress.class_name:
        body["ingressClassName"] = spec.ingress.class_name
    if spec.ingress.tls:
        body["tls"] = [t.to_wire() for t in spec.ingress.tls]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": body}
