"""ServeCluster (short name `scl`): a Ray cluster, one pod per Ray node, running Serve's controller and proxies."""
from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field

from .base import FREE_FORM, ApiModel, Condition, StatusModel, conditions_field, observed_generation_field, rules

RESOURCES_FIELD_DOC = "Container resources (requests and limits) of each pod of this kind, as in a Pod spec."
RESOURCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        key: {
            "type": "object",
            "description": f"Resource {key}, e.g. cpu: 2, memory: 4Gi.",
            "additionalProperties": {"x-kubernetes-int-or-string": True},
        }
        for key in ("requests", "limits")
    },
}
ENV_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object", "required": ["name"], "x-kubernetes-preserve-unknown-fields": True},
}


def _resources_field() -> Any:
    return Field(default=None, description=RESOURCES_FIELD_DOC, json_schema_extra=RESOURCES_SCHEMA)


def _ray_start_params_field() -> Any:
    return Field(
        default_factory=dict,
        description="Extra `ray start` flags without the leading dashes, e.g. num-cpus: \"4\".",
    )


def _env_field() -> Any:
    return Field(
        default_factory=list,
        description="Environment variables of the Ray container, as in a Pod spec.",
        json_schema_extra=ENV_SCHEMA,
    )


class HeadSpec(ApiModel):
    resources: dict[str, Any] | None = _resources_field()
    ray_start_params: dict[str, str] = _ray_start_params_field()
    env: list[dict[str, Any]] = _env_field()
    pod_template: dict[str, Any] | None = Field(
        default=None,
        description="Overrides merged into the head pod: metadata (labels, annotations) and spec fields such as "
        "nodeSelector, tolerations, affinity or serviceAccountName.",
        json_schema_extra=FREE_FORM,
    )


class WorkerGroupSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": rules(
            (
                "!has(self.minReplicas) || self.replicas >= self.minReplicas",
                "replicas must be at least minReplicas",
            ),
            (
                "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
                "replicas must be at most maxReplicas",
            ),
        )
    }

    name: str = Field(
        min_length=1,
        max_length=30,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the group; part of its pods' names, so lowercase letters, digits and dashes.",
    )
    replicas: int = Field(default=1, ge=0, description="Number of worker pods (Ray nodes) in this group.")
    min_replicas: int | None = Field(default=None, ge=0, description="Lower bound for replicas.")
    max_replicas: int | None = Field(default=None, ge=0, description="Upper bound for replicas.")
    resources: dict[str, Any] | None = _resources_field()
    ray_start_params: dict[str, str] = _ray_start_params_field()
    env: list[dict[str, Any]] = _env_field()


class ProxyLocation(str, Enum):
    EVERY_NODE = "EveryNode"
    HEAD_ONLY = "HeadOnly"


class ServeOptions(ApiModel):
    http_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="Port of the Serve proxies' HTTP server on every Ray pod. Fixed once Serve runs.",
        json_schema_extra=rules(("self == oldSelf", "httpPort cannot change once the cluster exists")),
    )
    grpc_port: int = Field(
        default=9000,
        ge=1,
        le=65535,
        description="Port of the Serve proxies' gRPC server on every Ray pod. Fixed once Serve runs.",
        json_schema_extra=rules(("self == oldSelf", "grpcPort cannot change once the cluster exists")),
    )
    proxy_location: ProxyLocation = Field(
        default=ProxyLocation.EVERY_NODE,
        description="Where Serve runs proxies: EveryNode (every pod serves traffic) or HeadOnly.",
    )
    request_timeout_s: float | None = Field(
        default=None, gt=0, description="End-to-end timeout of an HTTP request in the proxy, in seconds."
    )


class ServiceType(str, Enum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class ServiceSpec(ApiModel):
    type: ServiceType = Field(default=ServiceType.CLUSTER_IP, description="Type of the serve Service.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the serve Service.")


class IngressTLS(ApiModel):
    hosts: list[str] = Field(default_factory=list, description="Hosts the certificate covers.")
    secret_name: str | None = Field(default=None, description="Secret holding the TLS certificate and key.")


class IngressSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": rules(
            ("!has(self.tls) || size(self.tls) == 0 || has(self.host)", "ingress.tls needs ingress.host"),
        )
    }

    enabled: bool = Field(default=False, description="Create an Ingress with one path per application.")
    class_name: str | None = Field(default=None, description="IngressClass to use.")
    host: str | None = Field(default=None, description="Host name the Ingress answers for.")
    tls: list[IngressTLS] = Field(default_factory=list, description="TLS settings, as in an Ingress.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the Ingress.")


class ServeClusterSpec(ApiModel):
    image: str | None = Field(
        default=None,
        description="Container image of the Ray pods (Ray plus serveplane's runtime); defaults to the "
        "operator's configured image.",
    )
    head: HeadSpec = Field(
        default_factory=HeadSpec, description="The head pod: Ray's GCS, dashboard and Serve's controller."
    )
    worker_groups: list[WorkerGroupSpec] = Field(
        default_factory=list,
        description="Groups of worker pods, one pod per Ray node.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    serve: ServeOptions = Field(default_factory=ServeOptions, description="Serve's proxy settings.")
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="The serve Service (HTTP and gRPC).")
    ingress: IngressSpec = Field(default_factory=IngressSpec, description="An Ingress in front of the serve Service.")


class ServeClusterStatus(StatusModel):
    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field()
    head_pod: str | None = Field(default=None, description="Name of the head pod.")
    desired_nodes: int = Field(default=0, description="Ray nodes (pods) the spec asks for.")
    ready_nodes: int = Field(default=0, description="Ray pods running and ready.")
    healthy_proxies: int = Field(default=0, description="Serve proxies that report HEALTHY.")
    applications: list[str] = Field(default_factory=list, description="ServeApplications submitted to this cluster.")
    applied_config_hash: str | None = Field(
        default=None, description="Hash of the Serve config last accepted by the head; a restarted operator "
        "resubmits only when it differs."
    )
    applied_head_uid: str | None = Field(
        default=None, description="UID of the head pod the config was applied to; a new head gets it again."
    )
    dashboard_url: str | None = Field(default=None, description="In-cluster URL of the Ray dashboard.")
