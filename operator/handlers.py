"""The only module with kopf decorators: kopf's watches feed the store and wake cluster loops; nothing else.

Every watched kind has an index handler, which is where the store is fed: kopf runs index handlers for the
whole initial listing before it calls any other handler, so the first event handler call proves the store
complete (`loops.synced()`), and no round ever plans from half a listing (which would recreate existing pods).

No change-detecting handlers (on.create/update) are used, so kopf keeps no bookkeeping annotations on the
users' resources and a GitOps tool sees no drift. The only mark the operator leaves is the finalizer
`serveplane.dev/serve-cleanup` on ServeApplications, so that a deleted application leaves Serve first.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf
from prometheus_client import REGISTRY, start_http_server

from . import election, metrics
from .api.base import GROUP, VERSION
from .api.kinds import APPS, CLUSTERS, DEPLOYMENTS
from .cache import CUSTOM, Store
from .clients import kube
from .clients.dashboards import DashboardPool
from .clients.kube import Kube, credentials
from .executor import Executor
from .loops import ClusterLoops
from .manifests import common
from .settings import Settings

log = logging.getLogger(__name__)

# Server-side filter of the watches of owned objects: the operator never holds anyone else's pods.
OWNED = "app.kubernetes.io/managed-by=serveplane"
# The core kinds a ServeCluster owns (plural -> API group), labelled with their cluster and watched through OWNED,
# so the operator never holds anyone else's pods or Secrets.
OWNED_KINDS = kube.OWNED_GROUPS


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = Settings.from_env()
    logging.getLogger().setLevel(config.log_level)
    # kopf logs every handled watch event at INFO; those lines drown the operator's own below DEBUG.
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if config.log_level == "DEBUG" else logging.WARNING)
    # kopf would otherwise turn log lines of handlers into Kubernetes Events; the executor posts its own.
    settings.posting.enabled = False
    # Long watches that resume from their last resourceVersion (kopf asks for bookmarks): no re-listing.
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 630
    for plural in OWNED_KINDS:
        settings.watching.label_selectors[plural] = OWNED
    start_http_server(config.metrics_port)
    store = Store()
    REGISTRY.register(metrics.ResourcesCollector(store.all, CUSTOM))
    dashboards = DashboardPool(config.dashboard_timeout_s)
    kube = Kube(lambda: credentials(settings))
    executor = Executor(kube, store, dashboards)
    loops = ClusterLoops(store, executor, dashboards, config)
    memo["store"], memo["loops"], memo["dashboards"], memo["kube"] = store, loops, dashboards, kube
    lease = election.config_from_env(os.environ)
    if lease is None:
        loops.leading()
    else:
        elector = election.LeaderElector(api=kube, config=lease)
        loops.may_act = elector.holding
        memo["elector"] = elector
        memo["election_task"] = asyncio.create_task(_lead(elector, loops), name="serveplane:leader-election")


async def _lead(elector: election.LeaderElector, loops: ClusterLoops) -> None:
    """Reconcile while holding the lease. On losing it (another replica took it, or it could not be renewed in
    time, say while etcd restarts), stop every loop before anyone else may lead, and go back to standby: the
    watches keep the store warm, so leading again (the lease is still ours once the API server is back) resumes
    from the current state and resubmits nothing."""
    while True:
        await elector.acquire()
        log.info("leader election: this operator holds the lease; reconciling")
        loops.leading()
        await elector.hold()
        await loops.stop()
        log.warning("leader election: the lease was lost; reconciling stopped until this replica leads again")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("election_task")
    if task is not None:
        task.cancel()
    await memo["loops"].stop()
    if memo.get("elector") is not None and memo["elector"].is_leader:
        await memo["elector"].release()
    await memo["dashboards"].close()
    await memo["kube"].close()


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf's watches and the operator's own writes use the same credentials."""
    return credentials(settings)


def _index(plural: str, body: kopf.Body, memo: kopf.Memo) -> None:
    memo["loops"].wake(memo["store"].put(plural, dict(body)))


def _event(plural: str, body: kopf.Body, type: str | None, memo: kopf.Memo) -> None:
    loops: ClusterLoops = memo["loops"]
    loops.synced()
    if type == "DELETED":
        loops.wake(memo["store"].remove(plural, dict(body)))


@kopf.index(GROUP, VERSION, CLUSTERS)
async def cluster_index(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _index(CLUSTERS, body, memo)


@kopf.index(GROUP, VERSION, APPS)
async def application_index(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _index(APPS, body, memo)


@kopf.index(GROUP, VERSION, DEPLOYMENTS)
async def deployment_index(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    _index(DEPLOYMENTS, body, memo)


@kopf.on.event(GROUP, VERSION, CLUSTERS)
async def cluster_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    _event(CLUSTERS, body, type, memo)


@kopf.on.event(GROUP, VERSION, APPS)
async def application_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    _event(APPS, body, type, memo)


@kopf.on.event(GROUP, VERSION, DEPLOYMENTS)
async def deployment_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    _event(DEPLOYMENTS, body, type, memo)


def _watch_owned(plural: str, group: str) -> None:
    """An index handler (feeds the store) and an event handler (deletions, `synced`) for one owned kind."""
    labels = {common.CLUSTER_LABEL: kopf.PRESENT}

    @kopf.index(group, "v1", plural, labels=labels, id=f"{plural}_index")
    async def owned_index(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        _index(plural, body, memo)

    @kopf.on.event(group, "v1", plural, labels=labels, id=f"{plural}_event")
    async def owned_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
        _event(plural, body, type, memo)


for _plural, _group in OWNED_KINDS.items():
    _watch_owned(_plural, _group)
