"""PURE: the decisions GCS fault tolerance adds to a round: whether Serve came back on a new head by itself, and the
steps that remove a deleted cluster's state from Redis.

With the GCS's state in Redis, a new head pod resumes the same Ray cluster: the workers reconnect, and Serve's
controller (a detached actor) restarts on the new head and recovers its applications. Resubmitting the config
then would only redeploy what runs, so the operator waits for Serve to come back, and resubmits only when it does
not within SERVE_RECOVERY_S of the head being ready.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import ValidationError

from . import generations, objects
from .actions import Action, CreatePod, DeletePod, SetFinalizers
from .api.cluster import ServeClusterSpec
from .api.kinds import CLUSTERS
from .manifests import cleanup, rayenv
from .manifests import pods as pods_manifests
from .objects import Obj
from .servereport import ServeReport

REDIS_FINALIZER = "serveplane.dev/redis-cleanup"
SERVE_RECOVERY_S = 90.0
"""How long after a new head is ready Serve gets to come back from the GCS before the config is submitted again."""


class HeadChange(str, Enum):
    ADOPT = "adopt"
    """Serve runs every composed application on the new head: it recovered; record the head, PUT nothing."""
    WAIT = "wait"
    """Serve's controller may still be coming back: neither adopt nor resubmit yet."""


def head_change(
    *,
    spec: ServeClusterSpec,
    head: Obj,
    applied: dict[str, Any],
    config_hash: str,
    composed_apps: set[str],
    serve: ServeReport | None,
    now: datetime,
) -> HeadChange | None:
    """Under GCS fault tolerance, after the head restarted (a new pod, or the same pod's Ray crashed) while running
    the applied config: adopt a new head once Serve runs every application again, and wait while Serve may still
    be coming back. None when this rule does not apply (no fault tolerance, a changed config, nothing applied yet,
    a steady head, or Serve not back in time): the usual submit rule decides."""
    if spec.gcs_fault_tolerance is None or serve is None:
        return None
    if applied.get("appliedHeadUid") is None or applied.get("appliedConfigHash") != config_hash:
        return None
    if composed_apps <= set(serve.applications):
        return HeadChange.ADOPT if applied.get("appliedHeadUid") != objects.uid(head) else None
    since = generations.ready_since(head)
    if since is None or (now - since).total_seconds() < SERVE_RECOVERY_S:
        return HeadChange.WAIT
    return None


def _finalizers(cluster: Obj) -> tuple[str, ...]:
    return tuple(cluster["metadata"].get("finalizers") or ())


def _set(cluster: Obj, finalizers: tuple[str, ...]) -> SetFinalizers:
    return SetFinalizers(CLUSTERS, objects.name(cluster), finalizers, cluster["metadata"]["resourceVersion"])


def finalizer(cluster: Obj, spec: ServeClusterSpec) -> list[Action]:
    """A cluster with fault tolerance keeps its Redis state until its deletion removed it; without, no finalizer
    (turning fault tolerance off forgets where the state was: its keys stay in Redis)."""
    current = _finalizers(cluster)
    if spec.gcs_fault_tolerance is not None and REDIS_FINALIZER not in current:
        return [_set(cluster, (*current, REDIS_FINALIZER))]
    if spec.gcs_fault_tolerance is None and REDIS_FINALIZER in current:
        return [_set(cluster, tuple(f for f in current if f != REDIS_FINALIZER))]
    return []


def recorded_namespaces(cluster: Obj) -> set[str]:
    """The Redis namespaces the cluster's generations may have left state in, as its status records them."""
    return set(objects.status(cluster).get("redisNamespaces") or [])


def namespaces_in_use(spec: ServeClusterSpec, uid: str, generations_live: set[str]) -> set[str]:
    ft = spec.gcs_fault_tolerance
    return set() if ft is None else {rayenv.storage_namespace(ft, uid, g) for g in generations_live}


def _job(pods: tuple[Obj, ...] | list[Obj]) -> Obj | None:
    return next((p for p in pods if cleanup.is_cleanup_pod(p)), None)


def _succeeded(job: Obj | None) -> bool:
    return job is not None and (job.get("status") or {}).get("phase") == "Succeeded"


def namespaces_record(
    cluster: Obj, spec: ServeClusterSpec, pods: tuple[Obj, ...], generations_live: set[str]
) -> list[str]:
    """The status's record of Redis namespaces: every live generation's, plus retired ones until a clean-up
    removed their keys. Without fault tolerance, nothing (turning it off forgets where the state was)."""
    if spec.gcs_fault_tolerance is None:
        return []
    job = _job(pods)
    cleaned = cleanup.cleaned_namespaces(job) if job is not None and _succeeded(job) else set()
    kept = recorded_namespaces(cluster) | namespaces_in_use(spec, objects.uid(cluster), generations_live)
    return sorted(kept - cleaned)


def retired_cleanup(
    cluster: Obj, spec: ServeClusterSpec, pods: tuple[Obj, ...], generations_live: set[str], image: str
) -> list[Action]:
    """A retired generation's GCS state leaves Redis once its pods are gone: a clean-up pod for every recorded
    namespace no live generation uses, removed once it succeeded."""
    ft = spec.gcs_fault_tolerance
    if ft is None:
        return []
    job = _job(pods)
    if job is not None:
        if _succeeded(job) and not objects.is_deleting(job):
            return [DeletePod(objects.name(job), "the Redis clean-up succeeded")]
        return []
    stale = recorded_namespaces(cluster) - namespaces_in_use(spec, objects.uid(cluster), generations_live)
    if not stale:
        return []
    pod = cleanup.redis_cleanup_pod(
        cluster=objects.name(cluster), namespace=objects.namespace(cluster), uid=objects.uid(cluster), ft=ft,
        image=spec.image or image, namespaces=sorted(stale),
    )
    return [CreatePod(pod)]


def redis_cleanup(cluster: Obj, pods: tuple[Obj, ...], image: str) -> list[Action]:
    """The next steps of a deleted cluster's Redis clean-up: its Ray pods go first (a live head writes its keys
    again), then a clean-up pod runs for every namespace its generations used, and once it succeeded the pod goes
    and the finalizer is released."""
    if REDIS_FINALIZER not in _finalizers(cluster):
        return []
    release = _set(cluster, tuple(f for f in _finalizers(cluster) if f != REDIS_FINALIZER))
    ray_pods = [p for p in pods if not cleanup.is_cleanup_pod(p)]
    if ray_pods:
        why = "the ServeCluster is being deleted; its Redis state goes once every Ray pod is gone"
        return [DeletePod(objects.name(p), why) for p in ray_pods if not objects.is_deleting(p)]
    try:
        spec = ServeClusterSpec.model_validate(objects.spec(cluster))
    except ValidationError:
        return [release]  # nothing says where the state is
    ft = spec.gcs_fault_tolerance
    if ft is None:
        return [release]
    name, namespace, uid = objects.name(cluster), objects.namespace(cluster), objects.uid(cluster)
    current = pods_manifests.generation_name(cluster=name, namespace=namespace, uid=uid, spec=spec, image=image)
    wanted = recorded_namespaces(cluster) | namespaces_in_use(spec, uid, {current, ""})
    job = _job(pods)
    if job is None:
        pod = cleanup.redis_cleanup_pod(
            cluster=name, namespace=namespace, uid=uid, ft=ft, image=spec.image or image, namespaces=sorted(wanted)
        )
        return [CreatePod(pod)]
    if not _succeeded(job):
        return []
    actions: list[Action] = [] if objects.is_deleting(job) else [DeletePod(objects.name(job), "its clean-up is done")]
    # A retired generation's clean-up may have finished just before: the cluster's own runs next.
    return actions + [release] if wanted <= cleanup.cleaned_namespaces(job) else actions
