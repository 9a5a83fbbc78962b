"""PURE: the rounds of a loop whose ServeCluster is missing, being deleted or invalid: what its applications and
deployments say meanwhile, and the clean-up a deleted cluster leaves to do; and what a cluster says when its round
failed with an exception (called by the loop, `loops.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import conditions, gcsft, objects, status
from ..actions import Action, Plan, SetFinalizers
from ..api.base import Condition
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


RECONCILE_ERROR = "ReconcileError"
# A status is read by people and by tools like Argo CD; an exception's text (an API server's answer) can be long.
FAILURE_MESSAGE_LIMIT = 1024
_RETRYING = " (the operator retries with backoff)"


def failure_message(error: BaseException) -> str:
    """The exception's type and its text on one line, cut so that the whole message stays within the bound."""
    try:
        text = " ".join(str(error).split())
    except Exception:  # an exception whose __str__ fails still has a type
        text = ""
    head = f"{type(error).__name__}: " if text else type(error).__name__
    room = FAILURE_MESSAGE_LIMIT - len(head) - len(_RETRYING)
    cut = text if len(text) <= room else text[: room - 3] + "..."
    return f"{head}{cut}{_RETRYING}"


def round_failed(cluster: Obj, error: BaseException, now: datetime) -> tuple[Action, ...]:
    """A round that raised: the cluster's Degraded condition says so (ReconcileError, with the exception's type
    and text) at the spec's generation, and so does observedGeneration; Ready and Progressing stay as the last
    round that finished left them (Unknown when there is none). Nothing when the status says so already, so a
    loop that keeps failing the same way writes once."""
    generation = objects.generation(cluster)
    message = failure_message(error)
    stored = objects.status(cluster).get("conditions")
    previous = {c.get("type"): c for c in stored if isinstance(c, dict)} if isinstance(stored, list) else {}
    kept = []
    for kind in (conditions.READY, conditions.PROGRESSING):
        try:
            kept.append(Condition.model_validate(previous[kind]))
        except (KeyError, ValueError):  # none yet, or one that is not a condition
            kept.append(conditions.make(kind, None, RECONCILE_ERROR, message, generation))
    degraded = conditions.make(conditions.DEGRADED, True, RECONCILE_ERROR, message, generation)
    new: dict[str, Any] = {
        **objects.status(cluster),
        "observedGeneration": generation,
        "conditions": [c.to_wire() for c in [*kept, degraded]],
    }
    return tuple(write_at(now, CLUSTERS, cluster, new))
