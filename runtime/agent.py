"""The node agent: a FastAPI app on the agent port answering the kubelet and Prometheus.

    GET /livez          liveness  (200/503, JSON reason)  - probes.liveness
    GET /readyz         readiness (200/503, JSON reason)  - probes.readiness
    GET|POST /drain     preStop hook: drain, then 200     - drain.Drainer
    GET /metrics        Prometheus text                   - metrics.AgentMetrics

/drain changes the node's state (it stops being Ready for good), so it answers only the pod itself (a loopback
peer: the preStop hook's `python -m serveplane.runtime drain`) or a caller sending the cluster's Ray token
(`Authorization: Bearer <token>`, the token the Ray pods get as RAY_AUTH_TOKEN); with token authentication
disabled, only the pod itself. Anyone else gets 401 (no token) or 403 (a wrong one). The peer is the TCP peer:
uvicorn is told to ignore X-Forwarded-For. The probes and /metrics only read, and answer anyone the
NetworkPolicy lets in (the kubelet probes from the node).

The entrypoint runs it with uvicorn in a thread of its own process (`AgentServer`), next to the supervisor: one
small process (no Ray import) that knows Ray's pids first-hand. This module only gathers observations (local HTTP
checks, /proc) and hands them to the pure rules in probes.py.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from . import httpcheck, procfs
from .drain import Drainer
from .metrics import AgentMetrics
from .probes import Decision, HttpOutcome, Phase, ReadinessView, classify_proxy, liveness, readiness
from .state import NodeState

log = logging.getLogger(__name__)

# Both checks run concurrently and must fit the probes' timeoutSeconds (3) on a busy node.
CHECK_TIMEOUT_S = 1.5
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class AgentSettings:
    http_port: int
    dashboard_port: int | None  # head only
    node_ip: str
    auth_token: str | None = field(default=None, repr=False)
    """Ray's auth token (RAY_AUTH_TOKEN under RAY_AUTH_MODE=token): the dashboard refuses requests without it."""


class Checker:
    """Observes this node for /readyz and /metrics."""

    def __init__(self, *, settings: AgentSettings, state: NodeState) -> None:
        self._settings = settings
        self._state = state

    async def _dashboard_up(self) -> bool:
        assert self._settings.dashboard_port is not None
        token = self._settings.auth_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        result = await httpcheck.get(
            "127.0.0.1", self._settings.dashboard_port, "/api/ray/version", CHECK_TIMEOUT_S, headers=headers
        )
        return result.outcome is HttpOutcome.ANSWERED and result.status == 200

    async def _proxy(self) -> httpcheck.HttpResult:
        port = self._settings.http_port
        result = await httpcheck.get("127.0.0.1", port, "/-/healthz", CHECK_TIMEOUT_S)
        # Serve binds its proxy to http_options.host; if that is the pod IP only, loopback is refused.
        if result.outcome is HttpOutcome.REFUSED and self._settings.node_ip not in _LOOPBACK:
            result = await httpcheck.get(self._settings.node_ip, port, "/-/healthz", CHECK_TIMEOUT_S)
        return result

    async def readiness_view(self) -> ReadinessView:
        procs = self._state.process_view()
        draining = self._state.info().draining_since is not None
        if draining or procs.phase is not Phase.RUNNING or not procs.raylet_alive:
            # The answer is "not ready" whatever the proxy says: spare the HTTP checks.
            return ReadinessView(processes=procs, draining=draining, dashboard_up=None, proxy=None)
        dashboard_up: bool | None = None
        if self._state.is_head:
            dashboard_up, proxy = await asyncio.gather(self._dashboard_up(), self._proxy())
        else:
            proxy = await self._proxy()
        answered = proxy.outcome is HttpOutcome.ANSWERED
        return ReadinessView(
            processes=procs,
            draining=draining,
            dashboard_up=dashboard_up,
            proxy=classify_proxy(proxy.outcome, proxy.status, proxy.body),
            proxy_detail=f"HTTP {proxy.status} {proxy.body.strip()[:200]}" if answered else proxy.error,
        )


def is_loopback(host: str | None) -> bool:
    """Whether a peer address is this pod's own loopback (127.0.0.0/8, ::1, or IPv4 loopback mapped into IPv6)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def refusal(peer: str | None, authorization: str | None, token: str | None) -> tuple[int, str] | None:
    """Why a state-changing request is refused, as (HTTP status, reason), or None when it may go on: it comes from
    the pod itself, or carries the cluster's token (only when there is one: token authentication on)."""
    if is_loopback(peer):
        return None
    if token is None:
        return 403, "only the pod itself may drain it (token authentication is disabled)"
    scheme, _, sent = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        return 401, "the cluster's token is needed (Authorization: Bearer <token>)"
    if not hmac.compare_digest(sent.strip().encode(), token.encode()):
        return 403, "not the cluster's token"
    return None


def _answer(decision: Decision, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"ok": decision.ok, "reason": decision.reason, **body}, status_code=200 if decision.ok else 503)


def create_app(*, settings: AgentSettings, state: NodeState, drainer: Drainer, metrics: AgentMetrics) -> FastAPI:
    app = FastAPI(title="serveplane node agent", docs_url=None, redoc_url=None, openapi_url=None)
    checker = Checker(settings=settings, state=state)
    role = "head" if state.is_head else "worker"

    async def observe() -> tuple[ReadinessView, Decision]:
        view = await checker.readiness_view()
        decision = readiness(view)
        metrics.observe(view, decision, procfs.established_connections(settings.http_port))
        return view, decision

    @app.get("/livez")
    async def livez() -> JSONResponse:
        view = state.process_view()
        decision = liveness(view)
        metrics.count_probe("livez", decision)
        return _answer(decision, {"role": role, "phase": view.phase.value})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        view, decision = await observe()
        metrics.count_probe("readyz", decision)
        return _answer(
            decision,
            {
                "role": role,
                "phase": view.processes.phase.value,
                "draining": view.draining,
                "dashboard_up": view.dashboard_up,
                "proxy": view.proxy.value if view.proxy else None,
                "proxy_detail": view.proxy_detail,
            },
        )

    @app.api_route("/drain", methods=["GET", "POST"])
    async def drain(request: Request) -> JSONResponse:
        peer = request.client.host if request.client else None
        refused = refusal(peer, request.headers.get("authorization"), settings.auth_token)
        if refused is not None:
            log.warning("refused /drain from %s: %s", peer or "an unknown peer", refused[1])
            return JSONResponse({"ok": False, "reason": refused[1]}, status_code=refused[0])
        started = time.monotonic()
        result = await drainer.drain()
        metrics.drain_seconds.observe(time.monotonic() - started)
        return JSONResponse(result)

    @app.get("/metrics")
    async def prometheus() -> Response:
        await observe()
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


class AgentServer:
    """uvicorn in a daemon thread. Not in the main thread, so uvicorn leaves the signal handlers to the entrypoint."""

    def __init__(self, app: FastAPI, port: int) -> None:
        # proxy_headers off: the peer /drain trusts is the TCP peer, never what X-Forwarded-For claims.
        config = uvicorn.Config(app, host="0.0.0.0", port=port, log_level="warning", access_log=False,
                                lifespan="off", proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="agent", daemon=True)

    def start(self, timeout_s: float = 15.0) -> bool:
        """Start serving; False if it did not come up (e.g. the port is taken)."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(self._server.started)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
