"""The operator's dashboard clients: one per generation of each cluster, and the timing and counting of every call.

The observe step GETs through them; the executor PUTs through them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from .. import metrics
from ..manifests import auth, common
from .dashboard import DashboardClient, DashboardRejected

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
    """One dashboard client per generation of a cluster, replaced when its head pod (and so its IP) or the auth
    token changes."""

    timeout_s: float
    port: int = common.DASHBOARD_PORT
    """The dashboard's port on every head (Ray's default; a test's head may listen elsewhere)."""
    _clients: dict[tuple[str, str, str], tuple[str | None, DashboardClient]] = field(
        default_factory=dict, repr=False
    )
    """(namespace, cluster, generation) -> (the digest of the client's token, the client)."""

    async def for_head(
        self, namespace: str, cluster: str, generation: str, head_ip: str, token: str | None
    ) -> DashboardClient:
        key = (namespace, cluster, generation)
        host = f"[{head_ip}]" if ":" in head_ip else head_ip  # an IPv6 pod address
        url = f"http://{host}:{self.port}"
        fingerprint = auth.digest(token) if token else None
        current = self._clients.get(key)
        if current is not None and current[1].base_url.rstrip("/") == url and current[0] == fingerprint:
            return current[1]
        if current is not None:
            await current[1].close()
        # One try per call: the reconcile loop itself is the retry, and a dead head must not stall it.
        client = DashboardClient(url, timeout_s=self.timeout_s, retries=1, token=token)
        self._clients[key] = (fingerprint, client)
        return client

    async def forget(self, namespace: str, cluster: str, keep: set[str] | None = None) -> None:
        """Close the clients of a cluster's generations, but those in `keep`."""
        for key in [k for k in self._clients if k[:2] == (namespace, cluster) and k[2] not in (keep or set())]:
            await self._clients.pop(key)[1].close()

    async def close(self) -> None:
        for _, client in self._clients.values():
            await client.close()
        self._clients.clear()
