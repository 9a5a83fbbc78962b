"""Ray's token authentication, as the operator runs every cluster by default, against a real Ray head (2.60).

What it protects: the dashboard (Serve's REST API, the Jobs API: remote code execution for whoever reaches it)
refuses requests without the token (401) or with another one (403). What it does not touch: Serve's HTTP and gRPC
proxies, so users' requests need no token. DashboardClient, given the token, deploys, updates and reads apps.
"""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
import grpc
import pytest
from ray.serve.generated import serve_pb2, serve_pb2_grpc

from serveplane.operator.clients.dashboard import DashboardClient, DashboardError, DashboardUnauthorized

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

DEPLOY_TIMEOUT_S = 120.0
# Serve starts its gRPC proxy only with a servicer function; Ray ships this one for tests.
SERVICER = "ray.serve.generated.serve_pb2_grpc.add_UserDefinedServiceServicer_to_server"


class RayHead(Protocol):
    dashboard_url: str
    serve_port: int
    grpc_port: int
    gcs_port: int
    auth_token: str | None

    @property
    def serve_url(self) -> str: ...


def config(head: RayHead, greeting: str) -> dict[str, Any]:
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": head.serve_port},
        "grpc_options": {"port": head.grpc_port, "grpc_servicer_functions": [SERVICER]},
        "applications": [{
            "name": "hello",
            "route_prefix": "/hello",
            "import_path": "serveplane.examples.hello:app",
            "args": {"greeting": greeting},
        }],
    }


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def status_of(http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> int:
    async with http.get(url, headers=headers or {}) as response:
        return response.status


@pytest.mark.parametrize("path", ["/api/jobs/", "/api/serve/applications/", "/api/ray/version"])
async def test_the_dashboard_refuses_requests_without_the_token(
    ray_head_with_token: RayHead, http: aiohttp.ClientSession, path: str
) -> None:
    head = ray_head_with_token
    assert head.auth_token
    url = head.dashboard_url + path
    assert await status_of(http, url) == 401
    assert await status_of(http, url, {"Authorization": "Bearer " + "0" * 64}) == 403
    assert await status_of(http, url, {"Authorization": f"Bearer {head.auth_token}"}) == 200
    # The header Ray accepts from proxies (KubeRay's), too.
    assert await status_of(http, url, {"x-ray-authorization": f"Bearer {head.auth_token}"}) == 200


async def test_a_client_without_the_token_is_unauthorized(ray_head_with_token: RayHead) -> None:
    async with DashboardClient(ray_head_with_token.dashboard_url, retries=0) as client:
        with pytest.raises(DashboardUnauthorized) as caught:
            await client.get_applications()
    assert caught.value.status == 401


async def eventually_greeting(
    client: DashboardClient, http: aiohttp.ClientSession, head: RayHead, greeting: str
) -> dict[str, Any]:
    """Serve runs `greeting`, and its HTTP proxy answers with it to a request WITHOUT any token."""
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            app = (await client.get_applications())["applications"].get("hello") or {}
            if app.get("status") == "RUNNING":
                async with http.get(f"{head.serve_url}/hello/") as response:
                    body = await response.json() if response.status == 200 else None
                if body and body.get("greeting") == greeting:
                    return app
            last = app.get("status")
        except (DashboardError, aiohttp.ClientError, TimeoutError) as error:
            last = error
        await asyncio.sleep(0.25)
    pytest.fail(f"hello never answered {greeting!r} through Serve's proxy; last: {last}")


def list_applications(port: int) -> list[str]:
    """Serve's built-in gRPC API, called with no token in the metadata."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = serve_pb2_grpc.RayServeAPIServiceStub(channel)
        return list(stub.ListApplications(serve_pb2.ListApplicationsRequest(), timeout=10).application_names)


async def test_the_client_with_the_token_deploys_updates_and_reads_and_users_need_no_token(
    ray_head_with_token: RayHead, http: aiohttp.ClientSession
) -> None:
    head = ray_head_with_token
    async with DashboardClient(head.dashboard_url, timeout_s=60.0, token=head.auth_token) as client:
        assert (await client.get_version())["ray_version"] == "2.60.0"
        await client.put_applications(config(head, "hi"))
        await eventually_greeting(client, http, head, "hi")
        await client.put_applications(config(head, "bonjour"))
        app = await eventually_greeting(client, http, head, "bonjour")
        assert app["deployed_app_config"]["args"] == {"greeting": "bonjour"}
        # Serve's gRPC proxy needs no token either.
        assert "hello" in await asyncio.to_thread(list_applications, head.grpc_port)
        await client.put_applications({**config(head, "bonjour"), "applications": []})


def test_a_node_with_another_token_cannot_join(ray_head_with_token: RayHead, tmp_path: Any) -> None:
    """Ray's RPCs need the token too: a process with another token is refused by the GCS. That is why a token
    rotation replaces every Ray pod at once: a worker with the new token could never join the old head."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64, RAY_USAGE_STATS_ENABLED="0")
    code = f"import ray; ray.init(address='127.0.0.1:{ray_head_with_token.gcs_port}')"
    # cwd: keep the repository's `operator/` folder from shadowing the stdlib module.
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "InvalidAuthToken" in result.stdout + result.stderr
