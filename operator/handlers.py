"""The only module with kopf decorators: watch events wake per-cluster loops; nothing else happens here.

No change-detecting handlers (on.create/update) are used, so kopf keeps no bookkeeping annotations on the
users' resources and a GitOps tool sees no drift. The only mark the operator leaves is the finalizer
`serveplane.dev/serve-cleanup` on ServeApplications, so that a deleted application leaves Serve first.
"""
from __future__ import annotations

import logging
from typing import Any, cast

import kopf
from prometheus_client import start_http_server

from . import metrics, objects
from .api.base import GROUP, VERSION
from .clients.kube import Kube, load_config
from .loops import ClusterLoops
from .manifests import common
from .reconcile import APPS, CLUSTERS, DEPLOYMENTS, Reconciler
from .settings import Settings

log = logging.getLogger(__name__)


def _post_event(obj: dict[str, Any], kind: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, obj), type=kind, reason=reason, message=message)


def _forget(plural: str, body: kopf.Body) -> None:
    metrics.record_ready(plural, body["metadata"]["namespace"], body["metadata"]["name"], None)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = Settings.from_env()
    logging.getLogger().setLevel(config.log_level)
    # kopf logs every handled watch event at INFO; those lines drown the operator's own below DEBUG.
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if config.log_level == "DEBUG" else logging.WARNING)
    # kopf would otherwise turn every log line of a handler into a Kubernetes Event.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    load_config()
    start_http_server(config.metrics_port)
    reconciler = Reconciler(Kube(), config, _post_event)
    memo["loops"] = ClusterLoops(reconciler, config)
    memo["reconciler"] = reconciler


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo["loops"].stop()
    await memo["reconciler"].dashboards.close()


@kopf.on.event(GROUP, VERSION, CLUSTERS)
async def cluster_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    memo["loops"].wake(namespace, name)
    if type == "DELETED":
        _forget(CLUSTERS, body)
        reconciler: Reconciler = memo["reconciler"]
        for app in await reconciler.kube.list_custom(APPS, namespace):
            if objects.spec(app).get("cluster", "default") == name:
                await reconciler.orphan_application(app)


@kopf.on.event(GROUP, VERSION, APPS)
async def application_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        _forget(APPS, body)
        return
    namespace, cluster = body["metadata"]["namespace"], body.get("spec", {}).get("cluster", "default")
    reconciler: Reconciler = memo["reconciler"]
    if memo["loops"].known(namespace, cluster) or await reconciler.kube.get_custom(CLUSTERS, namespace, cluster):
        memo["loops"].wake(namespace, cluster)
        # The application may have moved from another cluster, which must drop it.
        memo["loops"].wake_namespace(namespace)
    else:
        await reconciler.orphan_application(dict(body))


@kopf.on.event(GROUP, VERSION, DEPLOYMENTS)
async def deployment_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        _forget(DEPLOYMENTS, body)
        memo["loops"].wake_namespace(body["metadata"]["namespace"])
        return
    namespace, application = body["metadata"]["namespace"], body.get("spec", {}).get("application", "")
    reconciler: Reconciler = memo["reconciler"]
    app = await reconciler.kube.get_custom(APPS, namespace, application)
    cluster = objects.spec(app).get("cluster", "default") if app else None
    if cluster and (memo["loops"].known(namespace, cluster) or await reconciler.kube.get_custom(CLUSTERS, namespace, cluster)):
        memo["loops"].wake(namespace, cluster)
    else:
        await reconciler.orphan_deployment(dict(body))


@kopf.on.event("", "v1", "pods", labels={common.CLUSTER_LABEL: kopf.PRESENT})
async def pod_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo["loops"].wake(body["metadata"]["namespace"], body["metadata"]["labels"][common.CLUSTER_LABEL])
