"""ServeDeployment (short name `sdep`): per-deployment settings of one Serve application.

The same settings appear inline in `ServeApplication.spec.deployments[]`; a ServeDeployment overrides those.
"""
from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field, field_validator, model_validator

from .base import (
    FREE_FORM,
    ApiModel,
    Condition,
    StatusModel,
    conditions_field,
    observed_generation_field,
    rules,
)
from .serveoptions import (
    AutoscalingPolicy,
    BackpressureConfig,
    DeploymentActor,
    GangSchedulingConfig,
    LoggingConfig,
    RequestRouterConfig,
)


class AggregationFunction(str, Enum):
    MEAN = "mean"
    MAX = "max"
    MIN = "min"


class PlacementGroupStrategy(str, Enum):
    PACK = "PACK"
    SPREAD = "SPREAD"
    STRICT_PACK = "STRICT_PACK"
    STRICT_SPREAD = "STRICT_SPREAD"


class AutoscalingConfig(ApiModel):
    """Serve's request-based autoscaling of a deployment's replicas."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": rules(
            (
                "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "autoscalingConfig.minReplicas must not exceed autoscalingConfig.maxReplicas",
            ),
        )
    }

    min_replicas: int | None = Field(default=None, ge=0, description="Fewest replicas Serve keeps running.")
    max_replicas: int | None = Field(default=None, ge=1, description="Most replicas Serve may start.")
    initial_replicas: int | None = Field(default=None, ge=0, description="Replicas to start with.")
    target_ongoing_requests: float | None = Field(
        default=None, gt=0, description="Ongoing requests per replica that the autoscaler aims for."
    )
    upscale_delay_s: float | None = Field(default=None, ge=0, description="Seconds of high load before scaling up.")
    downscale_delay_s: float | None = Field(
        default=None, ge=0, description="Seconds of low load before scaling down."
    )
    metrics_interval_s: float | None = Field(
        default=None, gt=0, description="How often replicas report their load, in seconds."
    )
    look_back_period_s: float | None = Field(
        default=None, gt=0, description="Window over which the load is averaged, in seconds."
    )
    upscaling_factor: float | None = Field(default=None, gt=0, description="Multiplier applied to upscale decisions.")
    downscaling_factor: float | None = Field(
        default=None, gt=0, description="Multiplier applied to downscale decisions."
    )
    smoothing_factor: float | None = Field(
        default=None, gt=0, description="Multiplier applied to both scaling decisions (Serve's default: 1)."
    )
    upscale_smoothing_factor: float | None = Field(
        default=None, gt=0, description="Multiplier applied to upscale decisions (replaces smoothingFactor)."
    )
    downscale_smoothing_factor: float | None = Field(
        default=None, gt=0, description="Multiplier applied to downscale decisions (replaces smoothingFactor)."
    )
    downscale_to_zero_delay_s: float | None = Field(
        default=None, ge=0, description="Seconds of no load before the last replica goes (minReplicas 0)."
    )
    aggregation_function: AggregationFunction | None = Field(
        default=None, description="How the load over the look-back window is aggregated: mean (default), max, min."
    )
    policy: AutoscalingPolicy | None = Field(default=None, description="A custom autoscaling policy function.")


class RayActorOptions(ApiModel):
    """Resources each replica's Ray actor reserves."""

    num_cpus: float | None = Field(default=None, ge=0, description="Logical CPUs per replica (Serve's default: 1).")
    num_gpus: float | None = Field(default=None, ge=0, description="GPUs per replica.")
    memory: int | None = Field(default=None, ge=0, description="Memory per replica, in bytes.")
    resources: dict[str, float] | None = Field(default=None, description="Custom Ray resources per replica.")
    accelerator_type: str | None = Field(
        default=None, min_length=1, description="Accelerator type the replica needs, e.g. A100 (a Ray node label)."
    )
    label_selector: dict[str, str] | None = Field(
        default=None, description="Ray node labels a replica's node must have, e.g. ray.io/market-type: spot."
    )
    fallback_strategy: list[dict[str, Any]] | None = Field(
        default=None,
        description="Ordered alternatives when no node matches labelSelector, each in Ray's snake_case "
        "(e.g. label_selector).",
        json_schema_extra={"items": FREE_FORM},
    )
    runtime_env: dict[str, Any] | None = Field(
        default=None,
        description="Ray runtime environment of the replicas, over the application's runtimeEnv.",
        json_schema_extra=FREE_FORM,
    )


class DeploymentSettings(ApiModel):
    """Settings of one Serve deployment; every field left unset keeps the application code's own value."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": rules(
            (
                "!(has(self.numReplicas) && has(self.autoscalingConfig))",
                "set either numReplicas or autoscalingConfig, not both",
            ),
        )
    }

    num_replicas: int | None = Field(
        default=None,
        ge=1,
        description="Fixed number of replicas (also what `kubectl scale` sets); Serve needs at least 1, "
        "use autoscalingConfig with minReplicas 0 to scale to zero.",
    )
    autoscaling_config: AutoscalingConfig | None = Field(
        default=None, description="Autoscale replicas on load instead of a fixed numReplicas."
    )
    ray_actor_options: RayActorOptions | None = Field(default=None, description="Resources per replica.")
    user_config: dict[str, Any] | None = Field(
        default=None,
        description="Passed to the deployment's reconfigure() method; changing it updates replicas in place.",
        json_schema_extra=FREE_FORM,
    )
    max_ongoing_requests: int | None = Field(
        default=None, ge=1, description="Most requests one replica handles at once."
    )
    max_queued_requests: int | None = Field(
        default=None,
        ge=-1,
        description="Most requests queued per caller before rejecting (-1: no limit).",
        json_schema_extra=rules(("self == -1 || self >= 1", "maxQueuedRequests must be -1 (no limit) or at least 1")),
    )
    max_replicas_per_node: int | None = Field(default=None, ge=1, description="Most replicas on one Ray node.")
    health_check_period_s: float | None = Field(
        default=None, gt=0, description="Seconds between health checks of each replica."
    )
    health_check_timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds before a health check counts as failed."
    )
    graceful_shutdown_wait_loop_s: float | None = Field(
        default=None, gt=0, description="Seconds between checks for in-flight requests while a replica stops."
    )
    graceful_shutdown_timeout_s: float | None = Field(
        default=None, ge=0, description="Seconds a stopping replica gets to finish its requests."
    )
    backpressure_config: BackpressureConfig | None = Field(
        default=None, description="What callers get when the queue (maxQueuedRequests) is full."
    )
    placement_group_bundles: list[dict[str, float]] | None = Field(
        default=None,
        min_length=1,
        description="Placement group bundles reserved for each replica, e.g. [{CPU: 1}, {GPU: 1}]; the replica runs "
        "in the first, which must hold its rayActorOptions.",
    )
    placement_group_strategy: PlacementGroupStrategy | None = Field(
        default=None, description="How the bundles are placed: PACK (default), SPREAD, STRICT_PACK, STRICT_SPREAD."
    )
    placement_group_bundle_label_selector: list[dict[str, str]] | None = Field(
        default=None, description="Ray node labels per bundle, in the order of placementGroupBundles."
    )
    logging_config: LoggingConfig | None = Field(default=None, description="Serve's logging for this deployment.")
    request_router_config: RequestRouterConfig | None = Field(
        default=None, description="How callers pick a replica for each request."
    )
    gang_scheduling_config: GangSchedulingConfig | None = Field(
        default=None, description="Schedule replicas in gangs that start and fail together."
    )
    deployment_actors: list[DeploymentActor] | None = Field(
        default=None,
        description="Actors shared by every replica of the deployment.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    rolling_update_percentage: float | None = Field(
        default=None, gt=0, le=1, description="Share of replicas updated at a time in a rolling update (0.2)."
    )
    max_surge_percent: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Extra replicas a rolling update may start before old ones stop, in percent of the target.",
    )

    @field_validator("max_queued_requests")
    @classmethod
    def _queue_limit(cls, value: int | None) -> int | None:
        if value == 0:
            raise ValueError("maxQueuedRequests must be -1 (no limit) or at least 1")
        return value

    @model_validator(mode="after")
    def _one_replica_mode(self) -> DeploymentSettings:
        # The CRD's CEL rule says the same; this catches objects stored before it, and `serveplane render`.
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set either numReplicas or autoscalingConfig, not both")
        return self


class InlineDeployment(DeploymentSettings):
    """An entry of ServeApplication.spec.deployments[]: settings for the deployment called `name`."""

    name: str = Field(min_length=1, description="Name of the deployment in the application's code.")


class ServeDeploymentSpec(DeploymentSettings):
    application: str = Field(
        min_length=1, description="Name of the ServeApplication (same namespace) this deployment belongs to."
    )
    deployment_name: str | None = Field(
        default=None,
        min_length=1,
        description="Name of the deployment in the application's code; defaults to metadata.name.",
    )


class DeploymentReplicas(StatusModel):
    """What Serve reports of one deployment."""

    status: str = Field(default="", description="Serve's deployment status, e.g. HEALTHY, UPDATING, DEPLOY_FAILED.")
    message: str = Field(default="", description="Serve's message for the deployment.")
    replicas: int = Field(default=0, description="Replicas running.")
    target_replicas: int | None = Field(default=None, description="Replicas Serve is aiming for.")


class ServeDeploymentStatus(StatusModel):
    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field()
    serve_status: str | None = Field(default=None, description="Serve's deployment status, e.g. HEALTHY.")
    message: str | None = Field(default=None, description="Serve's message for the deployment.")
    replicas: int = Field(default=0, description="Replicas running (the scale subresource's status).")
    target_replicas: int | None = Field(default=None, description="Replicas Serve is aiming for.")
