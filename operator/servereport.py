"""PURE: Serve's report (the dashboard's GET /api/serve/applications/, Ray's ServeInstanceDetails), as far as the
operator reads it: parsed once, in the observe step, and read as types everywhere after.

The models follow Ray's schema (`ray.serve.schema.ServeInstanceDetails`; a unit test checks the field names against
it) and ignore what they do not read, so a newer Ray's extra fields change nothing. A null where Ray may send one
reads as the field's default.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: Any) -> Any:
        field = cls.model_fields[info.field_name]
        return field.get_default(call_default_factory=True) if value is None and not field.is_required() else value


class ProxyReport(_Wire):
    node_ip: str | None = None
    status: str = ""
    """STARTING, HEALTHY, UNHEALTHY, DRAINING or DRAINED."""
    actor_id: str | None = None


class ReplicaReport(_Wire):
    state: str = ""


class DeploymentReport(_Wire):
    status: str = ""
    """UPDATING, HEALTHY, UNHEALTHY, DEPLOY_FAILED, UPSCALING or DOWNSCALING."""
    message: str = ""
    replicas: list[ReplicaReport] = Field(default_factory=list)
    target_num_replicas: int | None = None

    @property
    def running(self) -> int:
        return sum(1 for r in self.replicas if r.state == "RUNNING")


class AppReport(_Wire):
    status: str = ""
    """NOT_STARTED, DEPLOYING, DEPLOY_FAILED, RUNNING, UNHEALTHY or DELETING."""
    message: str = ""
    route_prefix: str | None = None
    deployments: dict[str, DeploymentReport] = Field(default_factory=dict)
    deployed_app_config: dict[str, Any] | None = None
    """The last config Serve deployed successfully: what keeps running when a change is refused."""


class ServeReport(_Wire):
    applications: dict[str, AppReport] = Field(default_factory=dict)
    proxies: dict[str, ProxyReport] = Field(default_factory=dict)
    """By node id. None at all: Serve's controller is not running."""
    target_capacity: float | None = None

    def app(self, name: str) -> AppReport | None:
        return self.applications.get(name)

    def running(self, names: set[str] | list[str]) -> bool:
        """Every one of these applications RUNNING."""
        return all((a := self.applications.get(n)) is not None and a.status == "RUNNING" for n in names)


def parse(answer: dict[str, Any]) -> ServeReport:
    """The dashboard's answer as a ServeReport; raises pydantic's ValidationError when it is not one."""
    return ServeReport.model_validate(answer)
