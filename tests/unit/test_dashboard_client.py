"""Retry and error mapping of DashboardClient, against a real tiny aiohttp server on 127.0.0.1 (no mocks)."""

import asyncio
import itertools
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from serveplane.operator.clients.dashboard import (
    MAX_ANSWER_BYTES,
    DashboardAnswerTooLarge,
    DashboardClient,
    DashboardError,
    DashboardRejected,
    DashboardUnauthorized,
    DashboardUnavailable,
)
from serveplane.operator.clients.dashboards import DashboardPool


@dataclass
class Reply:
    status: int
    body: str = ""
    delay_s: float = 0.0
    stream_bytes: int = 0
    """When set, the answer is that many bytes sent chunked (no Content-Length), 64 KiB at a time."""


@dataclass
class Seen:
    method: str
    path: str
    body: str
    at: float
    authorization: str | None = None


@dataclass
class FakeDashboard:
    """Plays `script` one reply per request (the last one repeats) and records what it received."""

    url: str = ""
    script: list[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    streamed: int = 0
    """Bytes of streamed answers the client took before it hung up (or all of them)."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(request.method, request.path, await request.text(), time.monotonic())
        seen.authorization = request.headers.get("Authorization")
        self.seen.append(seen)
        reply = self.script[min(len(self.seen), len(self.script)) - 1]
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.stream_bytes:
            return await self._stream(request, reply)
        return web.Response(status=reply.status, text=reply.body)

    async def _stream(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status)
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while self.streamed < reply.stream_bytes:
                await response.write(chunk)
                self.streamed += len(chunk)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client hung up
        return response


@pytest.fixture
async def dashboard() -> AsyncIterator[FakeDashboard]:
    fake = FakeDashboard()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@pytest.fixture
def dead_port() -> Iterator[int]:
    # Bound but never listening: connecting is refused, and nobody else can take the port meanwhile.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def fast_client(url: str, **kwargs: Any) -> DashboardClient:
    options: dict[str, Any] = {"timeout_s": 2.0, "retries": 3, "backoff_s": 0.01}
    options.update(kwargs)
    return DashboardClient(url, **options)


async def test_5xx_then_200_is_retried(dashboard: FakeDashboard) -> None:
    details: dict[str, Any] = {"applications": {}, "proxies": {}, "controller_info": {}}
    dashboard.script = [Reply(500, "boom"), Reply(503, "busy"), Reply(200, json.dumps(details))]
    async with fast_client(dashboard.url) as client:
        assert await client.get_applications() == details
    assert [s.path for s in dashboard.seen] == ["/api/serve/applications/"] * 3


async def test_5xx_forever_raises_unavailable_after_retries(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(503, "controller unreachable")]
    async with fast_client(dashboard.url, retries=2) as client:
        with pytest.raises(DashboardUnavailable, match="controller unreachable"):
            await client.get_applications()
    assert len(dashboard.seen) == 3


async def test_backoff_grows_exponentially(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(500)]
    async with fast_client(dashboard.url, retries=3, backoff_s=0.1) as client:
        with pytest.raises(DashboardUnavailable):
            await client.get_version()
    gaps = [b.at - a.at for a, b in itertools.pairwise(dashboard.seen)]
    assert len(gaps) == 3
    for gap, expected in zip(gaps, [0.1, 0.2, 0.4], strict=True):
        assert gap >= expected * 0.9


async def test_400_surfaces_serve_text_without_retry(dashboard: FakeDashboard) -> None:
    text = "1 validation error for ServeDeploySchema\napplications\n  Found duplicate applications for route prefix"
    dashboard.script = [Reply(400, text)]
    async with fast_client(dashboard.url) as client:
        with pytest.raises(DashboardRejected) as caught:
            await client.put_applications({"applications": []})
    assert caught.value.status == 400
    assert caught.value.message == text
    assert isinstance(caught.value, DashboardError)
    assert len(dashboard.seen) == 1


async def test_other_4xx_is_rejected_without_retry(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(404, "no such route")]
    async with fast_client(dashboard.url) as client:
        with pytest.raises(DashboardRejected) as caught:
            await client.get_version()
    assert (caught.value.status, caught.value.message) == (404, "no such route")
    assert len(dashboard.seen) == 1


async def test_501_serve_not_installed_is_not_retried(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(501, "Serve dependencies are not installed.")]
    async with fast_client(dashboard.url) as client:
        with pytest.raises(DashboardUnavailable, match="not installed"):
            await client.get_applications()
    assert len(dashboard.seen) == 1


async def test_connection_refused_raises_unavailable(dead_port: int) -> None:
    async with fast_client(f"http://127.0.0.1:{dead_port}", retries=1) as client:
        with pytest.raises(DashboardUnavailable) as caught:
            await client.get_version()
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)


async def test_slow_answer_times_out_and_is_retried(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(200, "{}", delay_s=1.0), Reply(200, '{"version": "4"}')]
    async with fast_client(dashboard.url, timeout_s=0.2) as client:
        assert await client.get_version() == {"version": "4"}
    assert len(dashboard.seen) == 2


async def test_timeout_every_time_raises_unavailable(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(200, "{}", delay_s=1.0)]
    async with fast_client(dashboard.url, timeout_s=0.1, retries=1) as client:
        with pytest.raises(DashboardUnavailable, match="2 attempt"):
            await client.get_version()


async def test_put_sends_json_body_and_keeps_path_prefix(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(200)]
    config = {"applications": [{"name": "hello", "import_path": "serveplane.examples.hello:app"}]}
    async with fast_client(dashboard.url + "/proxy/ray-head:8265/") as client:
        await client.put_applications(config)
    (seen,) = dashboard.seen
    assert (seen.method, seen.path) == ("PUT", "/proxy/ray-head:8265/api/serve/applications/")
    assert json.loads(seen.body) == config


async def test_non_json_2xx_is_a_plain_dashboard_error(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(200, "<html>login page</html>")]
    async with fast_client(dashboard.url) as client:
        with pytest.raises(DashboardError) as caught:
            await client.get_applications()
    assert type(caught.value) is DashboardError


async def test_borrowed_session_is_left_open_on_close(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(200, "{}")]
    async with aiohttp.ClientSession() as session:
        client = DashboardClient(dashboard.url, session=session)
        await client.get_version()
        await client.close()
        assert not session.closed
        with pytest.raises(RuntimeError):
            await client.get_version()


@pytest.mark.parametrize("url", ["127.0.0.1:8265", "ftp://host:8265", "http://"])
def test_bad_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        DashboardClient(url)


async def test_the_token_goes_in_a_bearer_header_and_nowhere_else(dashboard: FakeDashboard) -> None:
    dashboard.script = [Reply(200, "{}")]
    async with fast_client(dashboard.url, token="s3cr3t-token") as client:
        await client.get_version()
        await client.put_applications({"applications": []})
        assert "s3cr3t-token" not in repr(client)
    assert [s.authorization for s in dashboard.seen] == ["Bearer s3cr3t-token"] * 2
    async with fast_client(dashboard.url) as client:
        await client.get_version()
    assert dashboard.seen[-1].authorization is None


@pytest.mark.parametrize("status", [401, 403])
async def test_an_auth_refusal_is_unauthorized_and_not_retried(dashboard: FakeDashboard, status: int) -> None:
    dashboard.script = [Reply(status, "Unauthorized: Missing authentication token")]
    async with fast_client(dashboard.url, token="wrong") as client:
        with pytest.raises(DashboardUnauthorized) as caught:
            await client.get_applications()
    assert caught.value.status == status and isinstance(caught.value, DashboardRejected)
    assert len(dashboard.seen) == 1


async def test_the_pool_replaces_a_client_when_the_token_or_the_head_changes() -> None:
    pool = DashboardPool(timeout_s=1.0)
    first = await pool.for_head("ns", "demo", "aaaaa", "10.0.0.1", "token-a")
    assert await pool.for_head("ns", "demo", "aaaaa", "10.0.0.1", "token-a") is first
    assert first.base_url == "http://10.0.0.1:8265"
    rotated = await pool.for_head("ns", "demo", "aaaaa", "10.0.0.1", "token-b")
    assert rotated is not first
    await assert_closed(first)
    moved = await pool.for_head("ns", "demo", "aaaaa", "10.0.0.2", "token-b")
    assert moved is not rotated and moved.base_url == "http://10.0.0.2:8265"
    await assert_closed(rotated)
    assert "token-" not in repr(pool) + repr(moved)
    await pool.close()
    await assert_closed(moved)


async def assert_closed(client: DashboardClient) -> None:
    """A closed client refuses a request before it sends one."""
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_version()


async def test_the_pool_keeps_one_client_per_generation() -> None:
    """During an upgrade the active and the pending head are asked side by side: neither replaces the other."""
    pool = DashboardPool(timeout_s=1.0)
    old = await pool.for_head("ns", "demo", "aaaaa", "10.0.0.1", "t")
    new = await pool.for_head("ns", "demo", "bbbbb", "10.0.0.2", "t")
    other_cluster = await pool.for_head("ns", "other", "aaaaa", "10.0.0.3", "t")
    assert len({id(old), id(new), id(other_cluster)}) == 3
    assert await pool.for_head("ns", "demo", "aaaaa", "10.0.0.1", "t") is old
    assert await pool.for_head("ns", "demo", "bbbbb", "10.0.0.2", "t") is new
    await pool.close()


async def test_forget_closes_the_clusters_clients_but_those_kept() -> None:
    pool = DashboardPool(timeout_s=1.0)
    old = await pool.for_head("ns", "demo", "aaaaa", "10.0.0.1", "t")
    new = await pool.for_head("ns", "demo", "bbbbb", "10.0.0.2", "t")
    elsewhere = await pool.for_head("ns2", "demo", "aaaaa", "10.0.0.3", "t")
    await pool.forget("ns", "demo", keep={"bbbbb"})
    await assert_closed(old)
    assert await pool.for_head("ns", "demo", "bbbbb", "10.0.0.2", "t") is new, "a kept generation's client stays"
    assert await pool.for_head("ns2", "demo", "aaaaa", "10.0.0.3", "t") is elsewhere, "another namespace's stays"
    reborn = await pool.for_head("ns", "demo", "aaaaa", "10.0.0.1", "t")
    assert reborn is not old
    await pool.forget("ns", "demo")
    await assert_closed(new)
    await assert_closed(reborn)
    assert await pool.for_head("ns2", "demo", "aaaaa", "10.0.0.3", "t") is elsewhere
    await pool.close()
    await assert_closed(elsewhere)


async def test_the_pool_brackets_an_ipv6_head_address() -> None:
    pool = DashboardPool(timeout_s=1.0)
    client = await pool.for_head("ns", "demo", "aaaaa", "fd00::5", None)
    assert client.base_url == "http://[fd00::5]:8265"
    await pool.close()


# --- bounded answers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 400, 503])
async def test_an_answer_over_the_limit_is_refused_by_its_length_and_not_retried(
    dashboard: FakeDashboard, status: int
) -> None:
    dashboard.script = [Reply(status, "x" * 1025)]
    async with fast_client(dashboard.url, max_answer_bytes=1024) as client:
        with pytest.raises(DashboardAnswerTooLarge, match="over the 1024-byte limit") as caught:
            await client.get_applications()
    assert isinstance(caught.value, DashboardError)
    assert not isinstance(caught.value, (DashboardRejected, DashboardUnavailable))
    assert len(dashboard.seen) == 1


async def test_an_answer_at_the_limit_is_read(dashboard: FakeDashboard) -> None:
    body = json.dumps({"version": "x" * 1000})
    dashboard.script = [Reply(200, body)]
    async with fast_client(dashboard.url, max_answer_bytes=len(body)) as client:
        assert await client.get_version() == {"version": "x" * 1000}


async def test_a_chunked_answer_is_read_by_chunks_and_dropped_past_the_limit(dashboard: FakeDashboard) -> None:
    """No Content-Length to refuse it by: the client stops reading once it has more than the limit, long before the
    dashboard has sent everything (a body that never ends would otherwise hold the operator's memory)."""
    total = 256 * 1024 * 1024
    dashboard.script = [Reply(200, stream_bytes=total)]
    async with fast_client(dashboard.url, max_answer_bytes=1024 * 1024, retries=0) as client:
        with pytest.raises(DashboardAnswerTooLarge, match="read no further"):
            await client.get_applications()
    await asyncio.sleep(0.2)
    assert dashboard.streamed < total / 4, f"the client let the dashboard send {dashboard.streamed} bytes"


async def test_the_default_limit_is_8_mib(dashboard: FakeDashboard) -> None:
    assert MAX_ANSWER_BYTES == 8 * 1024 * 1024
    dashboard.script = [Reply(200, stream_bytes=MAX_ANSWER_BYTES + 65536)]
    async with fast_client(dashboard.url) as client:
        with pytest.raises(DashboardAnswerTooLarge, match=f"over the {MAX_ANSWER_BYTES}-byte limit"):
            await client.get_applications()
    assert len(dashboard.seen) == 1


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError):
        DashboardClient("http://127.0.0.1:8265", max_answer_bytes=limit)
