"""PURE: one round of a cluster loop, from a Snapshot to the Plan of actions that moves it toward its goal.

A round for a live ServeCluster builds one frozen context (`stages.context.Round`) and runs the STAGES below in
this order; each stage is a pure function of the context that returns its actions, and the Plan is their
concatenation. The order is part of the meaning, and this is the one place it is written:

1. owned objects (Services, NetworkPolicy, the autoscaler's account, the Redis finalizer, the token Secret), so
   pods find what they refer to;
2. Ray pods: the active generation's in-place roll, an upgrade's new pods, retiring generations, a retired
   generation's Redis clean-up, then the proxy labels that route traffic;
3. the Ingress and the applications' finalizers;
4. Serve: the active head's submission (or adoption), then the pending head's. A stage that yields a `Submit`
   ENDS the round there: the statuses wait for the next round, which sees what Serve made of the new config;
5. an upgrade's old pods, only in a round that submitted nothing (both heads run their capacities);
6. statuses and the Events they tell of.

The executor performs the actions in this order and stops at the first that fails; the loop retries from a fresh
snapshot. Nothing here does I/O, reads the clock or the environment. A steady cluster plans no action at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from . import gcsft, objects
from .actions import Action, Plan, Submit
from .api.cluster import NAME_MAX_LENGTH, NAME_PATTERN, ServeClusterSpec
from .compose import validation_message
from .snapshot import Snapshot
from .stages import context, nocluster, owned, raypods, serving, statuses
from .stages.context import Round, Settings


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Round], list[Action]]


def _redis_finalizer(r: Round) -> list[Action]:
    return gcsft.finalizer(r.base.cluster, r.base.spec)


STAGES: tuple[Stage, ...] = (
    Stage("Services", owned.services),
    Stage("NetworkPolicy", owned.network_policy),
    Stage("autoscaler access", owned.autoscaler_access),
    Stage("Redis finalizer", _redis_finalizer),
    Stage("token Secret", owned.token),
    Stage("in-place pods", raypods.in_place),
    Stage("upgrade: new pods", raypods.upgrade_creates),
    Stage("retiring generations", raypods.retiring),
    Stage("retired Redis state", raypods.retired_redis),
    Stage("proxy labels", raypods.labels),
    Stage("Ingress", owned.ingress),
    Stage("application finalizers", serving.finalizers),
    Stage("submission to the active head", serving.submission_to_active),
    Stage("submission to the pending head", serving.submission_to_pending),
    Stage("upgrade: old pods", raypods.upgrade_deletes),
    Stage("cluster status", statuses.cluster),
    Stage("application statuses", statuses.applications),
    Stage("deployment statuses", statuses.deployments),
)


def plan_round(snap: Snapshot, settings: Settings) -> Plan:
    """The actions of one round for one cluster loop."""
    cluster = snap.cluster
    if cluster is None or objects.is_deleting(cluster):
        return nocluster.without_cluster(snap, settings.image)
    try:
        spec = ServeClusterSpec.model_validate(objects.spec(cluster))
    except ValidationError as error:
        return nocluster.invalid(cluster, validation_message(error), snap.now)
    refused = name_problem(objects.name(cluster))
    if refused is not None:
        return nocluster.invalid(cluster, refused, snap.now)
    r = context.build(context.base(snap, settings, cluster, spec))
    return run_stages(r, STAGES)


def name_problem(name: str) -> str | None:
    """Why a cluster admitted before the CRD's name rule cannot get the Services named after it, or None."""
    if len(name) > NAME_MAX_LENGTH:
        return f"metadata.name: at most {NAME_MAX_LENGTH} characters ({len(name)} given): the Services named " \
            "after the cluster must be DNS-1035 labels of 63; recreate the ServeCluster under a shorter name"
    if not re.fullmatch(NAME_PATTERN, name):
        return "metadata.name: a DNS-1035 label (lower-case letters, digits and '-', starting with a letter): the " \
            "Services named after the cluster must be; recreate the ServeCluster under such a name"
    return None


def run_stages(r: Round, stages: tuple[Stage, ...]) -> Plan:
    """The stages' actions in order, up to and including the first Submit."""
    actions: list[Action] = []
    for stage in stages:
        produced = stage.run(r)
        actions += produced
        if any(isinstance(a, Submit) for a in produced):
            return Plan(actions=tuple(actions), busy=True, config_hash=r.composition.config_hash)
    return Plan(actions=tuple(actions), busy=busy(r), config_hash=r.composition.config_hash)


def busy(r: Round) -> bool:
    """Whether to poll fast: a head recovers, an upgrade or a retirement is under way, pods or proxies start,
    Serve is unknown, deploys or fails, or an application is going."""
    view, composition = r.view, r.composition
    if r.recovery is not None or r.upgrade.step is not None or r.base.roles.retiring:
        return True
    if view.serve is None or view.ready_nodes < view.desired_nodes:
        return True
    if any(objects.is_deleting(a) for a in r.base.snap.apps) or any(
        v.waiting for v in composition.deployments.values()
    ):
        return True
    if any(p.status == "STARTING" for p in view.serve.proxies.values()):
        return True  # a proxy is about to join the serve Service
    return not view.serve.running(composition.app_names)
