"""What the e2e tests share about the trial that `serveplane dev up` started (the `trial` fixture)."""
from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from serveplane.localcluster.controlplane import ControlPlane, KubectlError
from serveplane.localcluster.stack import Stack
from serveplane.localcluster.testkit import generation_of, wait_for
from serveplane.localcluster.trial import serve_endpoints

SERVEPLANE = str(Path(sys.executable).parent / "serveplane")


def serveplane(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The `serveplane` command as a user runs it."""
    return subprocess.run([SERVEPLANE, *args], env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class Trial:
    """What `serveplane dev up` printed, and the stack it left running."""

    up: subprocess.CompletedProcess[str]
    stack: Stack
    env: dict[str, str]

    @property
    def cp(self) -> ControlPlane:
        return self.stack.cp


class Poller:
    """Something read every `interval` seconds in a thread of its own, for the length of a `with` block."""

    interval = 0.5

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class PodPeak(Poller):
    """Pods read every half second (terminating ones too, if `pods` returns them: they still hold their node's
    resources): the peak count, every pod seen by name, and every generation seen."""

    def __init__(self, pods: Callable[[], list[dict[str, Any]]]) -> None:
        super().__init__()
        self.pods = pods
        self.peak = 0
        self.seen: dict[str, dict[str, Any]] = {}

    def poll(self) -> None:
        try:
            pods = self.pods()
        except KubectlError:
            return
        self.peak = max(self.peak, len(pods))
        self.seen.update({p["metadata"]["name"]: p for p in pods})

    @property
    def generations(self) -> set[str]:
        return {generation_of(p) for p in self.seen.values()}


class EndpointTraffic:
    """Requests spread over a Service's ready endpoints as kube-proxy would spread them: the endpoints are re-read
    every half second and each request goes to the next one, about `rate` a second. A request that finds no ready
    endpoint counts as failed (a client of the Service would get a refused connection). Counts requests sent and
    failed (with the IP each failure went to) and the seconds with no ready endpoint."""

    REREAD_S = 0.5

    def __init__(self, cp: ControlPlane, namespace: str, service: str, path: str, *, port: int = 8000,
                 rate: float = 10.0, senders: int = 1) -> None:
        """`senders` threads send at once, each about `rate` a second: that many requests are ongoing when each
        one takes longer than the interval (load for Serve's autoscaling)."""
        self.cp, self.namespace, self.service, self.path, self.port = cp, namespace, service, path, port
        self.interval = 1.0 / rate
        self.sent = self.failed = 0
        self.failures: list[tuple[float, str, str]] = []
        """(monotonic time, endpoint IP or "", error) of each failed request."""
        self.no_endpoint_s = 0.0
        self.endpoints: list[str] = serve_endpoints(cp, namespace, service)
        self.started = time.monotonic()
        self.changes: list[tuple[float, list[str]]] = [(0.0, self.endpoints)]
        """(seconds since the start, ready endpoints) each time they changed: the timeline of a fault."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._turns = itertools.count()
        targets = [self._read] + [self._send] * senders
        self._threads = [threading.Thread(target=target, daemon=True) for target in targets]

    def _read(self) -> None:
        empty_since = 0.0
        while not self._stop.wait(self.REREAD_S):
            try:
                self.endpoints = serve_endpoints(self.cp, self.namespace, self.service)
            except KubectlError:  # the API server is not what is under test here; keep the last endpoints
                continue
            now = time.monotonic()
            if self.endpoints != self.changes[-1][1]:
                self.changes.append((now - self.started, self.endpoints))
            if not self.endpoints and not empty_since:
                empty_since = now
            elif self.endpoints and empty_since:
                self.no_endpoint_s += now - empty_since
                empty_since = 0.0
        if empty_since:
            self.no_endpoint_s += time.monotonic() - empty_since

    def target(self, turn: int) -> str | None:
        """Where request number `turn` goes: the next ready endpoint, or None when there is none."""
        endpoints = self.endpoints
        return endpoints[turn % len(endpoints)] if endpoints else None

    def _send(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ip, error = self.target(next(self._turns)), ""
                self.sent += 1
            if ip is None:
                ip, error = "", "no ready endpoint"
            else:
                try:
                    # A new connection each time, so a Service's ClusterIP balances every request too.
                    with urllib.request.urlopen(f"http://{ip}:{self.port}{self.path}", timeout=10) as answer:
                        json.loads(answer.read())
                except (OSError, ValueError, http.client.HTTPException) as problem:
                    # Any failure counts, a connection cut mid-answer (IncompleteRead) too.
                    error = f"{type(problem).__name__}: {problem}"
            if error:
                with self._lock:
                    self.failed += 1
                    self.failures.append((time.monotonic(), ip, error))
            time.sleep(self.interval)

    def carry_on(self, requests: int = 20, timeout: float = 120.0) -> None:
        """Block until `requests` more requests were sent: the traffic goes on past a change, not just up to it."""
        mark = self.sent
        wait_for(f"{requests} more requests", lambda: self.sent >= mark + requests, timeout=timeout)

    @property
    def errors(self) -> list[str]:
        return [error for _, _, error in self.failures]

    def __enter__(self) -> EndpointTraffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def report(self, what: str) -> str:
        window = f", failures within {self.failures[-1][0] - self.failures[0][0]:.1f} s" if self.failures else ""
        return (f"{what}: {self.sent} requests to {self.service}{self.path} over its ready endpoints, "
                f"{self.failed} failed{window}, {self.no_endpoint_s:.1f} s with no ready endpoint")


class CallTraffic(EndpointTraffic):
    """EndpointTraffic whose requests are made by `call(ip)` (a gRPC call, say) instead of an HTTP GET: spread over
    the Service's ready endpoints re-read every half second, counted the same way. A call fails when it raises
    (any exception: a gRPC status, a wrong answer); `what` names the calls in the report."""

    def __init__(self, cp: ControlPlane, namespace: str, service: str, what: str, call: Callable[[str], object], *,
                 rate: float = 10.0) -> None:
        super().__init__(cp, namespace, service, what, rate=rate, senders=0)
        self.call = call
        self._threads.append(threading.Thread(target=self._call, daemon=True))

    def _call(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ip = self.target(next(self._turns))
                self.sent += 1
            if ip is None:
                error = "no ready endpoint"
            else:
                try:
                    self.call(ip)
                    error = ""
                except Exception as problem:  # every failure counts: a gRPC status, a wrong answer
                    error = f"{type(problem).__name__}: {problem}"
            if error:
                with self._lock:
                    self.failed += 1
                    self.failures.append((time.monotonic(), ip or "", error))
            time.sleep(self.interval)
