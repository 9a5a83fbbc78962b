"""The observe step of a round: a Snapshot from the watch-fed store, plus Serve's report from the head's dashboard.

The store answers without a request; the dashboard is the one thing asked each round (timed and counted).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from pydantic import ValidationError

from . import objects, ownership, podfacts, servereport
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
from .manifests import auth, cleanup, common
from .objects import Obj
from .snapshot import Rejection, Snapshot, TokenSecret

OWNED_KINDS = (PODS, SERVICES, INGRESSES, NETWORKPOLICIES, SERVICEACCOUNTS, ROLEBINDINGS, SECRETS)


def _ours(store: Store, namespace: str, cluster: str, obj: Obj | None) -> Obj | None:
    """The object, if the live ServeCluster of that name is its controller; a namesake of anyone else's is not."""
    owner = store.get(CLUSTERS, namespace, cluster)
    return obj if obj is not None and owner is not None and ownership.is_ours(obj, objects.uid(owner)) else None


def cluster_token(store: Store, namespace: str, cluster: str) -> str | None:
    """The Ray auth token of a cluster, from its own Secret in the store; None without one (auth Disabled)."""
    secret = store.get(SECRETS, namespace, common.token_secret_name(cluster))
    return auth.token_of(_ours(store, namespace, cluster, secret))


def _token_secret(secret: Obj | None) -> TokenSecret | None:
    if secret is None or objects.is_deleting(secret):
        return None
    token = auth.token_of(secret)
    digest = auth.digest(token) if token else None
    return TokenSecret(name=objects.name(secret), digest=digest, uid=objects.uid(secret))


def _deployments(store: Store, namespace: str, name: str, app_names: set[str]) -> tuple[Obj, ...]:
    if name == ORPHANS:
        apps = {objects.name(a) for a in store.in_namespace(APPS, namespace)}
        found = [d for d in store.in_namespace(DEPLOYMENTS, namespace) if deployment_app(d) not in apps]
    else:
        found = [d for d in store.in_namespace(DEPLOYMENTS, namespace) if deployment_app(d) in app_names]
    return tuple(sorted(found, key=objects.name))


def _names_owner(obj: Obj) -> bool:
    return common.OWNER_UID_ANNOTATION in (obj["metadata"].get("annotations") or {})


def _owned(store: Store, key: Key, uid: str | None) -> tuple[dict[str, list[Obj]], set[tuple[str, str]]]:
    """Per kind, the objects this cluster really owns (its UID in their controller reference), and (kind, name) of
    those that only carry its labels: someone else's, never to be changed, adopted or deleted."""
    namespace, name = key
    owned: dict[str, list[Obj]] = {}
    foreign: set[tuple[str, str]] = set()
    for kind in OWNED_KINDS:
        labelled = store.owned(kind, namespace, name)
        if kind == SECRETS:
            labelled = [s for s in labelled if objects.name(s) == common.token_secret_name(name)]
        ours, theirs = ownership.split(labelled, uid) if uid else ([], labelled)
        if kind == PODS:
            # A clean-up pod an older serveplane made names no owner: still this cluster's to wait for.
            legacy = [p for p in theirs if cleanup.is_cleanup_pod(p) and not _names_owner(p)]
            ours, theirs = sorted(ours + legacy, key=objects.name), [p for p in theirs if p not in legacy]
        owned[kind] = sorted(ours, key=objects.name)
        foreign |= {(kind, objects.name(o)) for o in theirs if kind != PODS}
    return owned, foreign


def from_store(store: Store, key: Key, now: datetime, conflicts: frozenset[tuple[str, str]]) -> Snapshot:
    namespace, name = key
    apps = tuple(a for a in store.in_namespace(APPS, namespace) if app_cluster(a) == name)
    cluster = store.get(CLUSTERS, namespace, name) if name != ORPHANS else None
    owned, foreign = _owned(store, key, objects.uid(cluster) if cluster else None)
    secrets = owned[SECRETS]
    return Snapshot(
        namespace=namespace,
        name=name,
        cluster=cluster,
        pods=tuple(owned[PODS]),
        services={objects.name(s): s for s in owned[SERVICES]},
        ingresses={objects.name(i): i for i in owned[INGRESSES]},
        network_policies={objects.name(n): n for n in owned[NETWORKPOLICIES]},
        autoscaler_access={(kind, objects.name(o)): o for kind in (SERVICEACCOUNTS, ROLEBINDINGS) for o in owned[kind]},
        token_secret=_token_secret(secrets[0] if secrets else None) if cluster else None,
        apps=tuple(sorted(apps, key=objects.name)),
        deployments=_deployments(store, namespace, name, {objects.name(a) for a in apps}),
        foreign=frozenset(foreign | conflicts) if cluster else frozenset(),
        now=now,
    )


async def observe(
    store: Store, dashboards: DashboardPool, key: Key, rejection: Rejection | None,
    conflicts: frozenset[tuple[str, str]] = frozenset(),
) -> Snapshot:
    """What a round plans from: the store's objects and, while the cluster lives and its head has an IP,
    Serve's report."""
    snap = from_store(store, key, datetime.now(UTC), conflicts)
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
