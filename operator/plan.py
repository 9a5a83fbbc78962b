"""PURE: decisions of the reconcile, from desired and observed state to actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import objects
from .manifests import auth, common
from .objects import Obj

FINALIZER = "serveplane.dev/serve-cleanup"


def pod_ready(pod: Obj) -> bool:
    found = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    return bool(found and found[0].get("status") == "True")


def live_head(pods: tuple[Obj, ...] | list[Obj], generation: str) -> Obj | None:
    """A generation's head pod, unless it is being deleted (a terminating head is no head to talk to)."""
    return next(
        (
            p for p in pods
            if common.is_head(p) and generation_of(p) == generation and not objects.is_deleting(p)
        ),
        None,
    )


def generation_of(pod: Obj) -> str:
    """The generation a pod belongs to; pods made before generations existed have none (the legacy one, "")."""
    return str((pod["metadata"].get("labels") or {}).get(common.GENERATION_LABEL, ""))


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


@dataclass(frozen=True)
class PodPlan:
    create: list[Obj] = field(default_factory=list)
    delete: dict[str, str] = field(default_factory=dict)
    """Pod name -> why it goes."""


def _token_digest(pod: Obj) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(auth.DIGEST_ANNOTATION)


def plan_pods(desired: list[Obj], observed: list[Obj]) -> PodPlan:
    """Pods to create and delete so that observed converges to desired.

    A pod whose spec changed is replaced in place, one at a time, and only while every other pod is ready:
    an upgrade never runs more pods than the spec asks for and never takes more than one away.

    A pod whose auth token (its digest annotation) is not the wanted one is replaced together with every other
    such pod, at once: Ray nodes with different tokens cannot talk, so a new worker could never join the old head.
    Nothing is created while a pod with the old token still exists (terminating ones included).
    """
    want = {objects.name(p): p for p in desired}
    wanted_digest = _token_digest(desired[0]) if desired else None
    have = {objects.name(p): p for p in observed}
    old_token = {name for name, pod in have.items() if _token_digest(pod) != wanted_digest}
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
        elif _finished(pod):
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


def submit_reason(
    *,
    config_hash: str,
    head_uid: str,
    applied: dict[str, Any],
    composed_apps: set[str],
    serve_apps: set[str] | None,
    rejected_hash: str | None,
) -> str | None:
    """Why the composed config must be PUT now, or None when Serve already runs it.

    The hash and head UID live on the ServeCluster's status, so a restarted operator resubmits nothing, while a
    new head (Serve's state is gone with the old one) gets the config again.
    """
    if serve_apps is None:
        return None
    if rejected_hash == config_hash:
        return None
    if applied.get("appliedConfigHash") != config_hash:
        return "ConfigChanged"
    if applied.get("appliedHeadUid") != head_uid:
        return "HeadReplaced"
    if not composed_apps <= serve_apps:
        return "ServeLostApplications"
    return None


def proxy_labels(pods: list[Obj], serve: dict[str, Any] | None) -> dict[str, dict[str, str | None]]:
    """Pod name -> the proxy labels to set on it (a None value removes one), only where they differ from now.

    A pod gets the proxy label (and the label naming its proxy's actor) when Serve reports its proxy HEALTHY, and
    loses it when the proxy is reported in any other state or not at all, except one: the very proxy actor that
    was healthy, reported STARTING, keeps its pod as it is. That is a restarted controller (a new head recovering
    it from the GCS) re-discovering a proxy that served all along; a new proxy actor (its node's Ray restarted)
    serves only once HEALTHY. A pod that is not Ready loses the labels at once, report or not: its proxy may be
    gone with its Ray (a crash restarts the container), and once Ready again it must not get traffic before Serve
    reports a proxy there. Otherwise, with no report from Serve, labels stay as they are. A report without proxies
    is no report either: Serve's controller is not running.
    """
    unlabelled: dict[str, str | None] = {common.PROXY_LABEL: None, common.PROXY_ACTOR_LABEL: None}
    reported = {p.get("node_ip"): p for p in serve["proxies"].values()} if serve and serve.get("proxies") else None
    changes: dict[str, dict[str, str | None]] = {}
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        labels = pod["metadata"].get("labels") or {}
        current = {key: labels.get(key) for key in (common.PROXY_LABEL, common.PROXY_ACTOR_LABEL)}
        if reported is None and pod_ready(pod):
            continue
        proxy = reported.get(ip) if reported is not None and ip and pod_ready(pod) else None
        state, actor = (proxy or {}).get("status"), (proxy or {}).get("actor_id")
        if state == "HEALTHY":
            wanted: dict[str, str | None] = {common.PROXY_LABEL: common.PROXY_HEALTHY, common.PROXY_ACTOR_LABEL: actor}
        elif state == "STARTING" and actor and actor == current[common.PROXY_ACTOR_LABEL]:
            wanted = current
        else:
            wanted = unlabelled
        if wanted != current:
            changes[objects.name(pod)] = wanted
    return changes


def withdrawn(pods: list[Obj]) -> dict[str, dict[str, str | None]]:
    """The proxy labels to remove so that these pods take no traffic, whatever their proxies report."""
    keys = (common.PROXY_LABEL, common.PROXY_ACTOR_LABEL)
    return {
        objects.name(pod): {key: None for key in keys}
        for pod in pods
        if any(key in (pod["metadata"].get("labels") or {}) for key in keys)
    }


def finalizers_to_set(app: Obj, serve_apps: set[str] | None) -> list[str] | None:
    """The finalizers an application should have now, or None when they are right as they are.

    A live application gets serveplane's finalizer; a deleted one loses it once Serve no longer lists it, so
    the resource goes only after its application has left Serve.
    """
    current = list(app["metadata"].get("finalizers") or [])
    if not objects.is_deleting(app):
        return None if FINALIZER in current else current + [FINALIZER]
    if FINALIZER in current and serve_apps is not None and objects.name(app) not in serve_apps:
        return [f for f in current if f != FINALIZER]
    return None


def covers(live: Any, wanted: Any) -> bool:
    """Whether the live object already holds every field of `wanted` with its value.

    Fields the server defaults or others set (a Service's clusterIP, a port's protocol, foreign labels) are
    not the operator's to compare; a list must match item by item, as server-side apply would make it.
    """
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(k in live and covers(live[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(covers, live, wanted))
    return bool(live == wanted)


def serve_app_names(serve: dict[str, Any] | None) -> set[str] | None:
    """The applications Serve reports (deleting ones included), or None when Serve could not be asked."""
    return None if serve is None else set(serve.get("applications") or {})
