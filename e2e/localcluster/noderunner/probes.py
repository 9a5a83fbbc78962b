"""Probes and lifecycle-hook actions (httpGet, tcpSocket, exec, sleep), and the probe loop.

httpGet and tcpSocket go from the host to the pod IP, as the kubelet's do;
exec runs inside the pod's netns with the container's environment.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import procs

log = logging.getLogger(__name__)

USER_AGENT = "kube-probe/1.37"


@dataclass(frozen=True)
class Target:
    """Where a container's probes and hooks go."""

    pod_ip: str
    netns: str
    env: Mapping[str, str]
    ports: Mapping[str, int] = field(default_factory=dict)
    cwd: Path | None = None

    def port(self, value: int | str) -> int:
        if isinstance(value, int):
            return value
        if value.isdigit():
            return int(value)
        if value not in self.ports:
            raise ValueError(f"no container port named {value!r}")
        return self.ports[value]


def run_action(action: Mapping[str, Any], target: Target, timeout: float) -> tuple[bool, str]:
    """Run one probe or hook handler; (success, message)."""
    try:
        if "httpGet" in action:
            return _http_get(action["httpGet"], target, timeout)
        if "tcpSocket" in action:
            spec = action["tcpSocket"]
            host = spec.get("host") or target.pod_ip
            with socket.create_connection((host, target.port(spec["port"])), timeout=timeout):
                return True, ""
        if "exec" in action:
            code, out = procs.run_in_netns(
                target.netns, list(action["exec"]["command"]), env=target.env, timeout=timeout, cwd=target.cwd
            )
            return code == 0, out.strip()[-500:] if code != 0 else ""
        if "sleep" in action:
            time.sleep(min(float(action["sleep"]["seconds"]), timeout))
            return True, ""
        if "grpc" in action:
            # Not emulated: counting it as healthy keeps such pods usable.
            return True, "grpc probes are not emulated"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return False, f"unsupported handler {sorted(action)}"


def _http_get(spec: Mapping[str, Any], target: Target, timeout: float) -> tuple[bool, str]:
    host = spec.get("host") or target.pod_ip
    port = target.port(spec.get("port", 80))
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    for header in spec.get("httpHeaders") or []:
        headers[header["name"]] = header["value"]
    if (spec.get("scheme") or "HTTP").upper() == "HTTPS":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl._create_unverified_context()
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(1024)
        if 200 <= resp.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {resp.status} {body[:200]!r}"
    finally:
        conn.close()


@dataclass(frozen=True)
class ProbeSpec:
    kind: str  # readiness, liveness or startup
    action: Mapping[str, Any]
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def parse(cls, kind: str, spec: Mapping[str, Any]) -> ProbeSpec:
        return cls(
            kind=kind,
            action=spec,
            initial_delay=float(spec.get("initialDelaySeconds", 0)),
            period=float(spec.get("periodSeconds", 10)),
            timeout=float(spec.get("timeoutSeconds", 1)),
            success_threshold=int(spec.get("successThreshold", 1)),
            failure_threshold=int(spec.get("failureThreshold", 3)),
        )


class ProbeWorker(threading.Thread):
    """Runs one probe of one container run every period and reports result flips.

    ``on_result(kind, ok, message)`` is called when the result changes: for
    readiness on every flip, for liveness and startup on the first failure
    verdict (after which this worker ends: the container is being killed) and,
    for startup, on success (after which it also ends).
    """

    def __init__(
        self,
        spec: ProbeSpec,
        target: Target,
        started_at: float,
        on_result: Callable[[str, bool, str], None],
        stop: threading.Event,
        gate: threading.Event | None = None,
    ) -> None:
        super().__init__(name=f"probe-{spec.kind}-{target.netns}", daemon=True)
        self.spec = spec
        self._probe_target = target
        self._started_at = started_at
        self._on_result = on_result
        self._halt = stop
        self._gate = gate

    def run(self) -> None:
        spec = self.spec
        if self._gate is not None:
            while not self._gate.wait(0.2):
                if self._halt.is_set():
                    return
        delay = self._started_at + spec.initial_delay - time.monotonic()
        if delay > 0 and self._halt.wait(delay):
            return
        # Readiness starts out failed; liveness and startup start out "not yet decided".
        current: bool | None = False if spec.kind == "readiness" else None
        successes = failures = 0
        while not self._halt.is_set():
            began = time.monotonic()
            ok, message = run_action(spec.action, self._probe_target, spec.timeout)
            if self._halt.is_set():
                return
            if ok:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
                log.debug("%s probe of %s failed: %s", spec.kind, self._probe_target.netns, message)
            threshold_ok = successes >= (spec.success_threshold if spec.kind == "readiness" else 1)
            if threshold_ok and current is not True:
                current = True
                if spec.kind != "liveness":
                    self._on_result(spec.kind, True, "")
                if spec.kind == "startup":
                    return
            elif failures >= spec.failure_threshold and current is not False:
                current = False
                self._on_result(spec.kind, False, message)
                if spec.kind != "readiness":
                    return
            self._halt.wait(max(0.0, spec.period - (time.monotonic() - began)))
