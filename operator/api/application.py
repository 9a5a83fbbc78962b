"""ServeApplication (short name `sapp`): one Serve application on a ServeCluster."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .base import FREE_FORM, ApiModel, Condition, StatusModel, conditions_field, observed_generation_field, rules
from .deployment import DeploymentReplicas, InlineDeployment
from .serveoptions import IMPORT_ATTR_PATTERN, AutoscalingPolicy, LoggingConfig

# `package.module:attribute`, as Serve's import_path, with the colon that makes the split unambiguous. Module names
# may have dashes, as Serve allows (importlib imports a working_dir's `ray-operator/` as such).
IMPORT_PATH_PATTERN = (
    r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*"
    r":[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)
# One servicer function's import path; the spec and the servicers-only reader (compose.servicers) take the same.
ServicerFunction = Annotated[str, Field(pattern=IMPORT_ATTR_PATTERN, max_length=512)]
# An absolute URL path without a trailing slash ("/" alone is the root), made of URL-safe segments.
ROUTE_PREFIX_PATTERN = r"^/([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*)?$"


class ServeApplicationSpec(ApiModel):
    cluster: str = Field(
        default="default", min_length=1, description="Name of the ServeCluster (same namespace) that runs this."
    )
    import_path: str = Field(
        pattern=IMPORT_PATH_PATTERN,
        max_length=512,
        description="Where the application is built, as `package.module:attribute` (an Application or a "
        "builder function that takes the args).",
        json_schema_extra=rules(
            (
                "self.matches('" + IMPORT_PATH_PATTERN.replace("\\", "\\\\") + "')",
                "importPath must look like package.module:attribute",
            )
        ),
    )
    route_prefix: str | None = Field(
        default=None,
        pattern=ROUTE_PREFIX_PATTERN,
        max_length=256,
        description="HTTP path prefix the application answers under, e.g. /summarize; defaults to "
        "/<metadata.name>. Unique within a cluster.",
    )
    args: dict[str, Any] | None = Field(
        default=None, description="Arguments passed to the application builder.", json_schema_extra=FREE_FORM
    )
    runtime_env: dict[str, Any] | None = Field(
        default=None,
        description="Ray runtime environment of the application (working_dir, pip, env_vars, ...).",
        json_schema_extra=FREE_FORM,
    )
    grpc_servicer_functions: list[ServicerFunction] | None = Field(
        default=None,
        max_length=64,
        description="Import paths of the generated `add_<Service>Servicer_to_server` functions of the gRPC "
        "services the application implements, e.g. `myapp.greeter_pb2_grpc.add_GreeterServicer_to_server`. The "
        "cluster's gRPC proxies serve the union of its applications' lists; they import them at start, from the "
        "Ray image (not the application's runtimeEnv), so a change rolls the cluster to a new generation. Clients "
        "pick the application with the gRPC metadata `application: <metadata.name>`.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    logging_config: LoggingConfig | None = Field(
        default=None, description="Serve's logging for the application's deployments (over the cluster's)."
    )
    autoscaling_policy: AutoscalingPolicy | None = Field(
        default=None,
        description="An application-level autoscaling policy deciding for all its deployments at once (Serve marks "
        "it experimental); deployments without autoscalingConfig keep their own.",
    )
    external_scaler_enabled: bool | None = Field(
        default=None,
        description="Replicas are scaled by an external autoscaler through Serve's API; no deployment of the "
        "application may set autoscalingConfig then.",
    )
    deployments: list[InlineDeployment] = Field(
        default_factory=list,
        description="Settings per deployment of the application; ServeDeployment resources override these.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    def effective_route_prefix(self, name: str) -> str:
        return self.route_prefix or f"/{name}"


class ServeApplicationServicers(StatusModel):
    """Only the gRPC servicers of a ServeApplication's spec (other fields ignored), read apart from the rest."""

    grpc_servicer_functions: list[ServicerFunction] | None = None


class ServeApplicationStatus(StatusModel):
    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field()
    serve_status: str | None = Field(
        default=None, description="Serve's application status: DEPLOYING, RUNNING, DEPLOY_FAILED, UNHEALTHY, ..."
    )
    message: str | None = Field(default=None, description="Serve's message for the application.")
    route_prefix: str | None = Field(default=None, description="The route prefix the application answers under.")
    url: str | None = Field(default=None, description="In-cluster URL of the application.")
    deployments: dict[str, DeploymentReplicas] = Field(
        default_factory=dict, description="Serve's view of each deployment of the application."
    )
    known_deployments: list[str] = Field(
        default_factory=list,
        description="The deployments the application's code builds, as Serve last reported them running (kept "
        "while Serve rebuilds it): ServeDeployments are checked against them.",
    )
