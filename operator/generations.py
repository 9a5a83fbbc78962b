"""PURE: the generations of a ServeCluster's Ray cluster and the steps of an upgrade from one to the next.

A generation is a head and its workers that run what every node of a Ray cluster must run identically (the image,
the head's spec, GCS settings): a change there cannot be made to a running Ray cluster, so it makes a new
generation, named by a hash of that part of the spec (every pod carries the name in GENERATION_LABEL). A cluster
runs its active generation and, during an upgrade, a pending one; any other generation with pods is retiring.
Everything here follows from the pods and the ServeCluster's status, so a restarted operator (or a new leader)
resumes an upgrade where it was, and a reverted spec finds its generation still active.

Traffic reaches a generation's pods only once every application is RUNNING on its Serve (the proxy labels the
serve Service selects). Each generation gets Serve's target_capacity from its share of the Service's endpoints:
kube-proxy spreads connections evenly over them, so a generation's share of the endpoints is its share of the
requests, and its replicas follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import objects
from .api.cluster import UpgradeStrategySpec, UpgradeType
from .manifests import common
from .objects import Obj
from .podfacts import generation_of, pod_ready
from .servereport import ServeReport

LEGACY = ""
"""The generation of pods made before generations existed (no label): upgraded away like any other."""


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from the wire."""
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None


def ready_since(pod: Obj) -> datetime | None:
    """When the pod last became Ready, or None while it is not."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return parse_time(cond.get("lastTransitionTime"))
    return None


def serving(pod: Obj) -> bool:
    """In the serve Service's ready endpoints: Ready, not going, and labelled by a healthy Serve proxy."""
    labels = pod["metadata"].get("labels") or {}
    return pod_ready(pod) and not objects.is_deleting(pod) and labels.get(common.PROXY_LABEL) == common.PROXY_HEALTHY


@dataclass(frozen=True)
class Roles:
    active: str
    pending: str | None
    """The spec's generation while it is not the active one: an upgrade is under way."""
    retiring: tuple[str, ...]
    """Generations with pods that are neither: superseded pending generations, and the old one after a switch."""


def roles(*, target: str, stored_active: str | None, pods: list[Obj]) -> Roles:
    """Which generation is which. The active one is the one the status names while it still has pods (a new
    cluster's, or one whose pods all went, is the spec's); pods without the label are the legacy generation."""
    present = sorted({generation_of(p) for p in pods})
    if stored_active is None:
        active = LEGACY if LEGACY in present else target
    elif stored_active in present or stored_active == target:
        active = stored_active
    else:
        active = target
    pending = target if target != active else None
    return Roles(active, pending, tuple(g for g in present if g not in (active, pending)))


@dataclass(frozen=True)
class Step:
    """What an upgrade does this round."""

    create: list[Obj] = field(default_factory=list)
    delete: dict[str, str] = field(default_factory=dict)
    """Pod name -> why it goes."""
    promote: bool = False
    """The pending generation becomes the active one: traffic is on it and it has every pod."""
    release: bool = False
    """The pending generation's pods may take traffic (their proxy labels follow Serve's report)."""
    capacity: dict[str, float | None] = field(default_factory=dict)
    """Generation -> Serve target_capacity in percent (None: 100, no field)."""
    step: str = ""
    failure: str | None = None


@dataclass(frozen=True)
class Generation:
    """One generation as an upgrade step sees it."""

    pods: list[Obj]
    report: ServeReport | None
    """Its Serve's report (None: not asked, or no answer)."""
    applied: bool
    """Its head accepted the config this generation should run (capacity aside)."""

    @property
    def live(self) -> list[Obj]:
        return [p for p in self.pods if not objects.is_deleting(p)]

    @property
    def serving(self) -> int:
        return sum(1 for p in self.pods if serving(p))

    def running(self, apps: set[str]) -> bool:
        """Every composed application RUNNING on this generation's Serve."""
        return self.applied and self.report is not None and self.report.running(apps)

    def failed(self, apps: set[str]) -> str | None:
        for name in sorted(apps):
            app = self.report.app(name) if self.report else None
            if self.applied and app is not None and app.status == "DEPLOY_FAILED":
                return f"application {name} failed to deploy on the new generation: {app.message}"
        return None


def _share(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2)


def capacities(active: Generation, pending: Generation, released: bool) -> dict[str, float | None]:
    """Each generation's target_capacity from its share of the serving endpoints. Before the pending generation
    serves, it is given the share its head's proxy will have once it joins, so its replicas are there first."""
    a, p = active.serving, pending.serving
    if not released or p == 0:
        return {"active": None, "pending": _share(1, a + 1)}
    if a == 0:
        return {"active": None, "pending": None}
    return {"active": _share(a, a + p), "pending": _share(p, a + p)}


def _progress_since(pods: list[Obj]) -> datetime | None:
    stamps = [(parse_time(p["metadata"].get("creationTimestamp")), ready_since(p)) for p in pods]
    times = [t for pair in stamps for t in pair if t]
    return max(times) if times else None


def _removal_order(pods: list[Obj]) -> list[Obj]:
    """Workers before the head (Serve's controller lives there), then by name."""
    live = [p for p in pods if not objects.is_deleting(p)]
    return sorted(live, key=lambda p: (common.is_head(p), objects.name(p)))


def upgrade_step(
    *,
    strategy: UpgradeStrategySpec,
    desired: list[Obj],
    active: Generation,
    pending: Generation,
    all_pods: int,
    apps: set[str],
    failure: str | None,
    since_step: datetime | None,
    now: datetime,
    labels_settled: bool = True,
) -> Step:
    """The next step of the upgrade to the pending generation, whose wanted pods are `desired` (head first).

    `all_pods` counts every Ray pod of the cluster, terminating ones included: the surge bound holds for pods
    that still hold a node's resources. `failure` is a failure recorded earlier: it holds until the spec changes.
    `since_step`: when the upgrade started or last took a new step.
    `labels_settled`: the pending generation's proxy labels already say what its Serve reports (no pod of it is
    about to join the serve Service), so the traffic shares are what the endpoints will be.
    """
    if strategy.type is UpgradeType.RECREATE:
        gone = {objects.name(p): "Recreate: the old generation goes before the new one starts"
                for p in active.live}
        return Step(delete=gone, step=f"Removing the old generation ({len(active.pods)} pods left)")
    failure = failure or pending.failed(apps)
    step = None if failure else _next_step(strategy, desired, active, pending, all_pods, apps, labels_settled)
    if step is not None and (step.create or step.delete or step.promote):
        return step  # a step taken is progress
    failure = failure or _timed_out(strategy, active, pending, since_step, now, apps)
    if failure or step is None:
        return Step(step="Failed: traffic stays on the active generation", failure=failure,
                    capacity={"active": None, "pending": pending_capacity_kept(pending)})
    return step


def _next_step(
    strategy: UpgradeStrategySpec,
    desired: list[Obj],
    active: Generation,
    pending: Generation,
    all_pods: int,
    apps: set[str],
    labels_settled: bool,
) -> Step:
    have = {objects.name(p) for p in pending.pods}
    missing = [p for p in desired if objects.name(p) not in have]
    steady = all(pod_ready(p) for p in pending.pods) and len(pending.live) == len(pending.pods)
    complete = not missing and steady and bool(pending.pods)
    running = pending.running(apps)
    if strategy.type is UpgradeType.BLUE_GREEN:
        released = complete and running
        if released and pending.serving:
            return Step(promote=True, release=True, step="Switching traffic to the new generation")
        step = (f"Starting the new generation ({sum(map(pod_ready, pending.pods))}/{len(desired)} pods ready)"
                if not complete else "Waiting for every application to run on the new generation")
        return Step(create=missing, release=released, step=step, capacity={"active": None, "pending": None})
    released = pending.serving > 0 or (steady and running)
    shares = capacities(active, pending, released)
    if complete and released and running and pending.serving:
        return Step(promote=True, release=True, step="The new generation has every pod", capacity=shares)
    room = all_pods < len(desired) + strategy.max_surge_pods
    if missing and room and steady:
        name = objects.name(missing[0])
        return Step(create=[missing[0]], release=released, capacity=shares,
                    step=f"Starting pod {name} of the new generation ({len(pending.live)}/{len(desired)})")
    # The new generation already takes traffic (its labels are seen), so the one that goes hands over to it.
    converged = pending.serving > 0 and labels_settled and steady and running and active.running(apps)
    if missing and not room and converged and len(active.live) == len(active.pods):
        victim = _removal_order(active.pods)[0]
        why = "Incremental upgrade: an old-generation pod makes room for the next new one"
        return Step(delete={objects.name(victim): why}, release=True, capacity=shares,
                    step=f"Moving pod {objects.name(victim)} to the new generation")
    draining = [objects.name(p) for p in active.pods if objects.is_deleting(p)]
    if draining:
        step = f"Waiting for pod {draining[0]} to drain and go"
    elif not released:
        step = "Waiting for every application to run on the new generation"
    else:
        step = "Waiting for the generations' replicas to follow the traffic"
    return Step(release=released, capacity=shares, step=step)


def pending_capacity_kept(pending: Generation) -> float | None:
    """A failed generation's capacity is left as it was: changing it would only redeploy what failed."""
    return None if pending.report is None else pending.report.target_capacity


def _timed_out(
    strategy: UpgradeStrategySpec,
    active: Generation,
    pending: Generation,
    since_step: datetime | None,
    now: datetime,
    apps: set[str],
) -> str | None:
    """The new generation made no progress (a pod created or becoming Ready, a new step) for timeoutSeconds.
    Never while a pod is terminating: the upgrade then waits for an old pod's drain, not for the new generation."""
    if any(objects.is_deleting(p) for p in active.pods + pending.pods):
        return None
    since = max([t for t in (_progress_since(pending.pods), since_step) if t], default=None)
    if since is None or (now - since).total_seconds() < strategy.timeout_seconds:
        return None
    waiting = [objects.name(p) for p in pending.pods if not pod_ready(p)]
    what = f"pods {', '.join(waiting)} not Ready" if waiting else "its applications not all RUNNING"
    return f"the new generation made no progress for {strategy.timeout_seconds}s: {what}"


def retire(pods: list[Obj], *, keep_until: datetime | None, now: datetime) -> dict[str, str]:
    """A retiring generation's pods go at once, or after BlueGreen's delay for requests in flight."""
    if keep_until is not None and now < keep_until:
        return {}
    return {objects.name(p): "its generation was replaced" for p in pods if not objects.is_deleting(p)}
