"""PURE: Kubernetes-shaped conditions, and carrying lastTransitionTime over when a status does not change."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from .api.base import Condition, ConditionStatus

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"


def make(kind: str, status: bool | None, reason: str, message: str, generation: int) -> Condition:
    value = ConditionStatus.UNKNOWN if status is None else ConditionStatus.TRUE if status else ConditionStatus.FALSE
    return Condition(type=kind, status=value, reason=reason, message=message, observed_generation=generation)


def triple(
    generation: int,
    *,
    ready: tuple[bool | None, str, str],
    progressing: tuple[bool, str, str],
    degraded: tuple[bool, str, str],
) -> list[Condition]:
    """The three conditions every serveplane resource carries, each as (status, reason, message)."""
    return [
        make(READY, *ready, generation),
        make(PROGRESSING, *progressing, generation),
        make(DEGRADED, *degraded, generation),
    ]


def merge(old: list[dict[str, Any]], new: list[Condition], now: datetime) -> list[dict[str, Any]]:
    """New conditions on the wire, keeping each one's lastTransitionTime while its status stays the same."""
    previous = {c.get("type"): c for c in old}
    out = []
    for condition in new:
        before = previous.get(condition.type)
        same = before is not None and before.get("status") == condition.status.value
        stamp = before.get("lastTransitionTime") if same and before else None
        wire = condition.model_copy(update={"last_transition_time": None}).to_wire()
        wire["lastTransitionTime"] = stamp or now.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(wire)
    return out


def find(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def is_true(conditions: list[dict[str, Any]], kind: str) -> bool:
    found = find(conditions, kind)
    return bool(found and found.get("status") == "True")
