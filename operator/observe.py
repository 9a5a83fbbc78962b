"""The observe step of a round: a Snapshot from the watch-fed store, plus Serve's report from the head's dashboard.

The store answers without a request; the dashboard is the one thing asked each round (timed and counted).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from . import metrics, objects, plan
from .api.kinds import APPS, CLUSTERS, DEPLOYMENTS, INGRESSES, PODS, SERVICES
from .cache import ORPHANS, Key, Store, app_cluster, deployment_app
from .clients.dashboard import DashboardClient, DashboardError, DashboardRejected
from .manifests import common
from .snapshot import Rejection, Snapshot

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


def _from_store(store: Store, key: Key) -> Snapshot:
    namespace, name = key
    apps = tuple(a for a in store.in_namespace(APPS, namespace) if app_cluster(a) == name)
    app_names = {objects.name(a) for a in apps}
    if name == ORPHANS:
        deployments = tuple(
            d
            for d in store.in_namespace(DEPLOYMENTS, namespace)
            if store.get(APPS, namespace, deployment_app(d)) is None
        )
    else:
        deployments = tuple(d for d in store.in_namespace(DEPLOYMENTS, namespace) if deployment_app(d) in app_names)
    return Snapshot(
        namespace=namespace,
        name=name,
        cluster=store.get(CLUSTERS, namespace, name) if name != ORPHANS else None,
        pods=tuple(sorted(store.owned(PODS, namespace, name), key=objects.name)),
        services={objects.name(s): s for s in store.owned(SERVICES, namespace, name)},
        ingresses={objects.name(i): i for i in store.owned(INGRESSES, namespace, name)},
        apps=tuple(sorted(apps, key=objects.name)),
        deployments=tuple(sorted(deployments, key=objects.name)),
    )


async def observe(store: Store, dashboards: DashboardPool, key: Key, rejection: Rejection | None) -> Snapshot:
    """What a round plans from: the store's objects and, while the cluster lives and its head has an IP,
    Serve's report."""
    snap = _from_store(store, key)
    head = plan.live_head(snap.pods, snap.name)
    head_ip = ((head or {}).get("status") or {}).get("podIP")
    serve, error = None, None
    if snap.cluster is not None and not objects.is_deleting(snap.cluster) and head_ip:
        client = await dashboards.for_head(snap.namespace, snap.name, head_ip)
        try:
            serve = await timed("GET", client.get_applications())
        except DashboardError as problem:
            error = str(problem)
    elif snap.cluster is None:
        await dashboards.forget(snap.namespace, snap.name)
    return dataclasses.replace(snap, serve=serve, serve_error=error, rejection=rejection, now=datetime.now(UTC))
