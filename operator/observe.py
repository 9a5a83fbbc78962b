"""The observe step of a round: a Snapshot from the watch-fed store, plus Serve's report from the head's dashboard.

The store answers without a request; the dashboard is the one thing asked each round (timed and counted).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from pydantic import ValidationError

from . import objects, podfacts, servereport
from .api.kinds import (
    APPS,
    CLUSTERS,
    DEPLOYMENTS,
    INGRESSES,
    NETWORKPOLICIES,
    PODS,
    ROLEBINDINGS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
)
from .cache import ORPHANS, Key, Store, app_cluster, deployment_app
from .clients.dashboard import DashboardError
from .clients.dashboards import DashboardPool, timed
from .compose import validation_message
from .manifests import auth, common
from .snapshot import Rejection, Snapshot, TokenSecret


def cluster_token(store: Store, namespace: str, cluster: str) -> str | None:
    """The Ray auth token of a cluster, from its Secret in the store; None without one (auth Disabled)."""
    return auth.token_of(store.get(SECRETS, namespace, common.token_secret_name(cluster)))


def _token_secret(store: Store, namespace: str, cluster: str) -> TokenSecret | None:
    name = common.token_secret_name(cluster)
    secret = store.get(SECRETS, namespace, name)
    if secret is None or objects.is_deleting(secret):
        return None
    token = auth.token_of(secret)
    return TokenSecret(name=name, digest=auth.digest(token) if token else None)


def _from_store(store: Store, key: Key, now: datetime) -> Snapshot:
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
        network_policies={objects.name(n): n for n in store.owned(NETWORKPOLICIES, namespace, name)},
        autoscaler_access={
            (kind, objects.name(o)): o
            for kind in (SERVICEACCOUNTS, ROLEBINDINGS)
            for o in store.owned(kind, namespace, name)
        },
        token_secret=_token_secret(store, namespace, name) if name != ORPHANS else None,
        apps=tuple(sorted(apps, key=objects.name)),
        deployments=tuple(sorted(deployments, key=objects.name)),
        now=now,
    )


async def observe(store: Store, dashboards: DashboardPool, key: Key, rejection: Rejection | None) -> Snapshot:
    """What a round plans from: the store's objects and, while the cluster lives and its head has an IP,
    Serve's report."""
    snap = _from_store(store, key, datetime.now(UTC))
    reports: dict[str, servereport.ServeReport | None] = {}
    errors: dict[str, str] = {}
    if snap.cluster is not None and not objects.is_deleting(snap.cluster):
        # Every generation with a live head: the active one, and an upgrade's new one (two GETs only then).
        heads = {podfacts.generation_of(p): p for p in snap.pods if common.is_head(p) and not objects.is_deleting(p)}
        token = cluster_token(store, snap.namespace, snap.name)
        for generation, head in sorted(heads.items()):
            head_ip = (head.get("status") or {}).get("podIP")
            if not head_ip:
                continue
            client = await dashboards.for_head(snap.namespace, snap.name, generation, head_ip, token)
            try:
                reports[generation] = servereport.parse(await timed("GET", client.get_applications()))
            except DashboardError as problem:
                reports[generation], errors[generation] = None, str(problem)
            except ValidationError as problem:
                reports[generation] = None
                errors[generation] = f"Serve's report does not parse: {validation_message(problem)}"
        await dashboards.forget(snap.namespace, snap.name, keep=set(heads))
    elif snap.cluster is None:
        await dashboards.forget(snap.namespace, snap.name)
    return dataclasses.replace(
        snap, reports=reports, report_errors=errors, rejection=rejection
    )
