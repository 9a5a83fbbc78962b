"""The node agent over real HTTP: uvicorn in its thread, a stand-in Serve proxy and dashboard, no Ray.

The stand-ins answer what Serve's proxy and Ray's dashboard answer (texts from Ray 2.60), so these tests cover the
agent's whole chain: HTTP check -> classification -> rule -> JSON and metrics.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serveplane.runtime.agent import AgentServer, AgentSettings, Checker, create_app
from serveplane.runtime.drain import Drainer, DrainSettings
from serveplane.runtime.entrypoint import auth_token
from serveplane.runtime.metrics import AgentMetrics
from serveplane.runtime.probes import Phase
from serveplane.runtime.state import NodeState


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StandIn:
    """An HTTP server answering every GET with `status` and `body`; `stop()` makes its port refuse connections."""

    def __init__(self, port: int) -> None:
        self.status, self.body = 200, "success"
        self.token: str | None = None
        """When set, answer as Ray's token authentication does: 401 without a token, 403 with another one."""
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                payload, status = stand_in.body.encode(), stand_in.status
                sent = self.headers.get("Authorization")
                if stand_in.token is not None and sent != f"Bearer {stand_in.token}":
                    payload, status = b"Unauthorized", 401 if sent is None else 403
                self.send_response(status)
                # Chunked like Serve's proxy, to exercise the agent's decoding.
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, status: int, body: str) -> None:
        self.status, self.body = status, body

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Agent:
    url: str
    state: NodeState
    proxy: StandIn
    dashboard: StandIn
    http_port: int


def get(url: str, timeout: float = 10.0) -> tuple[int, dict | str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


@pytest.fixture
def agent() -> Iterator[Agent]:
    http_port, dashboard_port, agent_port = free_port(), free_port(), free_port()
    state = NodeState(is_head=True, startup_grace_s=120.0)
    # Our own pid stands for raylet and GCS: alive for as long as the test runs.
    state.update(phase=Phase.RUNNING, raylet_pid=os.getpid(), gcs_pid=os.getpid(), started_at=time.monotonic())
    proxy, dashboard = StandIn(http_port), StandIn(dashboard_port)
    dashboard.answer(200, '{"ray_version": "2.60.0"}')
    app = create_app(
        settings=AgentSettings(http_port=http_port, dashboard_port=dashboard_port, node_ip="127.0.0.1"),
        state=state,
        drainer=Drainer(settings=DrainSettings(http_port=http_port, timeout_s=2.0, min_wait_s=0.3), state=state),
        metrics=AgentMetrics(role="head", node_ip="127.0.0.1", cluster="c1"),
    )
    server = AgentServer(app, agent_port)
    assert server.start()
    try:
        yield Agent(f"http://127.0.0.1:{agent_port}", state, proxy, dashboard, http_port)
    finally:
        server.stop()
        proxy.stop()
        dashboard.stop()


@pytest.mark.parametrize(
    ("status", "body", "ready", "proxy"),
    [
        (200, "success", True, "healthy"),
        (503, "This node is being drained.", True, "drained_by_serve"),
        (503, "Route table is not populated yet.", False, "starting"),
        (500, "boom", False, "unhealthy"),
    ],
)
def test_readyz_follows_the_proxy(agent: Agent, status: int, body: str, ready: bool, proxy: str) -> None:
    agent.proxy.answer(status, body)
    code, answer = get(agent.url + "/readyz")
    assert isinstance(answer, dict)
    assert (code == 200, answer["ok"], answer["proxy"]) == (ready, ready, proxy)
    assert answer["reason"]


def test_readyz_without_proxy_is_ready_once_dashboard_answers(agent: Agent) -> None:
    agent.proxy.stop()
    code, answer = get(agent.url + "/readyz")
    assert code == 200 and isinstance(answer, dict)
    assert answer["proxy"] == "absent" and answer["dashboard_up"] is True
    agent.dashboard.answer(503, "starting")
    code, answer = get(agent.url + "/readyz")
    assert code == 503 and isinstance(answer, dict)
    assert answer["reason"] == "dashboard not answering"


def test_livez_follows_raylet(agent: Agent) -> None:
    assert get(agent.url + "/livez")[0] == 200
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    agent.state.update(raylet_pid=dead.pid)
    code, answer = get(agent.url + "/livez")
    assert code == 503 and isinstance(answer, dict) and "raylet" in answer["reason"]
    assert get(agent.url + "/readyz")[0] == 503


def test_drain_waits_for_open_connections_then_readyz_fails(agent: Agent) -> None:
    client = socket.create_connection(("127.0.0.1", agent.http_port))  # a keep-alive client of the "proxy"
    try:
        started = time.monotonic()
        code, drained = get(agent.url + "/drain")
        assert code == 200 and isinstance(drained, dict)
        assert drained["ended"] == "timeout" and drained["proxy_connections"] == 1
        assert 2.0 <= time.monotonic() - started < 5.0
    finally:
        client.close()
    code, answer = get(agent.url + "/readyz")
    assert code == 503 and isinstance(answer, dict) and answer["draining"] is True
    # Liveness must not kill a draining pod.
    assert get(agent.url + "/livez")[0] == 200
    # Idempotent: a second call returns the first drain's result at once.
    started = time.monotonic()
    assert get(agent.url + "/drain") == (200, drained)
    assert time.monotonic() - started < 1.0


def test_drain_ends_early_when_idle(agent: Agent) -> None:
    started = time.monotonic()
    code, answer = get(agent.url + "/drain")
    assert code == 200 and isinstance(answer, dict) and answer["ended"] == "idle"
    assert 0.3 <= time.monotonic() - started < 1.9


def test_metrics(agent: Agent) -> None:
    get(agent.url + "/readyz")
    get(agent.url + "/livez")
    code, text = get(agent.url + "/metrics")
    assert code == 200 and isinstance(text, str)
    for line in [
        'serveplane_agent_probe_total{probe="readyz",result="ok"} 1.0',
        'serveplane_agent_probe_total{probe="livez",result="ok"} 1.0',
        "serveplane_agent_proxy_healthy 1.0",
        'serveplane_agent_proxy_status{status="healthy"} 1.0',
        "serveplane_agent_raylet_up 1.0",
        "serveplane_agent_gcs_up 1.0",
        "serveplane_agent_dashboard_up 1.0",
        "serveplane_agent_draining 0.0",
        "serveplane_agent_ready 1.0",
        'serveplane_agent_info{cluster="c1",node_ip="127.0.0.1",role="head"} 1.0',
    ]:
        assert line in text.splitlines(), line
    assert "serveplane_agent_process_resident_memory_bytes" in text


@pytest.mark.parametrize(("sent", "up"), [("the-token", True), (None, False), ("another-token", False)])
def test_the_dashboard_check_sends_rays_auth_token(sent: str | None, up: bool) -> None:
    """Under RAY_AUTH_MODE=token the dashboard refuses /api/ray/version without the token (Ray 2.60): the head's
    readiness check must send it, or a head with token auth would never be Ready."""
    import asyncio

    port = free_port()
    dashboard = StandIn(port)
    dashboard.answer(200, '{"ray_version": "2.60.0"}')
    dashboard.token = "the-token"
    state = NodeState(is_head=True, startup_grace_s=120.0)
    settings = AgentSettings(http_port=free_port(), dashboard_port=port, node_ip="127.0.0.1", auth_token=sent)
    try:
        assert asyncio.run(Checker(settings=settings, state=state)._dashboard_up()) is up
    finally:
        dashboard.stop()
    assert "the-token" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "token"),
    [
        ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "abc"}, "abc"),
        ({"RAY_AUTH_MODE": "token"}, None),
        ({"RAY_AUTH_TOKEN": "abc"}, None),
        ({}, None),
    ],
)
def test_the_agent_uses_the_token_only_under_token_auth(environ: dict[str, str], token: str | None) -> None:
    assert auth_token(environ) == token
