"""The pure probe rules of serveplane.runtime.probes: liveness, readiness, proxy answers and the drain verdict."""

import dataclasses

import pytest

from serveplane.runtime import probes
from serveplane.runtime.probes import (
    Decision,
    HttpOutcome,
    Phase,
    ProcessView,
    ProxyStatus,
    ReadinessView,
    classify_proxy,
    drain_verdict,
    liveness,
    readiness,
)

HEAD_UP = ProcessView(
    is_head=True, phase=Phase.RUNNING, raylet_alive=True, gcs_alive=True, seconds_since_start=30.0,
    startup_grace_s=120.0,
)
WORKER_UP = dataclasses.replace(HEAD_UP, is_head=False, gcs_alive=False)


def procs(base: ProcessView = HEAD_UP, **changes: object) -> ProcessView:
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def ready_view(
    processes: ProcessView = HEAD_UP,
    *,
    draining: bool = False,
    dashboard_up: bool | None = True,
    proxy: ProxyStatus | None = ProxyStatus.HEALTHY,
) -> ReadinessView:
    return ReadinessView(processes=processes, draining=draining, dashboard_up=dashboard_up, proxy=proxy)


# --- Serve's texts: copied so the agent does not import Ray; they must match the installed Ray ---------------


def test_serve_messages_match_installed_ray() -> None:
    constants = pytest.importorskip("ray.serve._private.constants")
    assert probes.SERVE_HEALTHY_MESSAGE == constants.HEALTHY_MESSAGE
    assert probes.SERVE_DRAINING_MESSAGE == constants.DRAINING_MESSAGE
    assert probes.SERVE_NO_ROUTES_MESSAGE == constants.NO_ROUTES_MESSAGE
    assert probes.SERVE_NO_REPLICAS_MESSAGE == constants.NO_REPLICAS_MESSAGE


# --- classify_proxy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status", "body", "expected"),
    [
        (HttpOutcome.ANSWERED, 200, "success", ProxyStatus.HEALTHY),
        (HttpOutcome.ANSWERED, 503, "This node is being drained.", ProxyStatus.DRAINED_BY_SERVE),
        (HttpOutcome.ANSWERED, 503, "This node is being drained.\n", ProxyStatus.DRAINED_BY_SERVE),
        (HttpOutcome.ANSWERED, 503, "Route table is not populated yet.", ProxyStatus.STARTING),
        (HttpOutcome.ANSWERED, 503, "No replicas are available yet.", ProxyStatus.STARTING),
        (HttpOutcome.ANSWERED, 503, "something else", ProxyStatus.UNHEALTHY),
        (HttpOutcome.ANSWERED, 500, "This node is being drained.", ProxyStatus.UNHEALTHY),
        (HttpOutcome.ANSWERED, 404, "", ProxyStatus.UNHEALTHY),
        (HttpOutcome.REFUSED, None, "", ProxyStatus.ABSENT),
        (HttpOutcome.TIMEOUT, None, "", ProxyStatus.UNREACHABLE),
        (HttpOutcome.ERROR, None, "", ProxyStatus.UNREACHABLE),
        (HttpOutcome.ANSWERED, None, "", ProxyStatus.UNREACHABLE),
    ],
)
def test_classify_proxy(outcome: HttpOutcome, status: int | None, body: str, expected: ProxyStatus) -> None:
    assert classify_proxy(outcome, status, body) is expected


# --- liveness -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("view", "ok", "reason_part"),
    [
        (procs(WORKER_UP, phase=Phase.WAITING_FOR_HEAD, raylet_alive=False), True, "waiting for the head"),
        (procs(phase=Phase.STARTING, raylet_alive=False, gcs_alive=False, seconds_since_start=5.0), True, "grace"),
        (procs(phase=Phase.STARTING, raylet_alive=False, seconds_since_start=119.9), True, "grace"),
        (procs(phase=Phase.STARTING, raylet_alive=False, seconds_since_start=120.0), False, "not up"),
        (procs(phase=Phase.STARTING, raylet_alive=False, seconds_since_start=None), True, "grace"),
        (HEAD_UP, True, "raylet and gcs_server running"),
        (WORKER_UP, True, "raylet running"),
        (procs(raylet_alive=False), False, "raylet"),
        (procs(gcs_alive=False), False, "gcs_server"),
        (procs(WORKER_UP, raylet_alive=False), False, "raylet"),
        (procs(phase=Phase.STOPPING, raylet_alive=False, gcs_alive=False), True, "shutting down"),
        (procs(phase=Phase.EXITED, raylet_alive=False, gcs_alive=False), True, "shutting down"),
    ],
)
def test_liveness(view: ProcessView, ok: bool, reason_part: str) -> None:
    decision = liveness(view)
    assert decision.ok is ok
    assert reason_part in decision.reason


def test_worker_does_not_need_a_gcs_to_be_live() -> None:
    # A worker's GCS is on the head: gcs_alive is always False there and must not matter.
    assert liveness(procs(WORKER_UP, gcs_alive=False)).ok
    assert readiness(ready_view(procs(WORKER_UP, gcs_alive=False), dashboard_up=None)).ok


# --- readiness ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxy", "ok"),
    [
        (ProxyStatus.HEALTHY, True),
        (ProxyStatus.DRAINED_BY_SERVE, True),
        (ProxyStatus.ABSENT, True),
        (ProxyStatus.STARTING, False),
        (ProxyStatus.UNHEALTHY, False),
        (ProxyStatus.UNREACHABLE, False),
        (None, False),
    ],
)
@pytest.mark.parametrize("node", [HEAD_UP, WORKER_UP], ids=["head", "worker"])
def test_readiness_by_proxy_status(node: ProcessView, proxy: ProxyStatus | None, ok: bool) -> None:
    decision = readiness(ready_view(node, proxy=proxy, dashboard_up=True if node.is_head else None))
    assert decision.ok is ok
    assert decision.reason


def test_head_before_serve_is_ready_once_the_dashboard_answers() -> None:
    # No Serve app yet: no proxy at all, but the operator needs a Ready head to deploy through the dashboard.
    assert readiness(ready_view(proxy=ProxyStatus.ABSENT, dashboard_up=True)) == Decision(
        True, "no serve proxy on this node: Serve not deployed yet or no replicas here"
    )
    assert readiness(ready_view(proxy=ProxyStatus.ABSENT, dashboard_up=False)) == Decision(
        False, "dashboard not answering"
    )


def test_head_needs_its_dashboard_even_with_a_healthy_proxy() -> None:
    assert not readiness(ready_view(dashboard_up=False)).ok
    assert not readiness(ready_view(dashboard_up=None)).ok


def test_worker_without_replicas_is_ready() -> None:
    drained = readiness(ready_view(WORKER_UP, dashboard_up=None, proxy=ProxyStatus.DRAINED_BY_SERVE))
    assert drained.ok and "no replicas" in drained.reason


@pytest.mark.parametrize(
    ("view", "reason_part"),
    [
        (ready_view(draining=True), "draining"),
        (ready_view(draining=True, proxy=ProxyStatus.DRAINED_BY_SERVE), "draining"),
        (ready_view(procs(WORKER_UP, phase=Phase.WAITING_FOR_HEAD, raylet_alive=False)), "waiting"),
        (ready_view(procs(phase=Phase.STARTING, raylet_alive=False)), "starting"),
        (ready_view(procs(phase=Phase.STOPPING)), "stopping"),
        (ready_view(procs(raylet_alive=False)), "raylet"),
        (ready_view(procs(gcs_alive=False)), "gcs_server"),
    ],
)
def test_not_ready(view: ReadinessView, reason_part: str) -> None:
    decision = readiness(view)
    assert not decision.ok
    assert reason_part in decision.reason


def test_unready_proxy_reason_carries_its_answer() -> None:
    view = dataclasses.replace(ready_view(proxy=ProxyStatus.STARTING), proxy_detail="HTTP 503 Route table is not")
    assert readiness(view).reason == "serve proxy starting: HTTP 503 Route table is not"


# --- drain verdict ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "connections", "expected"),
    [
        (0.0, 0, None),  # always wait the minimum: endpoints lag behind
        (2.9, 0, None),
        (3.0, 0, "idle"),
        (3.0, None, "idle"),  # unknown connection count does not hold the drain up
        (3.0, 2, None),
        (19.9, 1, None),
        (20.0, 1, "timeout"),
        (20.0, 0, "timeout"),
        (30.0, None, "timeout"),
    ],
)
def test_drain_verdict(elapsed: float, connections: int | None, expected: str | None) -> None:
    assert drain_verdict(elapsed_s=elapsed, min_wait_s=3.0, timeout_s=20.0, connections=connections) == expected


def test_drain_verdict_timeout_below_minimum_wins() -> None:
    assert drain_verdict(elapsed_s=1.0, min_wait_s=3.0, timeout_s=1.0, connections=0) == "timeout"
