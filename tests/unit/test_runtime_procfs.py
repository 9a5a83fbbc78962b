"""/proc parsing (procfs), the raw HTTP check (httpcheck) and the orphan reaper, on real processes and sockets."""

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

from serveplane.runtime import httpcheck, procfs
from serveplane.runtime.probes import HttpOutcome
from serveplane.runtime.reaper import Reaper

TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000
   1: 0100007F:1F40 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000
   2: 0100007F:D431 0100007F:1F40 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000
   3: 0A000001:1F40 0A000002:9C40 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0000000000000000
"""
TCP6_TABLE = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 0000000000000000FFFF00000100007F:1F40 0000000000000000FFFF00000100007F:D500 01 00000000:00000000
"""


def test_count_established_counts_server_side_only() -> None:
    # Port 8000 = 0x1F40. Listening (0A), TIME_WAIT (06) and our own client side (local port 0xD431) are not counted.
    assert procfs.count_established([TCP_TABLE], 8000) == 1
    assert procfs.count_established([TCP_TABLE, TCP6_TABLE], 8000) == 2
    assert procfs.count_established([TCP_TABLE], 8001) == 0


def test_established_connections_live() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        assert procfs.established_connections(port) == 0
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        assert procfs.established_connections(port) == 1
        client.close()
        accepted.close()
    finally:
        server.close()


def test_parse_stat_with_odd_command_name() -> None:
    text = "1234 (ray::a) b (c)) S 1 1234 1230 0 -1 4194560 0 0 0 0"
    parsed = procfs.parse_stat(1234, text)
    assert (parsed.comm, parsed.state, parsed.ppid) == ("ray::a) b (c)", "S", 1)
    assert (parsed.pgrp, parsed.session) == (1234, 1230)
    assert not parsed.is_zombie


def test_session_members_and_mentions() -> None:
    marker = f"/tmp/sp-test-{os.getpid()}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", f"--temp-dir={marker}"],
                             start_new_session=True)
    try:
        assert [m.pid for m in procfs.session_members(child.pid)] == [child.pid]
        assert procfs.mentioning(marker) == [child.pid]
        assert procfs.mentioning(marker + "0") == []  # a longer path is another dir
        assert procfs.mentioning(marker[:-1]) == []
    finally:
        child.kill()
        child.wait()
    assert not procfs.is_alive(child.pid)
    assert procfs.session_members(child.pid) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--temp-dir=/tmp/ray-1"], True),
        (["--session_dir=/tmp/ray-1/session_x"], True),
        (["/tmp/ray-1"], True),
        (["--temp-dir=/tmp/ray-12"], False),
        (["--temp-dir=/tmp/ray-12/x"], False),
        ([], False),
    ],
)
def test_mentions_path(argv: list[str], expected: bool) -> None:
    assert procfs.mentions_path(argv, "/tmp/ray-1") is expected


@pytest.mark.parametrize(
    ("raw", "status", "body"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nsuccess", 200, "success"),
        # What Serve's proxy really sends, even to an HTTP/1.0 request.
        (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"1c\r\nThis node is being drained.\n\r\n0\r\n\r\n", 503, "This node is being drained.\n"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nsuc\r\n4\r\ncess\r\n0\r\n\r\n", 200, "success"),
        (b"HTTP/1.0 404 Not Found\r\n\r\n", 404, ""),
    ],
)
def test_parse_response(raw: bytes, status: int, body: str) -> None:
    assert httpcheck.parse_response(raw) == (status, body)


def test_parse_response_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        httpcheck.parse_response(b"SSH-2.0-OpenSSH\r\n")


async def test_get_outcomes() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if b"/slow" in request:
            await asyncio.sleep(5)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        answered = await httpcheck.get("127.0.0.1", port, "/x", 2.0)
        assert (answered.outcome, answered.status, answered.body) == (HttpOutcome.ANSWERED, 200, "ok")
        slow = await httpcheck.get("127.0.0.1", port, "/slow", 0.2)
        assert slow.outcome is HttpOutcome.TIMEOUT
    server.close()
    await server.wait_closed()
    refused = await httpcheck.get("127.0.0.1", port, "/x", 1.0)
    assert refused.outcome is HttpOutcome.REFUSED


def test_reaper_reaps_orphans_but_not_owned_children() -> None:
    reaper = Reaper()
    owned = reaper.spawn([sys.executable, "-c", "pass"])
    orphan = subprocess.Popen([sys.executable, "-c", "pass"])  # stands for a re-parented orphan
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and procfs.stat(orphan.pid) and not procfs.stat(orphan.pid).is_zombie:
        time.sleep(0.05)
    while time.monotonic() < deadline and procfs.stat(owned.pid) and not procfs.stat(owned.pid).is_zombie:
        time.sleep(0.05)
    reaper.reap()
    # The owned child stays a zombie for its Popen, which still gets the real exit status.
    assert owned.poll() == 0
    reaper.release(owned)
    reaper.reap()
    assert procfs.stat(orphan.pid) is None  # reaped by the reaper, not by its Popen
