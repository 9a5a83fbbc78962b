"""The preStop drain: stop being Ready, wait for in-flight requests at this node's Serve proxy, then return.

Called by the agent's /drain (the pod's preStop hook); the kubelet sends SIGTERM only after it returns. Calls are
idempotent: a second /drain joins the first one's wait. The wait ends by `probes.drain_verdict`:
  - never before `drain_min_wait_s` (3 s): kube-proxy and ingresses drop a terminating pod a little late, and
    requests arriving meanwhile are still served;
  - then as soon as no client holds a TCP connection to this node's Serve proxy. The count comes from
    /proc/net/tcp{,6} of the pod's network namespace: exact and without lag (Ray's own proxy metrics are reported
    every few seconds), and an open keep-alive connection may still bring requests, so it is waited for too;
  - at the latest after `drain_timeout_s` (20 s).
Moving Serve replicas off the node is Ray's job, after the SIGTERM that follows: `ray start` (Ray >= 2.60) answers
SIGTERM by asking the GCS to drain the node, so Serve drains the proxy and starts replacement replicas elsewhere
before the raylet exits (see supervisor.py). Budget with the defaults: 20 s here + 20 s Ray drain + at most 10 s of
process teardown, inside the pod's terminationGracePeriodSeconds of 60.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from . import procfs
from .probes import drain_verdict
from .state import NodeState

log = logging.getLogger(__name__)

_POLL_S = 0.25


@dataclass(frozen=True)
class DrainSettings:
    http_port: int
    timeout_s: float
    min_wait_s: float


class Drainer:
    def __init__(self, *, settings: DrainSettings, state: NodeState) -> None:
        self._settings = settings
        self._state = state
        self._task: asyncio.Task[dict[str, Any]] | None = None

    async def drain(self) -> dict[str, Any]:
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        # shield: a kubelet giving up on one /drain call must not cancel the drain itself.
        return await asyncio.shield(self._task)

    async def _run(self) -> dict[str, Any]:
        started = self._state.start_draining()
        log.info("draining: readiness now fails; waiting for clients of the Serve proxy to finish")
        s = self._settings
        while True:
            elapsed = time.monotonic() - started
            connections = procfs.established_connections(s.http_port)
            verdict = drain_verdict(
                elapsed_s=elapsed, min_wait_s=s.min_wait_s, timeout_s=s.timeout_s, connections=connections
            )
            if verdict:
                break
            await asyncio.sleep(_POLL_S)
        result = {"drained": True, "ended": verdict, "waited_s": round(elapsed, 2), "proxy_connections": connections}
        log.info("drain done: %s", result)
        return result
