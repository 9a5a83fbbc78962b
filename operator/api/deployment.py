"""ServeDeployment (short name `sdep`): per-deployment settings of one Serve application.

The same settings appear inline in `ServeApplication.spec.deployments[]`; a ServeDeployment overrides those.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from .base import (
    FREE_FORM,
    ApiModel,
    Condition,
    StatusModel,
    conditions_field,
    observed_generation_field,
    rules,
)


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


class RayActorOptions(ApiModel):
    """Resources each replica's Ray actor reserves."""

    num_cpus: float | None = Field(default=None, ge=0, description="Logical CPUs per replica (Serve's default: 1).")
    num_gpus: float | None = Field(default=None, ge=0, description="GPUs per replica.")
    memory: int | None = Field(default=None, ge=0, description="Memory per replica, in bytes.")
    resources: dict[str, float] | None = Field(default=None, description="Custom Ray resources per replica.")


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
        default=None, ge=-1, description="Most requests queued per caller before rejecting (-1: no limit)."
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
