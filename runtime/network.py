"""This node's IP, and waiting for the head's GCS before a worker runs `ray start`.

Called by the entrypoint. A worker pod may start before the head pod, and the head Service's DNS name only
resolves once the head pod exists, so the worker retries both resolution and a TCP connect to the GCS port; only
then does `ray start --address` run (Ray's own retries are short and end the process).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

_FIRST_DELAY_S = 0.5
_MAX_DELAY_S = 5.0
_CONNECT_TIMEOUT_S = 2.0
_LOG_EVERY_S = 30.0


def node_ip(environ: Mapping[str, str]) -> str:
    """POD_IP (the downward API), else the address this host would use to reach others, else 127.0.0.1."""
    pod_ip = environ.get("POD_IP", "").strip()
    if pod_ip:
        return pod_ip
    try:
        # connect() on UDP sends nothing: it only asks the kernel which source address the route would use.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def format_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def try_gcs(host: str, port: int) -> tuple[str | None, str]:
    """One attempt: (reachable address, "") or (None, why not)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return None, f"{host} does not resolve ({exc})"
    errors = []
    for *_, sockaddr in infos:
        ip = str(sockaddr[0])
        try:
            with socket.create_connection((ip, port), timeout=_CONNECT_TIMEOUT_S):
                return format_address(ip, port), ""
        except OSError as exc:
            errors.append(f"{ip}: {exc}")
    return None, f"GCS at {host}:{port} not answering ({'; '.join(errors)})"


def wait_for_gcs(host: str, port: int, stop: threading.Event) -> str | None:
    """Block until the GCS accepts connections; its resolved address, or None if `stop` was set first."""
    delay = _FIRST_DELAY_S
    last_reason, last_logged = "", 0.0
    while not stop.is_set():
        address, reason = try_gcs(host, port)
        if address:
            log.info("head GCS reachable at %s (%s:%d)", address, host, port)
            return address
        now = time.monotonic()
        if reason != last_reason or now - last_logged > _LOG_EVERY_S:
            log.info("waiting for the head: %s", reason)
            last_reason, last_logged = reason, now
        stop.wait(delay)
        delay = min(delay * 2, _MAX_DELAY_S)
    return None
