"""The operator's view of the world: every object it cares about, as the watch streams last delivered it.

kopf's watches (fed in by `handlers.py`) and the responses of the operator's own writes (fed in by the
executor) are the only inputs; nothing here calls the API server. A round of reconcile reads a snapshot from
this store instead of a GET or LIST, so a steady operator makes no requests at all.

Which cluster loop an event concerns is decided here too (`touched`), because it needs the store: a
ServeDeployment reaches its cluster through its application.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import objects
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
from .manifests import common
from .objects import Obj

KINDS = (
    CLUSTERS, APPS, DEPLOYMENTS, PODS, SERVICES, INGRESSES, NETWORKPOLICIES, SECRETS, SERVICEACCOUNTS, ROLEBINDINGS,
)
CUSTOM = (CLUSTERS, APPS, DEPLOYMENTS)

Key = tuple[str, str]
"""(namespace, ServeCluster name) of a cluster loop. The name may belong to no ServeCluster (yet, or any more)."""

ORPHANS = ""
"""The cluster-loop name for ServeDeployments whose application does not exist: no ServeCluster has this name."""

# Bookkeeping the server changes on every write; a difference there alone is no news to a reconcile.
_VOLATILE_METADATA = ("resourceVersion", "managedFields")


def _resource_version(obj: Obj) -> int | None:
    raw = obj["metadata"].get("resourceVersion")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def is_newer(new: Obj, old: Obj | None) -> bool:
    """Whether `new` may replace `old`.

    A write's response can reach the store before the watch delivers the events that preceded it, so an older
    version must not win. Resource versions are opaque by contract; the API server's are etcd revisions
    (integers), which is what this compares, and anything else is taken as newer.
    """
    if old is None:
        return True
    new_rv, old_rv = _resource_version(new), _resource_version(old)
    return new_rv is None or old_rv is None or new_rv >= old_rv


def is_gone(kind: str, obj: Obj) -> bool:
    """Whether this version is the last one of an object that no longer exists.

    The API server removes a custom resource the moment it is being deleted and has no finalizer left, so the
    response of the write that removed the last finalizer describes a deleted object. That response can reach the
    store after the watch's DELETED event: storing it would bring back a ghost no event ever removes. (Pods are not
    gone then: they end gracefully, and the watch says when.)
    """
    return kind in CUSTOM and objects.is_deleting(obj) and not obj["metadata"].get("finalizers")


def _essence(kind: str, obj: Obj) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k not in _VOLATILE_METADATA}
    rest = {k: v for k, v in obj.items() if k != "metadata" and not (kind in CUSTOM and k == "status")}
    return {**rest, "metadata": meta}


def is_news(kind: str, old: Obj | None, new: Obj | None) -> bool:
    """Whether a change can alter a reconcile's decisions.

    The statuses of serveplane's own kinds are written only by the operator, so a change there alone (the echo
    of its own write) wakes nothing; a pod's status (readiness, IP) is news.
    """
    if old is None or new is None:
        return old is not new
    return _essence(kind, old) != _essence(kind, new)


class Store:
    """The latest version of each object, by kind, namespace and name."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {kind: {} for kind in KINDS}

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._objects[kind].get((namespace, name))

    def put(self, kind: str, obj: Obj) -> set[Key]:
        """Store `obj` unless the store holds a newer version; return the cluster loops the change must wake.

        Nothing wakes when the change is no news (`is_news`): the echo of the operator's own write, whose
        response the store already holds, or a stale version.
        """
        key = (objects.namespace(obj), objects.name(obj))
        old = self._objects[kind].get(key)
        if is_gone(kind, obj):
            return self.remove(kind, obj) if old is not None else set()
        if not is_newer(obj, old):
            return set()
        self._objects[kind][key] = obj
        return self.touched(kind, (old, obj)) if is_news(kind, old, obj) else set()

    def remove(self, kind: str, obj: Obj) -> set[Key]:
        """Forget a deleted object; return the cluster loops its last known version concerns."""
        old = self._objects[kind].pop((objects.namespace(obj), objects.name(obj)), None)
        return self.touched(kind, (old or obj,))

    def in_namespace(self, kind: str, namespace: str) -> list[Obj]:
        return [obj for (space, _), obj in self._objects[kind].items() if space == namespace]

    def all(self, kind: str) -> list[Obj]:
        return list(self._objects[kind].values())

    def owned(self, kind: str, namespace: str, cluster: str) -> list[Obj]:
        """The objects of one kind a ServeCluster owns, found by the cluster label the operator sets."""
        return [
            obj
            for obj in self.in_namespace(kind, namespace)
            if (obj["metadata"].get("labels") or {}).get(common.CLUSTER_LABEL) == cluster
        ]

    def cluster_of_application(self, namespace: str, application: str) -> str:
        """The cluster loop that owns a ServeDeployment of `application`: its cluster's, or ORPHANS."""
        app = self.get(APPS, namespace, application)
        return app_cluster(app) if app is not None else ORPHANS

    def touched(self, kind: str, versions: Iterable[Obj | None]) -> set[Key]:
        """The cluster loops that one object's versions (before and after a change) concern."""
        keys: set[Key] = set()
        for obj in versions:
            if obj is None:
                continue
            namespace = objects.namespace(obj)
            if kind == CLUSTERS:
                keys.add((namespace, objects.name(obj)))
            elif kind == APPS:
                # An application that appears or goes changes which ServeDeployments are orphans.
                keys |= {(namespace, app_cluster(obj)), (namespace, ORPHANS)}
            elif kind == DEPLOYMENTS:
                keys.add((namespace, self.cluster_of_application(namespace, deployment_app(obj))))
            else:
                cluster = (obj["metadata"].get("labels") or {}).get(common.CLUSTER_LABEL)
                if cluster:
                    keys.add((namespace, cluster))
        return keys

    def every_key(self) -> set[Key]:
        """Every cluster loop that has anything to look after: what a newly elected leader starts with."""
        keys: set[Key] = set()
        for kind in KINDS:
            keys |= self.touched(kind, self.all(kind))
        return keys


def app_cluster(app: Obj) -> str:
    return str(objects.spec(app).get("cluster") or "default")


def deployment_app(sdep: Obj) -> str:
    return str(objects.spec(sdep).get("application") or "")
