"""A tiny asyncio HTTP/1.0 GET for the agent's checks of the local Serve proxy and Ray dashboard.

Called by `agent.Checker`. A raw GET keeps the agent small (no HTTP client library to import) and tells apart the
outcomes readiness cares about: refused (nothing listens), timeout, answered. HTTP/1.0 makes servers answer
without chunking and close the connection, so the body is simply everything up to EOF.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .probes import HttpOutcome

_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class HttpResult:
    outcome: HttpOutcome
    status: int | None = None
    body: str = ""
    error: str = ""


def _dechunk(body: bytes) -> bytes:
    """Decode a chunked body (Serve's proxy chunks even answers to HTTP/1.0); tolerate a truncated one."""
    out, rest = b"", body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        except ValueError:
            break
        if not sep or size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def parse_response(raw: bytes) -> tuple[int, str]:
    """(status, body) from a raw HTTP response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status_line = lines[0].decode("latin-1")
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {status_line!r}")
    headers = {k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        body = _dechunk(body)
    return int(parts[1]), body.decode(errors="replace")


async def get(
    host: str, port: int, path: str, timeout_s: float, *, headers: dict[str, str] | None = None
) -> HttpResult:
    """GET http://host:port/path within timeout_s; never raises for network trouble."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            request = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: serveplane-agent\r\n{extra}\r\n"
            writer.write(request.encode())
            await writer.drain()
            raw = await reader.read(_MAX_BYTES)
            while raw and len(raw) < _MAX_BYTES:
                more = await reader.read(_MAX_BYTES - len(raw))
                if not more:
                    break
                raw += more
        status, body = parse_response(raw)
        return HttpResult(HttpOutcome.ANSWERED, status, body)
    except ConnectionRefusedError as exc:
        return HttpResult(HttpOutcome.REFUSED, error=str(exc))
    except TimeoutError:
        return HttpResult(HttpOutcome.TIMEOUT, error=f"no answer within {timeout_s}s")
    except (OSError, ValueError) as exc:
        return HttpResult(HttpOutcome.ERROR, error=f"{type(exc).__name__}: {exc}")
    finally:
        if writer is not None:
            writer.close()
