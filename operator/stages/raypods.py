"""PURE: the stages of a round that move the Ray pods: the active generation's in-place roll, an upgrade's new and
old pods, retiring generations, a retired generation's Redis clean-up, and the proxy labels that route traffic."""

from __future__ import annotations

from .. import autoscaling, gcsft, podfacts, proxies, rollout
from ..actions import Action, CreatePod, DeletePod, LabelPod
from .context import Round
from .upgrading import retire


def in_place(r: Round) -> list[Action]:
    """The active generation's pods converge to the spec in place, while no upgrade is under way. No Ray pod
    starts without its token."""
    b = r.base
    if b.roles.pending is not None or b.token.wait:
        return []
    todo = rollout.plan_pods(r.desired, r.active_pods)
    actions: list[Action] = [CreatePod(pod) for pod in todo.create]
    actions += [
        DeletePod(pod_name, autoscaling.why_deleted(pod_name, b.chosen, why)) for pod_name, why in todo.delete.items()
    ]
    return actions


def upgrade_creates(r: Round) -> list[Action]:
    step = r.upgrade.step
    return [CreatePod(pod) for pod in step.create] if step is not None and not r.base.token.wait else []


def retiring(r: Round) -> list[Action]:
    return retire(r.base)


def retired_redis(r: Round) -> list[Action]:
    b = r.base
    return gcsft.retired_cleanup(b.cluster, b.spec, b.snap.pods, r.live_generations, b.image)


def labels(r: Round) -> list[Action]:
    """Proxy labels: the active generation's from its Serve, the pending one's from its own once it may take
    traffic, none on retiring generations (and on a pending one that may not)."""
    b, view = r.base, r.upgrade
    changes = proxies.proxy_labels(r.active_pods, r.serve)
    if view.step is not None and b.roles.pending is not None:
        if view.step.release:
            changes.update(proxies.proxy_labels(view.pending_pods, b.snap.reports.get(b.roles.pending)))
        else:
            changes.update(proxies.withdrawn(view.pending_pods))
    changes.update(proxies.withdrawn([p for p in b.snap.pods if podfacts.generation_of(p) in b.roles.retiring]))
    return [LabelPod(pod_name, new) for pod_name, new in changes.items()]


def upgrade_deletes(r: Round) -> list[Action]:
    """Only once both heads run their capacities (no submission this round): the pod that goes hands its traffic
    to replicas already there."""
    step = r.upgrade.step
    if step is None or r.base.token.wait:
        return []
    return [DeletePod(pod_name, why) for pod_name, why in step.delete.items()]
