"""PURE: the rounds of a loop whose ServeCluster is missing, being deleted or invalid: what its applications and
deployments say meanwhile, and the clean-up a deleted cluster leaves to do."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import conditions, gcsft, objects, status
from ..actions import Action, Plan, SetFinalizers
from ..api.kinds import APPS, CLUSTERS, DEPLOYMENTS
from ..finalizers import FINALIZER
from ..objects import Obj
from ..snapshot import Snapshot
from .statuses import write_at


def without_cluster(snap: Snapshot, image: str) -> Plan:
    """No ServeCluster (or one being deleted): say so on its applications and deployments, and let deleted
    applications go, since Serve went with the cluster; a deleted cluster's Redis state goes too."""
    actions: list[Action] = gcsft.redis_cleanup(snap.cluster, snap.pods, image) if snap.cluster else []
    for app in snap.apps:
        if objects.is_deleting(app):
            current = tuple(app["metadata"].get("finalizers") or ())
            if FINALIZER in current:
                kept = tuple(f for f in current if f != FINALIZER)
                actions.append(SetFinalizers(APPS, objects.name(app), kept, app["metadata"]["resourceVersion"]))
        else:
            new = status.application_status(app, None, None, cluster_missing=True)
            actions += write_at(snap.now, APPS, app, new)
    for sdep in snap.deployments:
        actions += write_at(snap.now, DEPLOYMENTS, sdep, status.deployment_status(sdep, None, None))
    return Plan(actions=tuple(actions), done=True)


def invalid(cluster: Obj, message: str, now: datetime) -> Plan:
    """A spec the models refuse: the cluster says which field and why, and nothing else is done."""
    generation = objects.generation(cluster)
    conds = conditions.triple(
        generation,
        ready=(False, "InvalidSpec", message),
        progressing=(False, "InvalidSpec", message),
        degraded=(True, "InvalidSpec", message),
    )
    new: dict[str, Any] = {
        **objects.status(cluster), "observedGeneration": generation, "conditions": [c.to_wire() for c in conds]
    }
    return Plan(actions=tuple(write_at(now, CLUSTERS, cluster, new)))
