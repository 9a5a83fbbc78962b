"""PURE: the last stage of a round: every status (the cluster's, its applications' and deployments'), written only
where it changes, and the Events a changed status tells of (an upgrade's steps, a worker group scaled)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .. import autoscaling, gcsft, objects, status
from ..actions import Action, PostEvent, WriteStatus
from ..api.application import ServeApplicationStatus
from ..api.base import StatusModel
from ..api.cluster import ServeClusterStatus
from ..api.deployment import ServeDeploymentStatus
from ..api.kinds import APPS, CLUSTERS, DEPLOYMENTS
from ..manifests import common, pods
from ..objects import Obj
from . import upgrading
from .context import Base, Round

STATUS_MODELS: dict[str, type[StatusModel]] = {
    CLUSTERS: ServeClusterStatus,
    APPS: ServeApplicationStatus,
    DEPLOYMENTS: ServeDeploymentStatus,
}


def write(b: Base, kind: str, obj: Obj, new: dict[str, Any]) -> list[Action]:
    """A WriteStatus of the merge patch from the object's status to `new`, or nothing when they match."""
    return write_at(b.now, kind, obj, new)


def write_at(now: datetime, kind: str, obj: Obj, new: dict[str, Any]) -> list[Action]:
    patch = status.status_patch(STATUS_MODELS[kind], objects.status(obj), new, now)
    return [] if patch is None else [WriteStatus(kind, objects.name(obj), patch)]


def _ready_by_group(r: Round) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in r.ready_pods:
        group = (pod["metadata"].get("labels") or {}).get(common.GROUP_LABEL)
        if group:
            counts[group] = counts.get(group, 0) + 1
    return counts


def cluster_wire(r: Round) -> dict[str, Any]:
    """The ServeCluster's whole status as this round sees it."""
    b, step = r.base, r.upgrade.step
    resources = {}
    if b.spec.autoscaling.enabled:
        resources = pods.group_resources(
            cluster=b.name, namespace=b.namespace, uid=b.uid, spec=b.spec, image=b.image, generation=b.roles.active
        )
    under_way = step is not None and not step.promote
    parts = status.ClusterParts(
        generations=upgrading.generation_status(b, r.upgrade),
        worker_groups=autoscaling.group_status(b.spec, b.requested, _ready_by_group(r), resources),
        autoscaler=b.autoscaler_record,
        redis_namespaces=gcsft.namespaces_record(b.cluster, b.spec, b.snap.pods, r.live_generations),
        upgrade_step=step.step if step is not None and under_way else None,
        upgrade_failure=step.failure if step is not None and under_way else None,
    )
    return status.whole_cluster_status(r.view, r.composition, r.applied, parts)


def cluster(r: Round) -> list[Action]:
    b = r.base
    wire = cluster_wire(r)
    actions = write(b, CLUSTERS, b.cluster, wire)
    actions += upgrading.events(b.stored.upgrade, wire)
    decision = b.stored.autoscaler.last_decision if b.stored.autoscaler else None
    before = [g.to_wire() for g in b.stored.worker_groups]
    scaled = autoscaling.scale_events(before, wire["workerGroups"], decision)
    actions += [PostEvent("Normal", reason, message) for reason, message in scaled]
    return actions


def applications(r: Round) -> list[Action]:
    actions: list[Action] = []
    for app in r.base.snap.apps:
        if not objects.is_deleting(app):
            verdict = r.composition.applications.get(objects.name(app))
            actions += write(r.base, APPS, app, status.application_status(app, verdict, r.view))
    return actions


def deployments(r: Round) -> list[Action]:
    actions: list[Action] = []
    for sdep in r.base.snap.deployments:
        serve_app = r.view.serve_app(objects.spec(sdep).get("application", ""))
        verdict = r.composition.deployments.get(objects.name(sdep))
        actions += write(r.base, DEPLOYMENTS, sdep, status.deployment_status(sdep, verdict, serve_app))
    return actions
