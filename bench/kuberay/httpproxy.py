"""A counting HTTP forward proxy for the KubeRay operator running on the host.

KubeRay dials its Ray clusters by Service name (``<cluster>-head-svc.<ns>.svc.cluster.local:8265``) and each
Serve proxy by pod IP, from Go clients built on ``http.DefaultTransport``, which honours ``HTTP_PROXY``. Pointing
that at this proxy does two things a host process needs: cluster names are resolved through the cluster DNS
(CoreDNS at 10.96.0.10, as a pod's resolver would), which the host's resolver cannot do; and every request the
operator makes to Ray is counted, as serveplane's own metric counts its dashboard requests. The API server, on
127.0.0.1, is never proxied (Go's proxy selection skips loopback).
"""
from __future__ import annotations

import collections
import http.client
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CLUSTER_DNS = "10.96.0.10"
CLUSTER_SUFFIX = ".svc.cluster.local"
# Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, never forwarded.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer", "transfer-encoding",
     "upgrade"}
)
_RESOLVE_TTL_S = 5.0


def _skip_name(packet: bytes, offset: int) -> int:
    """The offset just past the (possibly compressed) domain name at `offset`."""
    while True:
        length = packet[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # a pointer ends the name
            return offset + 2
        offset += 1 + length


def resolve_a(name: str, server: str = CLUSTER_DNS, timeout: float = 2.0, port: int = 53) -> str:
    """The first A record of `name` from the DNS `server` (one UDP query; a cluster DNS answers a Service's
    ClusterIP)."""
    query_id = random.randrange(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, port))
        answer, _ = sock.recvfrom(4096)
    got_id, flags, questions, answers = struct.unpack(">HHHH", answer[:8])
    if got_id != query_id or flags & 0x000F:
        raise OSError(f"DNS {server} could not resolve {name} (rcode {flags & 0x000F})")
    offset = 12
    for _ in range(questions):
        offset = _skip_name(answer, offset) + 4
    for _ in range(answers):
        offset = _skip_name(answer, offset)
        rtype, _class, _ttl, length = struct.unpack(">HHIH", answer[offset:offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            return socket.inet_ntoa(answer[offset:offset + 4])
        offset += length
    raise OSError(f"DNS {server} has no A record for {name}")


class CountingProxy:
    """Forwards plain-HTTP proxy requests and counts them by (port, method, path); start() returns its port."""

    def __init__(self, dns_server: str = CLUSTER_DNS) -> None:
        self.dns_server = dns_server
        self.counts: collections.Counter[tuple[int, str, str]] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._resolved: dict[str, tuple[float, str]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def snapshot(self) -> collections.Counter[tuple[int, str, str]]:
        with self._lock:
            return collections.Counter(self.counts)

    def _address(self, host: str) -> str:
        if not host.endswith(CLUSTER_SUFFIX):
            return host
        now = time.monotonic()
        cached = self._resolved.get(host)
        if cached is not None and now - cached[0] < _RESOLVE_TTL_S:
            return cached[1]
        address = resolve_a(host, self.dns_server)
        self._resolved[host] = (now, address)
        return address

    def forward(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
                ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send one request on; (status, reason, headers, body) of the answer, 502 when it cannot be reached."""
        parts = urlsplit(url)
        port = parts.port or 80
        with self._lock:
            self.counts[(port, method, parts.path)] += 1
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection = http.client.HTTPConnection(self._address(parts.hostname or ""), port, timeout=30)
            try:
                connection.request(method, target or "/", body=body, headers=dict(headers))
                answer = connection.getresponse()
                data = answer.read()
                kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-length"}]
                return answer.status, answer.reason, kept, data
            finally:
                connection.close()
        except (OSError, http.client.HTTPException) as problem:
            with self._lock:
                self.errors[f"{type(problem).__name__}: {problem}"[:200]] += 1
            return 502, "Bad Gateway", [("Content-Type", "text/plain")], f"proxy: {problem}\n".encode()

    def start(self) -> int:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # lets the operator's client keep its connection to the proxy

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
                status, reason, answer_headers, data = proxy.forward(self.command, self.path, headers, body)
                self.send_response(status, reason)
                for key, value in answer_headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _relay

            def log_message(self, format: str, *args: object) -> None:
                pass  # counted, not logged: the operator's own log says what it asked

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
