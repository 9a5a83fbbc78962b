"""PURE: one round of a cluster loop, from a Snapshot to the Plan of actions that moves it toward its goal.

Every decision of the reconcile is made here or in `plan` (the single decisions it combines); nothing here
does I/O, reads the clock or the environment. A steady cluster plans no action at all.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from . import conditions, gcsft, objects, plan, status
from .actions import (
    Action,
    AdoptHead,
    Apply,
    CreatePod,
    CreateSecret,
    DeleteOwned,
    DeletePod,
    LabelPod,
    Plan,
    SetFinalizers,
    Submit,
    WriteStatus,
)
from .api.application import ServeApplicationStatus
from .api.base import StatusModel
from .api.cluster import AuthMode, ServeClusterSpec, ServeClusterStatus
from .api.deployment import ServeDeploymentStatus
from .api.kinds import APPS, CLUSTERS, DEPLOYMENTS, INGRESSES, NETWORKPOLICIES, SECRETS, SERVICES
from .compose import Composition, compose, serve_view, validation_message
from .manifests import auth, cleanup, common, netpol, network, pods
from .objects import Obj
from .snapshot import Snapshot

STATUS_MODELS: dict[str, type[StatusModel]] = {
    CLUSTERS: ServeClusterStatus,
    APPS: ServeApplicationStatus,
    DEPLOYMENTS: ServeDeploymentStatus,
}


def _status(snap: Snapshot, kind: str, obj: Obj, new: dict[str, Any]) -> list[Action]:
    patch = status.status_patch(STATUS_MODELS[kind], objects.status(obj), new, snap.now)
    return [] if patch is None else [WriteStatus(kind, objects.name(obj), patch)]


def plan_round(snap: Snapshot, *, image: str, access: netpol.Access | None = None) -> Plan:
    """The actions of one round for one cluster loop; `access`: who the NetworkPolicy lets in besides the
    cluster's own pods (the operator's settings)."""
    cluster = snap.cluster
    if cluster is None or objects.is_deleting(cluster):
        return _without_cluster(snap, image)
    try:
        spec = ServeClusterSpec.model_validate(objects.spec(cluster))
    except ValidationError as error:
        return Plan(actions=tuple(_status(snap, CLUSTERS, cluster, _invalid(cluster, validation_message(error)))))
    return _with_cluster(snap, cluster, spec, image, access or netpol.Access())


def _without_cluster(snap: Snapshot, image: str) -> Plan:
    """No ServeCluster (or one being deleted): say so on its applications and deployments, and let deleted
    applications go, since Serve went with the cluster; a deleted cluster's Redis state goes too."""
    actions: list[Action] = gcsft.redis_cleanup(snap.cluster, snap.pods, image) if snap.cluster else []
    for app in snap.apps:
        if objects.is_deleting(app):
            current = tuple(app["metadata"].get("finalizers") or ())
            if plan.FINALIZER in current:
                kept = tuple(f for f in current if f != plan.FINALIZER)
                actions.append(SetFinalizers(APPS, objects.name(app), kept, app["metadata"]["resourceVersion"]))
        else:
            actions += _status(snap, APPS, app, status.application_status(app, None, None, cluster_missing=True))
    for sdep in snap.deployments:
        actions += _status(snap, DEPLOYMENTS, sdep, status.deployment_status(sdep, None, None))
    return Plan(actions=tuple(actions), done=True)


def _invalid(cluster: Obj, message: str) -> dict[str, Any]:
    generation = objects.generation(cluster)
    conds = conditions.triple(
        generation,
        ready=(False, "InvalidSpec", message),
        progressing=(False, "InvalidSpec", message),
        degraded=(True, "InvalidSpec", message),
    )
    return {**objects.status(cluster), "observedGeneration": generation, "conditions": [c.to_wire() for c in conds]}


def _owned(snap: Snapshot, kind: str, wanted: Obj, live: dict[str, Obj]) -> list[Action]:
    return [] if plan.covers(live.get(objects.name(wanted)), wanted) else [Apply(kind, wanted)]


def _token(snap: Snapshot, spec: ServeClusterSpec, uid: str) -> tuple[list[Action], str | None, bool]:
    """The token Secret's actions, the digest the Ray pods must carry, and whether pods wait for the Secret."""
    secret = snap.token_secret
    if spec.auth.mode is not AuthMode.TOKEN:
        return ([DeleteOwned(SECRETS, secret.name)] if secret else []), None, False
    if secret is None:
        return [CreateSecret(auth.token_secret(cluster=snap.name, namespace=snap.namespace, uid=uid))], None, True
    if secret.digest is None:
        # Someone emptied it: it goes, and the next round makes a new one (a rotation).
        return [DeleteOwned(SECRETS, secret.name)], None, True
    return [], secret.digest, False


def _network_policy(snap: Snapshot, spec: ServeClusterSpec, uid: str, access: netpol.Access) -> list[Action]:
    if spec.network_policy.enabled:
        wanted = netpol.network_policy(cluster=snap.name, namespace=snap.namespace, uid=uid, spec=spec, access=access)
        return _owned(snap, NETWORKPOLICIES, wanted, snap.network_policies)
    name = common.network_policy_name(snap.name)
    return [DeleteOwned(NETWORKPOLICIES, name)] if name in snap.network_policies else []


def _with_cluster(snap: Snapshot, cluster: Obj, spec: ServeClusterSpec, image: str, access: netpol.Access) -> Plan:
    name, namespace, uid = snap.name, snap.namespace, objects.uid(cluster)
    actions: list[Action] = []
    actions += _owned(snap, SERVICES, network.head_service(cluster=name, namespace=namespace, uid=uid), snap.services)
    serve_svc = network.serve_service(cluster=name, namespace=namespace, uid=uid, spec=spec)
    actions += _owned(snap, SERVICES, serve_svc, snap.services)
    actions += _network_policy(snap, spec, uid, access)
    actions += gcsft.finalizer(cluster, spec)
    token_actions, digest, wait_for_token = _token(snap, spec, uid)
    actions += token_actions

    desired = [pods.head_pod(cluster=name, namespace=namespace, uid=uid, spec=spec, image=image)]
    desired += pods.worker_pods(cluster=name, namespace=namespace, uid=uid, spec=spec, image=image)
    if digest is not None:
        for pod in desired:
            pod["metadata"].setdefault("annotations", {})[auth.DIGEST_ANNOTATION] = digest
    if not wait_for_token:  # no Ray pod starts without its token
        todo = plan.plan_pods(desired, [p for p in snap.pods if not cleanup.is_cleanup_pod(p)])
        actions += [CreatePod(pod) for pod in todo.create]
        actions += [DeletePod(pod_name, why) for pod_name, why in todo.delete.items()]

    head = plan.live_head(snap.pods, name)
    head_ip = ((head or {}).get("status") or {}).get("podIP")
    serve = snap.serve if head_ip else None
    composition = compose(spec, list(snap.apps), list(snap.deployments), serve_view(serve, list(snap.apps)))

    actions += [
        LabelPod(pod_name, labels) for pod_name, labels in plan.proxy_labels(list(snap.pods), serve).items()
    ]
    routes = [app["route_prefix"] for app in composition.config["applications"]]
    ingress = network.ingress(cluster=name, namespace=namespace, uid=uid, spec=spec, routes=routes)
    if ingress is not None:
        actions += _owned(snap, INGRESSES, ingress, snap.ingresses)
    elif common.serve_service_name(name) in snap.ingresses:
        actions.append(DeleteOwned(INGRESSES, common.serve_service_name(name)))
    serve_apps = plan.serve_app_names(serve)
    for app in snap.apps:
        wanted = plan.finalizers_to_set(app, serve_apps)
        if wanted is not None:
            actions.append(SetFinalizers(APPS, objects.name(app), tuple(wanted), app["metadata"]["resourceVersion"]))

    applied = {k: objects.status(cluster).get(k) for k in ("appliedConfigHash", "appliedHeadUid", "lastHeadRecovery")}
    rejected = snap.rejection.config_hash if snap.rejection else None
    reason, recovery = None, None
    if head is not None and head_ip:
        recovery = gcsft.head_change(
            spec=spec, head=head, applied=applied, config_hash=composition.config_hash,
            composed_apps=set(composition.app_names), serve=serve, now=snap.now,
        )
    if recovery is gcsft.HeadChange.ADOPT and head is not None:
        actions.append(AdoptHead(objects.uid(head)))
    elif recovery is None and head is not None and head_ip:
        reason = plan.submit_reason(
            config_hash=composition.config_hash,
            head_uid=objects.uid(head),
            applied=applied,
            composed_apps=set(composition.app_names),
            serve_apps=serve_apps,
            rejected_hash=rejected,
        )
    if reason is not None and head is not None and head_ip:
        # The statuses wait for the next round, which sees what Serve made of the new config.
        actions.append(Submit(composition.config, composition.config_hash, reason, str(head_ip), objects.uid(head)))
        return Plan(actions=tuple(actions), busy=True, config_hash=composition.config_hash)

    ready_pods = [p for p in snap.pods if plan.pod_ready(p) and not objects.is_deleting(p)]
    view = status.ClusterView(
        name=name,
        namespace=namespace,
        generation=objects.generation(cluster),
        desired_nodes=len(desired),
        ready_nodes=len(ready_pods),
        head_pod=objects.name(head) if head else None,
        head_ready=bool(head and plan.pod_ready(head)),
        serve=serve,
        serve_error=snap.serve_error if head_ip else "the head pod has no IP yet",
        rejected=snap.rejection.message if snap.rejection and rejected == composition.config_hash else None,
        http_port=spec.serve.http_port,
    )
    actions += _status(snap, CLUSTERS, cluster, status.cluster_status(view, composition, applied))
    for app in snap.apps:
        if not objects.is_deleting(app):
            verdict = composition.applications.get(objects.name(app))
            actions += _status(snap, APPS, app, status.application_status(app, verdict, view))
    for sdep in snap.deployments:
        serve_app = view.serve_app(objects.spec(sdep).get("application", ""))
        verdict = composition.deployments.get(objects.name(sdep))
        actions += _status(snap, DEPLOYMENTS, sdep, status.deployment_status(sdep, verdict, serve_app))
    busy = recovery is not None or _busy(view, composition, snap.apps)
    return Plan(actions=tuple(actions), busy=busy, config_hash=composition.config_hash)


def _busy(view: status.ClusterView, composition: Composition, apps: tuple[Obj, ...]) -> bool:
    """Whether to poll fast: pods or proxies start, Serve is unknown, deploys or fails, or an application is
    going."""
    if view.serve is None or view.ready_nodes < view.desired_nodes:
        return True
    if any(objects.is_deleting(a) for a in apps) or any(v.waiting for v in composition.deployments.values()):
        return True
    if any(p.get("status") == "STARTING" for p in (view.serve.get("proxies") or {}).values()):
        return True  # a proxy is about to join the serve Service
    reported = view.serve.get("applications") or {}
    return any((reported.get(n) or {}).get("status") != "RUNNING" for n in composition.app_names)
