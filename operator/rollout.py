"""PURE: the in-place roll of one generation's pods: which to create and which to delete so the pods converge
to the wanted ones, one at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import objects
from .manifests import common
from .objects import Obj
from .podfacts import finished, pod_ready, token_digest


@dataclass(frozen=True)
class PodPlan:
    create: list[Obj] = field(default_factory=list)
    delete: dict[str, str] = field(default_factory=dict)
    """Pod name -> why it goes."""


def plan_pods(desired: list[Obj], observed: list[Obj]) -> PodPlan:
    """Pods to create and delete so that observed converges to desired.

    A pod whose spec changed is replaced in place, one at a time, and only while every other pod is ready:
    an upgrade never runs more pods than the spec asks for and never takes more than one away.

    A pod whose auth token (its digest annotation) is not the wanted one is replaced together with every other
    such pod, at once: Ray nodes with different tokens cannot talk, so a new worker could never join the old head.
    Nothing is created while a pod with the old token still exists (terminating ones included).
    """
    want = {objects.name(p): p for p in desired}
    wanted_digest = token_digest(desired[0]) if desired else None
    have = {objects.name(p): p for p in observed}
    old_token = {name for name, pod in have.items() if token_digest(pod) != wanted_digest}
    if old_token:
        rotate = {
            name: "the Ray auth token changed: every Ray pod is replaced at once (the Ray cluster restarts)"
            for name in sorted(old_token)
            if not objects.is_deleting(have[name])
        }
        return PodPlan(delete=rotate)
    create = [pod for name, pod in want.items() if name not in have]
    delete: dict[str, str] = {}
    for name, pod in have.items():
        if objects.is_deleting(pod):
            continue
        if name not in want:
            delete[name] = "no longer in the spec"
        elif finished(pod):
            delete[name] = f"pod ended ({pod['status']['phase']}); it is recreated"
    settled = not create and not delete and all(pod_ready(p) and not objects.is_deleting(p) for p in have.values())
    if settled:
        stale = [
            name
            for name, pod in sorted(have.items())
            if (pod["metadata"].get("annotations") or {}).get(common.POD_HASH_ANNOTATION)
            != want[name]["metadata"]["annotations"][common.POD_HASH_ANNOTATION]
        ]
        # Workers first: the head goes last, since replacing it restarts Serve's state on the new head.
        stale.sort(key=lambda n: have[n]["metadata"]["labels"].get(common.NODE_TYPE_LABEL) == "head")
        if stale:
            delete[stale[0]] = "its spec changed; replacing it (one pod at a time)"
    return PodPlan(create=create, delete=delete)
