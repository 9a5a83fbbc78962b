"""Shared pieces of the API models: camelCase aliasing, schema hints for CRD generation, conditions.

Every model is declared once here in snake_case Python; the CRDs (camelCase) and the operator's parsing
of live objects both derive from them.
"""
from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "serveplane.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Schema hints that the CRD generator understands; pydantic passes them through untouched.
FREE_FORM: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
INT_OR_STRING: dict[str, Any] = {"x-kubernetes-int-or-string": True}


def rules(*pairs: tuple[str, str]) -> dict[str, Any]:
    """CEL validation rules (`x-kubernetes-validations`) as (rule, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in pairs]}


def rules_on_create(*pairs: tuple[str, str]) -> dict[str, Any]:
    """CEL rules checked only when the object is created, as (rule, message) pairs: for what cannot change later
    (metadata.name), so an object made before a rule existed can still be updated, its status written and its
    finalizers removed (`optionalOldSelf`: oldSelf has no value on a create)."""
    return {
        "x-kubernetes-validations": [
            {"rule": f"oldSelf.hasValue() || ({rule})", "message": message, "optionalOldSelf": True}
            for rule, message in pairs
        ]
    }


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict the API server stores, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(ApiModel):
    """Statuses tolerate fields they do not know, so an older operator can read a newer status."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """A condition in the shape every Kubernetes API uses (metav1.Condition)."""

    type: str = Field(description="Type of condition: Ready, Progressing or Degraded.")
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    reason: str = Field(description="A CamelCase word a program can act on, e.g. DeployFailed.")
    message: str = Field(default="", description="What happened and, when something is wrong, what to do about it.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation of the resource this condition was computed for."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When the condition last changed status (RFC 3339)."
    )


CONDITIONS_FIELD: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


def conditions_field() -> Any:
    return Field(
        default_factory=list,
        description="The latest observations of the resource's state: Ready, Progressing and Degraded.",
        json_schema_extra=CONDITIONS_FIELD,
    )


def observed_generation_field() -> Any:
    return Field(
        default=None,
        description="The metadata.generation the operator last acted on; older than metadata.generation means "
        "the operator has not caught up with the latest spec yet.",
    )
