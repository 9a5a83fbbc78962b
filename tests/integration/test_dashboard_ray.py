"""DashboardClient against a real Ray head: deploy, update, fail, compose and remove Serve apps over REST.

Every test PUTs the whole config it needs (Serve's API is declarative), so tests do not depend on their order;
the shared `HELLO_V2` config keeps later tests from redeploying hello needlessly.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import aiohttp
import pytest

from serveplane.operator.clients.dashboard import DashboardClient, DashboardError, DashboardRejected

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

log = logging.getLogger(__name__)

T = TypeVar("T")


class RayHead(Protocol):
    """What this module uses of conftest's `ray_head` (conftest modules are not imported by name)."""

    dashboard_url: str
    serve_port: int

    @property
    def serve_url(self) -> str: ...

# On a 2-core machine a deploy takes ~10 s; leave room for a loaded CI box.
DEPLOY_TIMEOUT_S = 120.0


def hello_app(greeting: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "name": "hello",
        "route_prefix": "/hello",
        "import_path": "serveplane.examples.hello:app",
        "args": {"greeting": greeting},
        "deployments": [{"name": "Hello", "num_replicas": replicas}],
    }


HELLO_V1 = hello_app("hi")
HELLO_V2 = hello_app("bonjour", replicas=2)
COMPOSED = {
    "name": "composed",
    "route_prefix": "/composed",
    "import_path": "serveplane.examples.composed:app",
    "args": {"factor": 3},
}
BROKEN = {"name": "broken", "route_prefix": "/broken", "import_path": "nonexistent_module_xyz:app"}


def serve_config(head: RayHead, *apps: dict[str, Any]) -> dict[str, Any]:
    return {
        "proxy_location": "EveryNode",
        # Fixed once Serve starts, so every test uses the port the fixture picked.
        "http_options": {"host": "127.0.0.1", "port": head.serve_port},
        "applications": list(apps),
    }


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = DEPLOY_TIMEOUT_S) -> T:
    """Poll `check` until it returns something other than None; fail with the last observation at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            result = await check()
        except (DashboardError, aiohttp.ClientError, TimeoutError) as e:
            result, last = None, e
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}; last error: {last}")
        await asyncio.sleep(0.25)


@pytest.fixture
async def client(ray_head: RayHead) -> AsyncIterator[DashboardClient]:
    # The first PUT also starts the Serve controller and proxy, which takes seconds on a small machine.
    async with DashboardClient(ray_head.dashboard_url, timeout_s=60.0) as dashboard:
        yield dashboard


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    async with http.get(url) as response:
        return await response.json() if response.status == 200 else None


async def app_in_status(client: DashboardClient, name: str, status: str) -> dict[str, Any] | None:
    app: dict[str, Any] | None = (await client.get_applications())["applications"].get(name)
    if app is not None:
        log.info("app %s: %s %s", name, app["status"], app["message"][:80])
    return app if app is not None and app["status"] == status else None


async def greeting_from(http: aiohttp.ClientSession, head: RayHead, greeting: str) -> dict[str, Any] | None:
    answer = await get_json(http, f"{head.serve_url}/hello/")
    return answer if answer is not None and answer["greeting"] == greeting else None


async def test_version(client: DashboardClient) -> None:
    version = await client.get_version()
    assert version["ray_version"] == "2.60.0"


async def test_deploy_hello_and_call_it_through_the_proxy(
    ray_head: RayHead, client: DashboardClient, http: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    await client.put_applications(serve_config(ray_head, HELLO_V1))
    app = await eventually(lambda: app_in_status(client, "hello", "RUNNING"), "hello RUNNING")
    answer = await eventually(lambda: greeting_from(http, ray_head, "hi"), "hello answering 'hi'")
    log.info("PUT to answering took %.1fs", time.monotonic() - started)
    assert app["route_prefix"] == "/hello"
    assert app["deployments"]["Hello"]["status"] == "HEALTHY"
    assert answer["node"] and answer["replica"]


async def test_update_args_and_replicas_in_place(
    ray_head: RayHead, client: DashboardClient, http: aiohttp.ClientSession
) -> None:
    await client.put_applications(serve_config(ray_head, HELLO_V2))

    async def two_new_replicas_running() -> dict[str, Any] | None:
        app = await app_in_status(client, "hello", "RUNNING")
        if app is None or app["deployed_app_config"]["args"] != HELLO_V2["args"]:
            return None
        deployment = app["deployments"]["Hello"]
        running = [r for r in deployment["replicas"] if r["state"] == "RUNNING"]
        ok = deployment["status"] == "HEALTHY" and deployment["target_num_replicas"] == 2 and len(running) == 2
        return deployment if ok else None

    deployment = await eventually(two_new_replicas_running, "hello with new args and 2 RUNNING replicas")
    expected = {r["replica_id"] for r in deployment["replicas"]}
    answered: set[str] = set()

    async def both_replicas_answer_new_greeting() -> bool | None:
        answer = await greeting_from(http, ray_head, "bonjour")
        if answer is not None:
            answered.add(answer["replica"])
        return True if answered == expected else None

    await eventually(both_replicas_answer_new_greeting, f"replicas {expected} answering 'bonjour'", timeout_s=30)


async def test_bad_import_path_fails_while_good_app_keeps_answering(
    ray_head: RayHead, client: DashboardClient, http: aiohttp.ClientSession
) -> None:
    await client.put_applications(serve_config(ray_head, HELLO_V2, BROKEN))
    broken = await eventually(lambda: app_in_status(client, "broken", "DEPLOY_FAILED"), "broken DEPLOY_FAILED")
    assert "ModuleNotFoundError: No module named 'nonexistent_module_xyz'" in broken["message"]
    assert broken["deployments"] == {}
    await eventually(lambda: app_in_status(client, "hello", "RUNNING"), "hello RUNNING next to broken")
    await eventually(lambda: greeting_from(http, ray_head, "bonjour"), "hello answering next to broken")


async def test_two_apps_then_remove_one(
    ray_head: RayHead, client: DashboardClient, http: aiohttp.ClientSession
) -> None:
    await client.put_applications(serve_config(ray_head, HELLO_V2, COMPOSED))
    composed = await eventually(lambda: app_in_status(client, "composed", "RUNNING"), "composed RUNNING")
    assert set(composed["deployments"]) == {"Ingress", "Model"}
    prediction = await eventually(
        lambda: get_json(http, f"{ray_head.serve_url}/composed/predict?x=2"), "composed answering"
    )
    assert prediction["output"] == 6
    classified = await get_json(http, f"{ray_head.serve_url}/composed/classify?text=hi")
    assert classified is not None and classified["label"] == "short"
    await eventually(lambda: greeting_from(http, ray_head, "bonjour"), "hello answering next to composed")

    await client.put_applications(serve_config(ray_head, HELLO_V2))

    async def composed_gone() -> bool | None:
        apps = (await client.get_applications())["applications"]
        return True if "composed" not in apps and "hello" in apps else None

    await eventually(composed_gone, "composed removed from GET")

    async def composed_route_gone() -> bool | None:
        async with http.get(f"{ray_head.serve_url}/composed/predict?x=2") as response:
            return True if response.status == 404 else None

    await eventually(composed_route_gone, "proxy answering 404 for /composed", timeout_s=30)
    await eventually(lambda: greeting_from(http, ray_head, "bonjour"), "hello still answering")


async def test_invalid_body_is_rejected_with_serve_text(ray_head: RayHead, client: DashboardClient) -> None:
    clash = {**COMPOSED, "route_prefix": "/hello"}
    with pytest.raises(DashboardRejected) as caught:
        await client.put_applications(serve_config(ray_head, HELLO_V2, clash))
    assert caught.value.status == 400
    assert "Found duplicate applications for route prefix" in caught.value.message
