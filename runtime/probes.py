"""PURE: from observations of this node to the answers of /livez and /readyz, each with a reason.

Called by the agent on every probe; no I/O here. The rules, in order (first match wins):

Liveness ("should the kubelet restart this container?") - only things a restart can fix count:
  1. waiting for the head's GCS            -> live: a restart would only wait again.
  2. stopping (drain or SIGTERM underway)  -> live: let the shutdown finish, never kill it half-way.
  3. Ray starting, raylet (and on the head the GCS) not seen yet
                                           -> live during the startup grace (counted from `ray start`), then dead.
  4. Ray running                           -> live while raylet (and on the head gcs_server) is alive.

Readiness ("is this Ray node up and its Serve proxy in a state Serve chose?"):
  1. draining (preStop /drain called)      -> not ready.
  2. waiting for the head / Ray starting / raylet or GCS down -> not ready.
  3. head: dashboard not answering         -> not ready (the operator needs it to deploy Serve).
  4. Serve proxy on this node:
       answers 200 "success"               -> ready.
       answers 503 "This node is being drained."
                                           -> ready: Serve drains proxies on nodes without replicas.
       refuses connections (no proxy)      -> ready: Serve starts proxies only where replicas run (and always on the
                                              head once Serve runs), so no proxy means Serve is not deployed yet
                                              or this node has no replicas.
       503 with another message ("Route table is not populated yet.", "No replicas are available yet."), any
       other status, a timeout or an error -> not ready: a proxy exists but cannot serve.
Which ready pods receive traffic is decided elsewhere: the operator labels pods from Serve's proxy report and the
serve Service selects on that label, so a Ready pod without replicas simply gets no traffic.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

# Texts of Serve's proxy health endpoint, copied from ray/serve/_private/constants.py (Ray 2.60) so the agent does
# not import Ray; tests/unit/test_runtime_probes.py checks them against the installed Ray.
SERVE_HEALTHY_MESSAGE = "success"
SERVE_DRAINING_MESSAGE = "This node is being drained."
SERVE_NO_ROUTES_MESSAGE = "Route table is not populated yet."
SERVE_NO_REPLICAS_MESSAGE = "No replicas are available yet."


class Phase(str, enum.Enum):
    """Where this node is in its life, as the entrypoint sees it."""

    WAITING_FOR_HEAD = "waiting_for_head"  # worker: head's GCS not resolvable or not answering yet
    STARTING = "starting"  # `ray start` launched, raylet (head: and GCS) not seen yet
    RUNNING = "running"
    STOPPING = "stopping"  # SIGTERM received, Ray being stopped
    EXITED = "exited"


class ProxyStatus(str, enum.Enum):
    """What this node's Serve proxy answered on GET /-/healthz."""

    HEALTHY = "healthy"  # 200
    DRAINED_BY_SERVE = "drained_by_serve"  # 503 "This node is being drained."
    STARTING = "starting"  # 503 route table not populated / no running replicas known yet
    UNHEALTHY = "unhealthy"  # any other HTTP answer
    ABSENT = "absent"  # connection refused: no proxy on this node
    UNREACHABLE = "unreachable"  # timeout or other network error


class HttpOutcome(str, enum.Enum):
    ANSWERED = "answered"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class Decision:
    ok: bool
    reason: str


@dataclass(frozen=True)
class ProcessView:
    """Ray's processes as the supervisor tracks them, for the liveness rule."""

    is_head: bool
    phase: Phase
    raylet_alive: bool
    gcs_alive: bool  # always False on a worker (its GCS is on the head)
    seconds_since_start: float | None  # since `ray start` was launched; None before
    startup_grace_s: float


@dataclass(frozen=True)
class ReadinessView:
    """Everything /readyz looks at."""

    processes: ProcessView
    draining: bool
    dashboard_up: bool | None  # head only; None when not checked
    proxy: ProxyStatus | None  # None when not checked
    proxy_detail: str = ""


def classify_proxy(outcome: HttpOutcome, status: int | None = None, body: str = "") -> ProxyStatus:
    """Map an answer of GET /-/healthz to what it means for readiness."""
    if outcome is HttpOutcome.REFUSED:
        return ProxyStatus.ABSENT
    if outcome is not HttpOutcome.ANSWERED or status is None:
        return ProxyStatus.UNREACHABLE
    if status == 200:
        return ProxyStatus.HEALTHY
    if status == 503:
        text = body.strip()
        if SERVE_DRAINING_MESSAGE in text:
            return ProxyStatus.DRAINED_BY_SERVE
        if SERVE_NO_ROUTES_MESSAGE in text or SERVE_NO_REPLICAS_MESSAGE in text:
            return ProxyStatus.STARTING
    return ProxyStatus.UNHEALTHY


def _ray_processes_down(view: ProcessView) -> str | None:
    """Why Ray is not (or no longer) fully up on this node, or None when it is."""
    if not view.raylet_alive:
        return "raylet is not running"
    if view.is_head and not view.gcs_alive:
        return "gcs_server is not running"
    return None


def liveness(view: ProcessView) -> Decision:
    if view.phase is Phase.WAITING_FOR_HEAD:
        return Decision(True, "waiting for the head's GCS; a restart would not help")
    if view.phase in (Phase.STOPPING, Phase.EXITED):
        return Decision(True, "shutting down")
    if view.phase is Phase.STARTING:
        elapsed = view.seconds_since_start or 0.0
        if elapsed < view.startup_grace_s:
            return Decision(True, f"ray starting ({elapsed:.0f}s of {view.startup_grace_s:.0f}s startup grace)")
        return Decision(False, f"ray not up {elapsed:.0f}s after start (grace {view.startup_grace_s:.0f}s)")
    down = _ray_processes_down(view)
    if down:
        return Decision(False, down)
    return Decision(True, "raylet and gcs_server running" if view.is_head else "raylet running")


_PROXY_READY = {
    ProxyStatus.HEALTHY: "serve proxy healthy",
    ProxyStatus.DRAINED_BY_SERVE: "serve proxy drained by Serve: no replicas on this node",
    ProxyStatus.ABSENT: "no serve proxy on this node: Serve not deployed yet or no replicas here",
}


def readiness(view: ReadinessView) -> Decision:
    procs = view.processes
    if view.draining:
        return Decision(False, "draining: pod is shutting down")
    if procs.phase is Phase.WAITING_FOR_HEAD:
        return Decision(False, "waiting for the head's GCS")
    if procs.phase is Phase.STARTING:
        return Decision(False, "ray starting")
    if procs.phase in (Phase.STOPPING, Phase.EXITED):
        return Decision(False, "ray stopping")
    down = _ray_processes_down(procs)
    if down:
        return Decision(False, down)
    if procs.is_head and not view.dashboard_up:
        return Decision(False, "dashboard not answering")
    if view.proxy is None:
        return Decision(False, "serve proxy not checked")
    if view.proxy in _PROXY_READY:
        return Decision(True, _PROXY_READY[view.proxy])
    detail = f": {view.proxy_detail}" if view.proxy_detail else ""
    return Decision(False, f"serve proxy {view.proxy.value}{detail}")


def drain_verdict(*, elapsed_s: float, min_wait_s: float, timeout_s: float, connections: int | None) -> str | None:
    """Why /drain may return now ("timeout" or "idle"), or None to keep waiting.

    Idle means: at least `min_wait_s` passed (endpoints need a moment to drop a terminating pod, and requests that
    arrive meanwhile must still be served) and no client is connected to this node's Serve proxy (an open
    connection may carry more requests; None means unknown and does not hold the drain up).
    """
    if elapsed_s >= timeout_s:
        return "timeout"
    if elapsed_s < min_wait_s or (connections or 0) > 0:
        return None
    return "idle"
