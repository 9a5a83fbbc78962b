"""ServeCluster (short name `scl`): a Ray cluster, one pod per Ray node, running Serve's controller and proxies."""
from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import Field, field_validator, model_validator

from . import quantity
from .base import FREE_FORM, ApiModel, Condition, StatusModel, conditions_field, observed_generation_field, rules
from .serveoptions import LoggingConfig, TracingConfig

RESOURCES_FIELD_DOC = "Container resources (requests and limits) of each pod of this kind, as in a Pod spec."
# apimachinery caps a quantity at the largest int64; the Pod would not get what was written (api/quantity.py).
QUANTITY_RULE = (
    "type(self) == string ? isQuantity(self) && !quantity(self).isLessThan(quantity('0')) && "
    f"quantity(self).isLessThan(quantity('{quantity.LIMIT}')) : self >= 0"
)
QUANTITY_MESSAGE = "a Kubernetes quantity from 0 to below 2^63-1 (e.g. 500m, 2, 4Gi, 1e9)"
# Bounds that keep the API server's cost estimate of the rules below within its budget.
MAX_QUANTITY_LENGTH = 64
MAX_RESOURCES = 32
MAX_WORKER_GROUPS = 64
RESOURCES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        key: {
            "type": "object",
            "description": f"Resource {key}, e.g. cpu: 2, memory: 4Gi.",
            "maxProperties": MAX_RESOURCES,
            "additionalProperties": {
                "x-kubernetes-int-or-string": True,
                "maxLength": MAX_QUANTITY_LENGTH,
                **rules((QUANTITY_RULE, QUANTITY_MESSAGE)),
            },
        }
        for key in ("requests", "limits")
    },
}

# Every Service a ServeCluster owns is named after it (manifests/common.py), and a Service's name is a DNS-1035
# label of at most 63 characters; the longest, `<name>-<generation>-head`, adds 11 to the name.
NAME_MAX_LENGTH = 52
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_RULES = (
    (
        f"self.metadata.name.size() <= {NAME_MAX_LENGTH}",
        f"metadata.name: at most {NAME_MAX_LENGTH} characters, so that the Services named after the cluster "
        "(<name>-<generation>-head adds 11) stay within the 63 of a Service name",
    ),
    (
        f"self.metadata.name.matches('{NAME_PATTERN}')",
        "metadata.name: lowercase letters, digits and dashes, starting with a letter and ending with a letter or "
        "digit (no dots): the Services named after the cluster need a DNS-1035 label",
    ),
)


def _resources_field() -> Any:
    return Field(default=None, description=RESOURCES_FIELD_DOC, json_schema_extra=RESOURCES_SCHEMA)


def _ray_start_params_field() -> Any:
    return Field(
        default_factory=dict,
        description="Extra `ray start` flags without the leading dashes, e.g. num-cpus: \"4\". Unless set here, "
        "num-cpus is the Ray container's cpu limit (else its request) rounded up, num-gpus the limit of its "
        "resource named *gpu (nvidia.com/gpu), memory its memory limit in bytes.",
    )


class EnvVar(ApiModel):
    """An environment variable of the Ray container, as in a Pod spec (a Pod's EnvVar)."""

    name: str = Field(min_length=1, description="Name of the variable.")
    value: str | None = Field(default=None, description="Its value; $(VAR) refers to another variable.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="Where the value comes from instead (secretKeyRef, configMapKeyRef, fieldRef, ...), as in a "
        "Pod spec.",
        json_schema_extra=FREE_FORM,
    )


def _env_field() -> Any:
    return Field(default_factory=list, description="Environment variables of the Ray container, as in a Pod spec.")


def _check_quantities(resources: Any) -> Any:
    """Refuse a quantity Kubernetes would refuse (or cap) in the Pod, so the spec is reported invalid instead."""
    for section in ("requests", "limits"):
        values = (resources or {}).get(section) if isinstance(resources, dict) else resources
        if not isinstance(values, dict | None):
            raise ValueError(f"resources and resources.{section} must be maps")
        if len(values or {}) > MAX_RESOURCES:
            raise ValueError(f"{section}: at most {MAX_RESOURCES} resources")
        for name, value in (values or {}).items():
            if isinstance(value, str) and len(value) > MAX_QUANTITY_LENGTH:
                raise ValueError(f"{section}.{name}: at most {MAX_QUANTITY_LENGTH} characters")
            try:
                if quantity.parse(value) < 0:
                    raise ValueError(f"{quantity.shown(value)} is negative: {QUANTITY_MESSAGE}")
            except ValueError as error:
                raise ValueError(f"{section}.{name}: {error}") from None
    return resources


class PodTemplateMetadata(ApiModel):
    labels: dict[str, str] | None = Field(
        default=None,
        description="Labels added to the pods. The operator's own labels win over these, and labels under "
        "serveplane.dev/ are the operator's alone (ignored here): its watches and Services select on them.",
    )
    annotations: dict[str, str] | None = Field(default=None, description="Annotations added to the pods.")


RAY_CONTAINER = "ray"
# The Pod spec lists a podTemplate merges by name, and the Ray container's lists it merges by a key of theirs.
POD_SPEC_NAMED_LISTS = ("volumes", "initContainers", "containers")
RAY_CONTAINER_KEYED_LISTS = {"env": "name", "ports": "name", "volumeMounts": "mountPath"}
POD_TEMPLATE_SPEC_DOC = (
    "Fields of a Pod spec merged into the operator's (nodeSelector, tolerations, affinity, priorityClassName, "
    "serviceAccountName, volumes, initContainers, ...). Objects merge key by key, the template winning; "
    "`tolerations` are appended; `volumes`, `initContainers` and sidecar `containers` merge by name (an entry "
    "named like the operator's replaces it: `dshm` replaces the memory-backed /dev/shm); other lists and scalars "
    "replace the operator's. A `containers` entry named `ray` merges into the Ray container instead of replacing "
    "the list: `env` and `ports` by name, `volumeMounts` by mountPath (one at /dev/shm replaces the operator's), "
    "objects key by key (resources, securityContext: the default drops all capabilities and privilege "
    "escalation), probes and lifecycle whole; its name, command and args stay the operator's "
    "(use rayStartParams)."
)


class PodTemplate(ApiModel):
    metadata: PodTemplateMetadata | None = Field(default=None, description="Labels and annotations of the pods.")
    spec: dict[str, Any] | None = Field(default=None, description=POD_TEMPLATE_SPEC_DOC, json_schema_extra=FREE_FORM)

    @field_validator("spec")
    @classmethod
    def _mergeable(cls, spec: dict[str, Any] | None) -> dict[str, Any] | None:
        """Lists merged entry by entry hold objects keyed by a string, and the Ray container's resources are
        quantities (they imply `ray start` flags): checked here so that a bad template is reported, not fed to the
        pod builder."""
        for field in POD_SPEC_NAMED_LISTS:
            _keyed((spec or {}).get(field, []), field, "name", required=True)
        for container in (spec or {}).get("containers", []):
            if container.get("name") == RAY_CONTAINER:
                for field, key in RAY_CONTAINER_KEYED_LISTS.items():
                    where = f"containers[{RAY_CONTAINER}].{field}"
                    _keyed(container.get(field, []), where, key, required=field not in _OPTIONAL_KEYS)
                try:
                    _check_quantities(container.get("resources"))
                except ValueError as error:
                    raise ValueError(f"containers[{RAY_CONTAINER}].resources: {error}") from None
        return spec


# A container port's name is optional in a Pod; the other keys the merge goes by are required there.
_OPTIONAL_KEYS = frozenset({"ports"})


def _keyed(value: Any, where: str, key: str, *, required: bool) -> None:
    """`value` is a list of objects whose `key` is a non-empty string (or absent, where not required)."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"{where} must be a list of objects")
    for index, item in enumerate(value):
        if (required or key in item) and not (isinstance(item.get(key), str) and item[key]):
            raise ValueError(f"{where}[{index}].{key} must be a non-empty string")


def _pod_template_field(pods: str) -> Any:
    return Field(default=None, description=f"Overrides merged into {pods}; see its spec for the rules.")


class HeadSpec(ApiModel):
    resources: dict[str, Any] | None = _resources_field()
    ray_start_params: dict[str, str] = _ray_start_params_field()
    env: list[EnvVar] = _env_field()
    pod_template: PodTemplate | None = _pod_template_field("the head pod")

    _quantities = field_validator("resources")(_check_quantities)


class WorkerGroupSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": rules(
            (
                "!has(self.maxReplicas) || (has(self.minReplicas) ? self.minReplicas : 0) <= self.maxReplicas",
                "minReplicas must not exceed maxReplicas",
            ),
        )
    }

    name: str = Field(
        min_length=1,
        max_length=30,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the group; part of its pods' names, so lowercase letters, digits and dashes.",
    )
    replicas: int = Field(
        default=1,
        ge=0,
        description="Number of worker pods (Ray nodes) in this group; with spec.autoscaling.enabled, the count it "
        "starts from until Ray's autoscaler asks for another (kept in status.autoscaler, never written here).",
    )
    min_replicas: int = Field(
        default=0,
        ge=0,
        description="With spec.autoscaling.enabled: the fewest worker pods of this group, whatever the autoscaler "
        "asks. An edit takes effect at once.",
    )
    max_replicas: int | None = Field(
        default=None,
        ge=0,
        description="With spec.autoscaling.enabled: the most worker pods of this group, however much Ray asks "
        "for; defaults to replicas (the group does not grow unless this is set). An edit takes effect at once.",
    )
    resources: dict[str, Any] | None = _resources_field()
    ray_start_params: dict[str, str] = _ray_start_params_field()
    env: list[EnvVar] = _env_field()
    pod_template: PodTemplate | None = _pod_template_field("every pod of this group")

    _quantities = field_validator("resources")(_check_quantities)

    @model_validator(mode="after")
    def _bounds(self) -> WorkerGroupSpec:
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"workerGroups[{self.name}]: minReplicas must not exceed maxReplicas")
        return self

    @property
    def bounds(self) -> tuple[int, int]:
        """(minReplicas, maxReplicas) as the autoscaler applies them: maxReplicas defaults to replicas."""
        return self.min_replicas, self.max_replicas if self.max_replicas is not None else self.replicas


class AutoscalingSpec(ApiModel):
    enabled: bool = Field(
        default=False,
        description="Run Ray's own autoscaler (v2) beside the head: a worker group grows when Ray (Serve's "
        "replicas, or any task) asks for resources no node has, and an idle worker is drained and removed, always "
        "between the group's minReplicas and maxReplicas. Its decisions go to status.autoscaler, never to the "
        "spec, so GitOps tools see no drift.",
    )
    idle_timeout_seconds: int = Field(
        default=60, ge=0, description="How long a worker runs nothing before the autoscaler removes it."
    )
    upscaling_speed: float = Field(
        default=1.0,
        gt=0,
        description="Ray's upscaling_speed: how many pods may start at once, as a multiple of those running or "
        "starting (at least 5).",
    )


class AuthMode(str, Enum):
    TOKEN = "Token"
    DISABLED = "Disabled"


class AuthSpec(ApiModel):
    mode: AuthMode = Field(
        default=AuthMode.TOKEN,
        description="Token (the default): Ray's token authentication on every node, the token in a Secret the "
        "operator makes (<cluster>-ray-token, key `token`); the dashboard, the Jobs API and Ray's RPCs refuse "
        "requests without it, while Serve's HTTP and gRPC proxies stay open to users. Deleting the Secret rotates "
        "the token and restarts every Ray pod at once. Disabled: anyone who reaches a head can run code on the "
        "cluster.",
    )


class NetworkPolicySpec(ApiModel):
    enabled: bool = Field(
        default=True,
        description="Create a NetworkPolicy (<cluster>-ray) that lets only the cluster's own pods and the "
        "operator reach Ray's GCS, dashboard, client, agent and metrics ports, while Serve's HTTP and gRPC ports "
        "stay open to all. Enforced only by a CNI that implements NetworkPolicy (Calico, Cilium, ...).",
    )


class SecretKeySelector(ApiModel):
    name: str = Field(min_length=1, description="Name of a Secret in the ServeCluster's namespace.")
    key: str = Field(min_length=1, description="Key of the Secret's data.")


class RedisPassword(ApiModel):
    secret_key_ref: SecretKeySelector = Field(description="The Secret key holding Redis's password.")


class GcsFaultToleranceSpec(ApiModel):
    redis_address: str = Field(
        min_length=1,
        pattern=r"^(rediss?://)?[^\s/]+:[0-9]+$",
        description="host:port of the Redis that keeps the GCS's state, so a new head pod resumes the same Ray "
        "cluster (workers, actors and Serve's applications survive a head loss).",
    )
    redis_password: RedisPassword | None = Field(default=None, description="Redis's password, from a Secret.")
    external_storage_namespace: str | None = Field(
        default=None,
        min_length=1,
        description="Prefix of this cluster's keys in Redis; defaults to the ServeCluster's UID. Its keys are "
        "removed when the ServeCluster is deleted.",
    )


class ProxyLocation(str, Enum):
    EVERY_NODE = "EveryNode"
    HEAD_ONLY = "HeadOnly"


DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT = 8000, 9000


class ServeOptions(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": rules(
            (
                f"(has(self.httpPort) ? self.httpPort : {DEFAULT_HTTP_PORT}) != "
                f"(has(self.grpcPort) ? self.grpcPort : {DEFAULT_GRPC_PORT})",
                "httpPort and grpcPort must differ: the serve Service has one port of each",
            ),
        )
    }

    http_port: int = Field(
        default=DEFAULT_HTTP_PORT,
        ge=1,
        le=65535,
        description="Port of the Serve proxies' HTTP server on every Ray pod. Fixed once Serve runs.",
        json_schema_extra=rules(("self == oldSelf", "httpPort cannot change once the cluster exists")),
    )
    grpc_port: int = Field(
        default=DEFAULT_GRPC_PORT,
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
    keep_alive_timeout_s: int | None = Field(
        default=None,
        ge=1,
        description="Seconds the HTTP proxy keeps an idle client connection open (Serve's default: 90); keep it "
        "above the idle timeout of the load balancer in front.",
    )
    root_path: str | None = Field(
        default=None,
        pattern=r"^(/[A-Za-z0-9._~-]+)+$",
        description="Path prefix under which a reverse proxy mounts Serve (ASGI root_path), e.g. /serve.",
    )
    grpc_request_timeout_s: float | None = Field(
        default=None, gt=0, description="End-to-end timeout of a gRPC request in the proxy, in seconds."
    )
    grpc_enable_reflection: bool | None = Field(
        default=None, description="Serve gRPC server reflection (Serve's default: true), as grpcurl uses."
    )
    logging_config: LoggingConfig | None = Field(
        default=None, description="Serve's logging for the controller, proxies and every application."
    )
    tracing_config: TracingConfig | None = Field(default=None, description="Serve's request tracing.")
    controller_env: dict[str, str] | None = Field(
        default=None,
        description="Environment variables of Serve's controller actor (its runtime_env.env_vars, the only part "
        "of it Serve allows).",
    )

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServeOptions:
        if self.http_port == self.grpc_port:
            raise ValueError(
                f"httpPort and grpcPort must differ (both are {self.http_port}): the serve Service has one port of each"
            )
        return self


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


class UpgradeType(str, Enum):
    INCREMENTAL = "Incremental"
    BLUE_GREEN = "BlueGreen"
    RECREATE = "Recreate"


class UpgradeStrategySpec(ApiModel):
    type: UpgradeType = Field(
        default=UpgradeType.INCREMENTAL,
        description="How a new generation of the Ray cluster replaces the running one. Incremental: the new "
        "generation grows pod by pod while the old one shrinks, never more than maxSurgePods extra pods, each "
        "generation's Serve target_capacity following its share of the traffic. BlueGreen: the whole new "
        "generation comes up, then traffic switches to it and the old one goes after oldGenerationDelaySeconds. "
        "Recreate: the old generation goes, then the new one starts (an outage).",
    )
    max_surge_pods: int = Field(
        default=1, ge=1, description="Incremental: how many pods above the spec's count an upgrade may run."
    )
    timeout_seconds: int = Field(
        default=600,
        ge=1,
        description="A new generation whose pods are not all Ready, or whose applications are not all RUNNING, "
        "this long after it started has failed: traffic stays on the running generation until the spec changes.",
    )
    old_generation_delay_seconds: int = Field(
        default=30,
        ge=0,
        description="BlueGreen: how long the old generation stays (out of the serve Service) after traffic "
        "switched, for requests in flight.",
    )


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
        max_length=MAX_WORKER_GROUPS,
        description="Groups of worker pods, one pod per Ray node.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    serve: ServeOptions = Field(default_factory=ServeOptions, description="Serve's proxy settings.")
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="The serve Service (HTTP and gRPC).")
    ingress: IngressSpec = Field(default_factory=IngressSpec, description="An Ingress in front of the serve Service.")
    auth: AuthSpec = Field(default_factory=AuthSpec, description="Who may use the Ray cluster's control plane.")
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec, description="A NetworkPolicy guarding Ray's internal ports."
    )
    gcs_fault_tolerance: GcsFaultToleranceSpec | None = Field(
        default=None, description="Keep the GCS's state in Redis, so the cluster survives losing its head pod."
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="Ray's autoscaler for the worker groups (off by default)."
    )
    upgrade_strategy: UpgradeStrategySpec = Field(
        default_factory=UpgradeStrategySpec,
        description="How a change that every Ray node must run identically (the image, the head, the runtime, "
        "GCS settings) rolls out: as a new generation of the Ray cluster. Worker-group and application changes "
        "are made in place.",
    )


class HeadRecovery(StatusModel):
    head_uid: str = Field(description="UID of the head pod that took over.")
    time: datetime | None = Field(default=None, description="When the operator saw Serve running on it (RFC 3339).")
    how: str = Field(
        description="RecoveredFromGcs: Serve came back from the GCS's state in Redis by itself, nothing was "
        "resubmitted. Resubmitted: the new head started empty and got the Serve config again."
    )


class GenerationStatus(StatusModel):
    name: str = Field(description="The generation's name: a hash of what all its Ray nodes run identically; its "
                      "pods carry it in the serveplane.dev/generation label.")
    role: str = Field(description="Active (the generation the cluster runs), Pending (an upgrade's new one) or "
                      "Retiring (going).")
    head_pod: str | None = Field(default=None, description="Name of the generation's head pod.")
    ready_pods: int = Field(default=0, description="The generation's Ray pods running and ready.")
    serving_pods: int = Field(default=0, description="Its pods in the serve Service (a healthy Serve proxy).")
    target_capacity: float | None = Field(
        default=None, description="Serve's target_capacity given to this generation, in percent (none: 100)."
    )
    traffic_share: float = Field(default=0, description="Its share of the serve Service's endpoints, in percent.")


class UpgradeStatus(StatusModel):
    generation: str = Field(description="The generation the upgrade brings.")
    strategy: str = Field(description="Incremental, BlueGreen or Recreate.")
    started_at: datetime = Field(description="When the upgrade began (RFC 3339); its timeout counts from here.")
    step: str = Field(default="", description="What the upgrade is doing now.")
    step_since: datetime | None = Field(
        default=None, description="When that step began; timeoutSeconds counts from the last step or pod change."
    )
    failure: str | None = Field(
        default=None, description="Why the new generation failed; traffic stays on the active generation."
    )
    applied_config_hash: str | None = Field(
        default=None, description="Hash of the Serve config (with its target_capacity) the new head accepted."
    )
    applied_head_uid: str | None = Field(default=None, description="UID of the new head that config went to.")
    applied_apps: str | None = Field(
        default=None, description="Hash of the applications in that config: the new head runs them when it matches."
    )
    retired_at: datetime | None = Field(
        default=None, description="BlueGreen: when traffic switched; the old generation goes after the delay."
    )
    retired: str | None = Field(default=None, description="The generation traffic switched away from.")


class AutoscalerGroupRequest(StatusModel):
    replicas: int = Field(description="Worker pods the autoscaler asks for in the group.")
    workers_to_delete: list[str] = Field(
        default_factory=list, description="The idle worker pods it chose to remove (drained through Ray first)."
    )


class AutoscalerStatus(StatusModel):
    generation: str = Field(description="The generation whose autoscaler (beside its head) wrote this.")
    groups: dict[str, AutoscalerGroupRequest] = Field(
        default_factory=dict, description="Per worker group: what the autoscaler asks for."
    )
    last_decision: str | None = Field(default=None, description="Its last scaling decision and why.")
    last_decision_time: datetime | None = Field(default=None, description="When it made it (RFC 3339).")


class WorkerGroupStatus(StatusModel):
    name: str = Field(description="The worker group.")
    desired: int = Field(description="Worker pods the operator runs: replicas, or with autoscaling "
                         "clamp(minReplicas, maxReplicas, what the autoscaler asks).")
    running: int = Field(default=0, description="Its worker pods running and ready.")
    requested: int | None = Field(default=None, description="What the autoscaler asks for (autoscaling only).")
    min_replicas: int | None = Field(
        default=None, description="The fewest pods the autoscaler keeps (autoscaling only): the spec's minReplicas."
    )
    max_replicas: int | None = Field(
        default=None, description="The most pods it asks for (autoscaling only): maxReplicas, else replicas."
    )
    ray_resources: dict[str, float] | None = Field(
        default=None, description="The Ray resources each pod of the group offers, by which the autoscaler sizes "
        "new pods (autoscaling only)."
    )


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
    last_head_recovery: HeadRecovery | None = Field(
        default=None, description="How Serve came back the last time the head pod was replaced."
    )
    active_generation: str | None = Field(
        default=None, description="The generation of the Ray cluster that runs the cluster's applications."
    )
    generations: list[GenerationStatus] = Field(
        default_factory=list, description="Each generation with pods: role, ready and serving pods, capacity."
    )
    upgrade: UpgradeStatus | None = Field(default=None, description="The upgrade under way, if any.")
    worker_groups: list[WorkerGroupStatus] = Field(
        default_factory=list, description="Each worker group of the active generation: desired and running pods."
    )
    autoscaler: AutoscalerStatus | None = Field(
        default=None,
        description="Written by Ray's autoscaler beside the head (spec.autoscaling), read by the operator: the "
        "decisions GitOps must not revert live here and not in the spec.",
    )
    redis_namespaces: list[str] = Field(
        default_factory=list,
        description="GCS fault tolerance: the Redis namespaces the cluster's generations keep (or kept) state in; a "
        "retired generation's is cleaned once its pods are gone, every one when the cluster is deleted.",
    )
