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
from typing import Any

import pytest

from serveplane.runtime import entrypoint
from serveplane.runtime.agent import AgentServer, AgentSettings, Checker, create_app, is_loopback, refusal
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


# --- /drain needs the cluster's token or the pod itself ------------------------------------------------------------

TOKEN = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.7", False), ("fd00::5", False), ("0.0.0.0", False), ("localhost", False), ("", False), (None, False)],
)
def test_loopback_is_an_address_of_the_pod_itself(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("peer", "authorization", "token", "expected"),
    [
        ("127.0.0.1", None, TOKEN, None),  # the preStop hook, from the pod itself
        ("127.0.0.1", None, None, None),  # ... with token authentication disabled too
        ("10.0.0.7", f"Bearer {TOKEN}", TOKEN, None),
        ("10.0.0.7", f"bearer {TOKEN}", TOKEN, None),  # the scheme is case-insensitive (RFC 7235)
        ("10.0.0.7", None, TOKEN, 401),
        ("10.0.0.7", "Bearer ", TOKEN, 401),
        ("10.0.0.7", f"Basic {TOKEN}", TOKEN, 401),
        ("10.0.0.7", "Bearer another-token", TOKEN, 403),
        ("10.0.0.7", f"Bearer {TOKEN}x", TOKEN, 403),
        ("10.0.0.7", f"Bearer {TOKEN}", None, 403),  # auth disabled: only the pod itself
        ("10.0.0.7", None, None, 403),
        (None, f"Bearer {TOKEN}", TOKEN, None),
        (None, None, TOKEN, 401),
    ],
)
def test_who_may_drain(peer: str | None, authorization: str | None, token: str | None, expected: int | None) -> None:
    refused = refusal(peer, authorization, token)
    assert (refused[0] if refused else None) == expected


def drain_app(token: str | None, state: NodeState) -> Any:
    return create_app(
        settings=AgentSettings(http_port=free_port(), dashboard_port=free_port(), node_ip="10.0.0.5",
                               auth_token=token),
        state=state,
        drainer=Drainer(settings=DrainSettings(http_port=free_port(), timeout_s=2.0, min_wait_s=0.2), state=state),
        metrics=AgentMetrics(role="worker", node_ip="10.0.0.5", cluster="c1"),
    )


async def call(app: Any, path: str, *, client: tuple[str, int], headers: dict[str, str] | None = None,
               method: str = "POST") -> tuple[int, dict[str, Any]]:
    """One request straight through the ASGI app, from a peer address of the test's choosing (what uvicorn puts in
    the scope's `client`): a neighbour pod, the kubelet, or the pod itself."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": client, "server": ("10.0.0.5", 8471),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


NEIGHBOUR = ("10.0.0.9", 40000)


async def test_a_neighbour_without_the_token_cannot_drain_and_the_node_stays_ready() -> None:
    state = NodeState(is_head=False, startup_grace_s=120.0)
    app = drain_app(TOKEN, state)
    for method in ("GET", "POST"):
        assert await call(app, "/drain", client=NEIGHBOUR, method=method) == (
            401, {"ok": False, "reason": "the cluster's token is needed (Authorization: Bearer <token>)"})
    code, answer = await call(app, "/drain", client=NEIGHBOUR, headers={"Authorization": "Bearer guess"})
    assert (code, answer["reason"]) == (403, "not the cluster's token")
    # X-Forwarded-For is no way in: the app sees the TCP peer uvicorn gives it.
    code, _ = await call(app, "/drain", client=NEIGHBOUR, headers={"X-Forwarded-For": "127.0.0.1"})
    assert code == 401
    assert state.info().draining_since is None, "a refused drain must not start draining"


async def test_the_token_or_the_pod_itself_drains() -> None:
    with_token = NodeState(is_head=False, startup_grace_s=120.0)
    code, answer = await call(drain_app(TOKEN, with_token), "/drain", client=NEIGHBOUR,
                              headers={"Authorization": f"Bearer {TOKEN}"})
    assert code == 200 and answer["drained"] is True
    assert with_token.info().draining_since is not None
    itself = NodeState(is_head=False, startup_grace_s=120.0)
    code, answer = await call(drain_app(TOKEN, itself), "/drain", client=("127.0.0.1", 50000))
    assert code == 200 and answer["drained"] is True


async def test_with_auth_disabled_only_the_pod_itself_drains() -> None:
    state = NodeState(is_head=False, startup_grace_s=120.0)
    app = drain_app(None, state)
    code, answer = await call(app, "/drain", client=NEIGHBOUR, headers={"Authorization": f"Bearer {TOKEN}"})
    assert code == 403 and "only the pod itself" in answer["reason"]
    assert state.info().draining_since is None
    code, answer = await call(app, "/drain", client=("127.0.0.1", 50000))
    assert code == 200 and answer["drained"] is True


async def test_the_probes_and_metrics_still_answer_anyone() -> None:
    state = NodeState(is_head=False, startup_grace_s=120.0)
    app = drain_app(TOKEN, state)
    code, answer = await call(app, "/livez", client=NEIGHBOUR, method="GET")
    assert code == 200 and answer["ok"] is True


def test_the_agent_ignores_x_forwarded_for_over_real_http(agent: Agent) -> None:
    """With uvicorn's proxy headers on, a loopback peer's X-Forwarded-For would be believed; off, the peer is the
    peer. A token-less agent reached over loopback drains whatever the header claims."""
    request = urllib.request.Request(agent.url + "/drain", method="POST", data=b"",
                                     headers={"X-Forwarded-For": "10.9.9.9"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and json.loads(response.read())["drained"] is True


def test_the_drain_command_drains_over_loopback(agent: Agent) -> None:
    """`python -m serveplane.runtime drain --agent-port=P`, the preStop hook's command, from inside the pod."""
    port = int(agent.url.rsplit(":", 1)[1])
    assert entrypoint.main(["drain", f"--agent-port={port}", "--timeout=10"]) == entrypoint.EXIT_OK
    assert agent.state.info().draining_since is not None
    code, answer = get(agent.url + "/readyz")
    assert code == 503 and isinstance(answer, dict) and answer["draining"] is True


def test_the_drain_command_sends_the_token_and_fails_without_an_agent() -> None:
    status, text = entrypoint.request_drain(free_port(), TOKEN, 2.0)
    assert status == 0 and text
    assert entrypoint.drain_main([f"--agent-port={free_port()}", "--timeout=2"], {}) == entrypoint.EXIT_RAY_DIED
    assert entrypoint.drain_main(["--agent-port=1", "--timeout=0"], {}) == entrypoint.EXIT_USAGE


def test_the_drain_command_sends_the_token_under_token_auth() -> None:
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            seen.append(self.headers.get("Authorization"))
            payload = b'{"drained": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        environ = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
        assert entrypoint.drain_main([f"--agent-port={port}"], environ) == entrypoint.EXIT_OK
        assert entrypoint.drain_main([f"--agent-port={port}"], {}) == entrypoint.EXIT_OK
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [f"Bearer {TOKEN}", None]


def test_a_stop_without_a_prestop_drain_drains_first(agent: Agent) -> None:
    """A SIGTERM no drain came before (a refused or failed hook, an older pod's hook) drains through the agent on
    loopback first; one after the preStop drain does not drain again."""
    from serveplane.runtime import args as cli

    port = int(agent.url.rsplit(":", 1)[1])
    argv = ["worker", f"--agent-port={port}", "--http-port=8000", "--metrics-port=8080", "--address=h:6379",
            "--drain-timeout=2"]
    runtime = entrypoint.Runtime(cli.parse(argv, {}), "/tmp/ray-unused", {"POD_IP": "127.0.0.1"})
    runtime.state.start_draining()  # the preStop hook drained this node already
    runtime.drain_first()
    assert agent.state.info().draining_since is None, "no second drain"
    fresh = entrypoint.Runtime(cli.parse(argv, {}), "/tmp/ray-unused", {"POD_IP": "127.0.0.1"})
    fresh.drain_first()
    assert agent.state.info().draining_since is not None
