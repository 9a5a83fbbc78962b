"""Talking to one cluster's Ray dashboard, timed and counted, and reading Serve's answer into a ServeView."""
from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import metrics, objects
from .clients.dashboard import DashboardClient, DashboardRejected
from .compose import ServeView
from .manifests import common
from .objects import Obj

T = TypeVar("T")


async def timed(method: str, call: Awaitable[T]) -> T:
    """Await a dashboard call, recording its latency and outcome (2xx, 4xx code, or `error`)."""
    start = time.monotonic()
    code = "error"
    try:
        result = await call
        code = "2xx"
        return result
    except DashboardRejected as error:
        code = str(error.status)
        raise
    finally:
        metrics.DASHBOARD_REQUESTS.labels(method, code).inc()
        metrics.DASHBOARD_SECONDS.labels(method).observe(time.monotonic() - start)


@dataclass
class DashboardPool:
    """One dashboard client per cluster, replaced when the head pod (and so its IP) changes."""

    timeout_s: float
    _clients: dict[tuple[str, str], DashboardClient] = field(default_factory=dict)

    async def for_head(self, namespace: str, cluster: str, head_ip: str) -> DashboardClient:
        key = (namespace, cluster)
        url = f"http://{head_ip}:{common.DASHBOARD_PORT}"
        current = self._clients.get(key)
        if current is not None and current.base_url.rstrip("/") == url:
            return current
        if current is not None:
            await current.close()
        # One try per call: the reconcile loop itself is the retry, and a dead head must not stall it.
        self._clients[key] = DashboardClient(url, timeout_s=self.timeout_s, retries=1)
        return self._clients[key]

    async def forget(self, namespace: str, cluster: str) -> None:
        client = self._clients.pop((namespace, cluster), None)
        if client is not None:
            await client.close()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def serve_app_names(serve: dict[str, Any] | None) -> set[str] | None:
    """The applications Serve reports (deleting ones included), or None when Serve could not be asked."""
    return None if serve is None else set(serve.get("applications") or {})


def serve_view(serve: dict[str, Any] | None, apps: list[Obj]) -> ServeView:
    """Serve's running configs (the last good ones) and each application's known deployment names.

    Deployment names also come from the ServeApplication's status, so they survive a head restart.
    """
    reported = (serve or {}).get("applications") or {}
    deployed = {
        name: details["deployed_app_config"]
        for name, details in reported.items()
        if details.get("status") == "RUNNING" and details.get("deployed_app_config")
    }
    known: dict[str, frozenset[str]] = {}
    for app in apps:
        name = objects.name(app)
        names = set((objects.status(app).get("deployments") or {}).keys())
        names |= set(((reported.get(name) or {}).get("deployments") or {}).keys())
        if names:
            known[name] = frozenset(names)
    return ServeView(deployed=deployed, deployments=known)
