"""Pod status as a kubelet reports it: phase, conditions and the patch that carries them.

Pure functions plus a small clock for condition transition times; the pod
worker supplies the container statuses.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Conditions the kubelet owns. PodScheduled belongs to the scheduler, readiness
# gates to whoever declared them; a strategic merge patch leaves those alone.
OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
TERMINAL_PHASES = ("Succeeded", "Failed")


def rfc3339(when: datetime.datetime | None = None) -> str:
    when = when or datetime.datetime.now(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str | None = None
    message: str | None = None


def _counts(statuses: Sequence[Mapping[str, Any]]) -> tuple[int, int, int, int]:
    """(running, waiting-never-ran, stopped, succeeded) in the kubelet's getPhase sense."""
    running = waiting = stopped = succeeded = 0
    for status in statuses:
        state = status.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode") == 0
        else:
            last = (status.get("lastState") or {}).get("terminated")
            if last is not None:
                # Waiting to restart after a run counts as stopped, not pending.
                stopped += 1
                succeeded += last.get("exitCode") == 0
            else:
                waiting += 1
    return running, waiting, stopped, succeeded


def phase(
    restart_policy: str,
    statuses: Sequence[Mapping[str, Any]],
    *,
    initialized: bool,
    init_failed: bool,
    will_restart: bool,
) -> str:
    """The pod phase from its app containers' statuses (the kubelet's getPhase)."""
    if init_failed:
        return "Failed"
    if not initialized:
        return "Pending"
    running, waiting, stopped, succeeded = _counts(statuses)
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if restart_policy == "Always" or will_restart:
        return "Running"
    return "Succeeded" if stopped == succeeded else "Failed"


def conditions(
    pod: Mapping[str, Any],
    *,
    sandbox_ready: bool,
    initialized: bool,
    pending_init: Sequence[str],
    unready: Sequence[str],
    pod_phase: str,
) -> list[Condition]:
    completed = pod_phase in TERMINAL_PHASES
    result = [Condition("PodReadyToStartContainers", sandbox_ready and not completed)]
    if initialized:
        result.append(Condition("Initialized", True))
    else:
        result.append(Condition(
            "Initialized", False, "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(pending_init)}]",
        ))
    if completed:
        containers_ready = Condition("ContainersReady", False, "PodCompleted")
    elif unready:
        containers_ready = Condition(
            "ContainersReady", False, "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
        )
    else:
        containers_ready = Condition("ContainersReady", True)
    result.append(containers_ready)
    gates = [g["conditionType"] for g in (pod.get("spec", {}).get("readinessGates") or [])]
    current = {c["type"]: c.get("status") for c in (pod.get("status", {}).get("conditions") or [])}
    missing_gates = [g for g in gates if current.get(g) != "True"]
    if not containers_ready.status:
        result.append(Condition("Ready", False, containers_ready.reason, containers_ready.message))
    elif missing_gates:
        message = f"corresponding condition of pod readiness gate {missing_gates[0]!r} does not exist or is False"
        result.append(Condition("Ready", False, "ReadinessGatesNotReady", message))
    else:
        result.append(Condition("Ready", True))
    return result


class TransitionClock:
    """Remembers when each condition last changed status, seeded from the pod's current status."""

    def __init__(self, pod: Mapping[str, Any]) -> None:
        self._seen: dict[str, tuple[bool, str]] = {}
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") in OWNED_CONDITIONS and cond.get("lastTransitionTime"):
                self._seen[cond["type"]] = (cond.get("status") == "True", cond["lastTransitionTime"])

    def render(self, conds: Sequence[Condition]) -> list[dict[str, Any]]:
        out = []
        for cond in conds:
            previous = self._seen.get(cond.type)
            when = previous[1] if previous and previous[0] == cond.status else rfc3339()
            self._seen[cond.type] = (cond.status, when)
            # Explicit nulls: a strategic merge would otherwise keep an old reason.
            out.append({
                "type": cond.type,
                "status": "True" if cond.status else "False",
                "lastProbeTime": None,
                "lastTransitionTime": when,
                "reason": cond.reason,
                "message": cond.message,
            })
        return out


def status_patch(
    *,
    pod_phase: str,
    host_ip: str,
    pod_ip: str | None,
    start_time: str,
    conditions: list[dict[str, Any]],
    init_statuses: list[dict[str, Any]],
    container_statuses: list[dict[str, Any]],
    message: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The body of a strategic merge patch on pods/status."""
    status: dict[str, Any] = {
        "phase": pod_phase,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "conditions": conditions,
        "containerStatuses": container_statuses,
        "message": message,
        "reason": reason,
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return {"status": status}
