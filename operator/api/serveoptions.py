"""Serve option groups used at more than one level (cluster, application, deployment) or nested in a deployment.

They mirror the models of `ray.serve.schema` / `ray.serve.config` of the Ray release the runtime image ships (the
operator never imports Ray): same names in snake_case, same bounds, so a bad value is refused by the API server
or reported on its own resource instead of failing Serve's one PUT for every application of the cluster.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import Field

from .base import FREE_FORM, ApiModel

# `package.module:attribute` or `package.module.attribute`, as Serve's import_attr reads it.
IMPORT_ATTR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*([.:][A-Za-z_][A-Za-z0-9_]*)$"


def import_path_field(description: str, *, default: Any = None) -> Any:
    return Field(default=default, pattern=IMPORT_ATTR_PATTERN, max_length=512, description=description)


class LogEncoding(str, Enum):
    TEXT = "TEXT"
    JSON = "JSON"


# Python's LogRecord attributes, the only ones Serve adds to log lines.
LOG_RECORD_ATTRS = (
    "args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName", "levelname", "levelno", "lineno",
    "message", "module", "msecs", "msg", "name", "pathname", "process", "processName", "relativeCreated",
    "stack_info", "taskName", "thread", "threadName",
)
LogRecordAttr = Enum("LogRecordAttr", {name: name for name in LOG_RECORD_ATTRS}, type=str)  # type: ignore[misc]


class LoggingConfig(ApiModel):
    """Serve's logging (`logging_config`); a deployment's wins over its application's, which wins over the
    cluster's."""

    encoding: LogEncoding | None = Field(default=None, description="TEXT (Serve's default) or JSON.")
    log_level: str | None = Field(
        default=None,
        pattern=r"^(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|NOTSET|[0-9]+)$",
        description="Level of Serve's logs: DEBUG, INFO (default), WARNING, ERROR, CRITICAL, or a number.",
    )
    logs_dir: str | None = Field(
        default=None, min_length=1, description="Directory of the log files inside the Ray container."
    )
    enable_access_log: bool | None = Field(default=None, description="Log every request (default true).")
    additional_log_standard_attrs: list[LogRecordAttr] | None = Field(
        default=None, description="Attributes of Python's LogRecord added to every log line, e.g. [name, lineno]."
    )


class TracingConfig(ApiModel):
    """Serve's request tracing (`tracing_config`)."""

    enabled: bool | None = Field(default=None, description="Trace requests.")
    exporter_import_path: str | None = import_path_field(
        "Import path of a function returning the span exporter, importable in the Ray image."
    )
    sampling_ratio: float | None = Field(
        default=None, ge=0, le=1, description="Share of requests traced, 0 to 1 (Serve's default: 0.01)."
    )


class BackpressureConfig(ApiModel):
    """What a caller gets when a deployment's queue (maxQueuedRequests) is full."""

    status_code: Literal[503, 429] | None = Field(default=None, description="HTTP status: 503 (default) or 429.")
    retry_after_s: float | None = Field(default=None, ge=0, description="Retry-After header value, in seconds.")


class AutoscalingPolicy(ApiModel):
    """A custom autoscaling policy function (Serve's `policy`)."""

    policy_function: str | None = import_path_field(
        "Import path of the policy function, e.g. mymodule:policy (Serve's default policy when unset)."
    )
    policy_kwargs: dict[str, Any] | None = Field(
        default=None, description="Keyword arguments passed to the policy function.", json_schema_extra=FREE_FORM
    )


class RequestRouterConfig(ApiModel):
    """How callers pick a replica for each request (Serve's `request_router_config`)."""

    request_router_class: str | None = import_path_field(
        "Import path of the RequestRouter class (Serve's default: power of two choices)."
    )
    request_router_kwargs: dict[str, Any] | None = Field(
        default=None, description="Keyword arguments passed to the router.", json_schema_extra=FREE_FORM
    )
    request_routing_stats_period_s: float | None = Field(
        default=None, gt=0, description="Seconds between routing stats reports of each replica."
    )
    request_routing_stats_timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds a routing stats report may take."
    )
    initial_backoff_s: float | None = Field(
        default=None, gt=0, description="First wait when no replica can take a request, in seconds."
    )
    backoff_multiplier: float | None = Field(default=None, gt=0, description="Growth of that wait per retry.")
    max_backoff_s: float | None = Field(default=None, gt=0, description="Longest wait between retries, in seconds.")


class GangPlacementStrategy(str, Enum):
    PACK = "PACK"
    SPREAD = "SPREAD"


class GangRuntimeFailurePolicy(str, Enum):
    # Ray 2.60 declares RESTART_REPLICA but refuses it as not implemented yet.
    RESTART_GANG = "RESTART_GANG"


class GangSchedulingConfig(ApiModel):
    """Replicas scheduled in gangs that start and fail together (Serve's `gang_scheduling_config`)."""

    gang_size: int = Field(ge=1, description="Replicas per gang.")
    gang_placement_strategy: GangPlacementStrategy | None = Field(
        default=None, description="PACK (default) or SPREAD a gang over Ray nodes."
    )
    runtime_failure_policy: GangRuntimeFailurePolicy | None = Field(
        default=None, description="What happens when one replica of a gang fails: RESTART_GANG (the only policy "
        "Ray 2.60 implements)."
    )


class DeploymentActor(ApiModel):
    """An actor shared by every replica of a deployment, started and removed with it."""

    name: str = Field(min_length=1, description="Name of the actor, unique within the deployment.")
    actor_class: str = import_path_field("Import path of the actor class, e.g. my_module:PrefixTreeActor.", default=...)
    init_args: list[Any] | None = Field(default=None, description="Positional arguments of the actor's constructor.")
    init_kwargs: dict[str, Any] | None = Field(
        default=None, description="Keyword arguments of the actor's constructor.", json_schema_extra=FREE_FORM
    )
    actor_options: dict[str, Any] | None = Field(
        default=None,
        description="Ray actor options (num_cpus, num_gpus, runtime_env, ...), in Ray's snake_case.",
        json_schema_extra=FREE_FORM,
    )
