"""PURE: one round of a cluster loop, from a Snapshot to the Plan of actions that moves it toward its goal.

Every decision of the reconcile is made here or in `plan` (the single decisions it combines); nothing here
does I/O, reads the clock or the environment. A steady cluster plans no action at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from . import autoscaling, conditions, gcsft, generations, objects, plan, status
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
    PostEvent,
    SetFinalizers,
    Submit,
    WriteStatus,
)
from .api.application import ServeApplicationStatus
from .api.base import StatusModel
from .api.cluster import AuthMode, ServeClusterSpec, ServeClusterStatus, UpgradeType
from .api.deployment import ServeDeploymentStatus
from .api.kinds import (
    APPS,
    CLUSTERS,
    DEPLOYMENTS,
    INGRESSES,
    NETWORKPOLICIES,
    ROLEBINDINGS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
)
from .compose import Composition, compose, serve_view, start_key, validation_message, with_capacity
from .compose import config_hash as compose_hash
from .manifests import auth, autoscaler, cleanup, common, netpol, network, pods
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


def plan_round(
    snap: Snapshot,
    *,
    image: str,
    access: netpol.Access | None = None,
    autoscaler_role: str = autoscaler.DEFAULT_CLUSTER_ROLE,
) -> Plan:
    """The actions of one round for one cluster loop; `access`: who the NetworkPolicy lets in besides the
    cluster's own pods, `autoscaler_role`: the ClusterRole of Ray's autoscaler (the operator's settings)."""
    cluster = snap.cluster
    if cluster is None or objects.is_deleting(cluster):
        return _without_cluster(snap, image)
    try:
        spec = ServeClusterSpec.model_validate(objects.spec(cluster))
    except ValidationError as error:
        return Plan(actions=tuple(_status(snap, CLUSTERS, cluster, _invalid(cluster, validation_message(error)))))
    return _with_cluster(snap, cluster, spec, image, access or netpol.Access(), autoscaler_role)


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


@dataclass(frozen=True)
class _Upgrade:
    """The generations of a round and the upgrade step between them."""

    roles: generations.Roles
    step: generations.Step | None
    """None: no upgrade is under way."""
    pending_pods: list[Obj]
    pending_head: Obj | None


def _autoscaler_access(snap: Snapshot, spec: ServeClusterSpec, uid: str, role: str) -> list[Action]:
    """The autoscaler's ServiceAccount and RoleBinding while autoscaling is on; they go when it is off."""
    if not spec.autoscaling.enabled:
        return [DeleteOwned(kind, name) for kind, name in sorted(snap.autoscaler_access)]
    args = {"cluster": snap.name, "namespace": snap.namespace, "uid": uid}
    wanted = [
        (SERVICEACCOUNTS, autoscaler.service_account(**args)),
        (ROLEBINDINGS, autoscaler.role_binding(**args, cluster_role=role)),
    ]
    return [
        action
        for kind, obj in wanted
        for action in _owned(snap, kind, obj, {n: o for (k, n), o in snap.autoscaler_access.items() if k == kind})
    ]


def _with_cluster(
    snap: Snapshot, cluster: Obj, spec: ServeClusterSpec, image: str, access: netpol.Access, autoscaler_role: str
) -> Plan:
    name, namespace, uid = snap.name, snap.namespace, objects.uid(cluster)
    actions: list[Action] = []
    ray_pods = [p for p in snap.pods if not cleanup.is_cleanup_pod(p)]
    target = pods.generation_name(
        cluster=name, namespace=namespace, uid=uid, spec=spec, image=image,
        serve_start=start_key(spec, list(snap.apps)),
    )
    stored = objects.status(cluster)
    roles = generations.roles(target=target, stored_active=stored.get("activeGeneration"), pods=ray_pods)
    actions += _services(snap, spec, uid, roles, ray_pods)
    actions += _network_policy(snap, spec, uid, access)
    actions += _autoscaler_access(snap, spec, uid, autoscaler_role)
    actions += gcsft.finalizer(cluster, spec)
    token_actions, digest, wait_for_token = _token(snap, spec, uid)
    actions += token_actions

    requested = autoscaling.requests(spec, stored.get("autoscaler"))
    chosen = autoscaling.doomed(stored.get("autoscaler"), roles.active)

    def wanted(generation: str) -> list[Obj]:
        mine = [p for p in ray_pods if plan.generation_of(p) == generation]
        indices = autoscaling.workers(
            spec=spec, cluster=name, generation=generation, pods=mine, requested=requested, chosen=chosen
        )
        built = pods.ray_pods(
            cluster=name, namespace=namespace, uid=uid, spec=spec, image=image, generation=generation, workers=indices
        )
        if digest is not None:
            for pod in built:
                pod["metadata"].setdefault("annotations", {})[auth.DIGEST_ANNOTATION] = digest
        return built

    active_pods = [p for p in ray_pods if plan.generation_of(p) == roles.active]
    desired = wanted(roles.active)
    if roles.pending is None and not wait_for_token:  # no Ray pod starts without its token
        todo = plan.plan_pods(desired, active_pods)
        actions += [CreatePod(pod) for pod in todo.create]
        actions += [
            DeletePod(pod_name, autoscaling.why_deleted(pod_name, chosen, why)) for pod_name, why in todo.delete.items()
        ]

    head = plan.live_head(active_pods, roles.active)
    head_ip = ((head or {}).get("status") or {}).get("podIP")
    serve = snap.reports.get(roles.active) if head_ip else None
    composition = compose(spec, list(snap.apps), list(snap.deployments), serve_view(serve, list(snap.apps)))
    apps = set(composition.app_names)
    upgrade = _upgrade(snap, spec, stored, roles, ray_pods, wanted, composition, serve)
    if upgrade.step is not None and not wait_for_token:
        actions += [CreatePod(pod) for pod in upgrade.step.create]
    actions += _retire(snap, spec, stored, roles, ray_pods)
    live = {plan.generation_of(p) for p in ray_pods} | {roles.active} | ({roles.pending} if roles.pending else set())
    actions += gcsft.retired_cleanup(cluster, spec, snap.pods, live, image)
    actions += _labels(snap, roles, upgrade, active_pods, serve)

    routes = [app["route_prefix"] for app in composition.config["applications"]]
    ingress = network.ingress(cluster=name, namespace=namespace, uid=uid, spec=spec, routes=routes)
    if ingress is not None:
        actions += _owned(snap, INGRESSES, ingress, snap.ingresses)
    elif common.serve_service_name(name) in snap.ingresses:
        actions.append(DeleteOwned(INGRESSES, common.serve_service_name(name)))
    serve_apps = plan.serve_app_names(serve)
    for app in snap.apps:
        wanted_finalizers = plan.finalizers_to_set(app, serve_apps)
        if wanted_finalizers is not None:
            actions.append(
                SetFinalizers(APPS, objects.name(app), tuple(wanted_finalizers), app["metadata"]["resourceVersion"])
            )

    capacity = upgrade.step.capacity if upgrade.step else {}
    config = with_capacity(composition.config, capacity.get("active"))
    config_digest = compose_hash(config)
    applied = {k: stored.get(k) for k in ("appliedConfigHash", "appliedHeadUid", "lastHeadRecovery")}
    rejected = snap.rejection.config_hash if snap.rejection else None
    reason, recovery = None, None
    if head is not None and head_ip:
        recovery = gcsft.head_change(
            spec=spec, head=head, applied=applied, config_hash=config_digest,
            composed_apps=apps, serve=serve, now=snap.now,
        )
    if recovery is gcsft.HeadChange.ADOPT and head is not None:
        actions.append(AdoptHead(objects.uid(head)))
    elif recovery is None and head is not None and head_ip:
        reason = plan.submit_reason(
            config_hash=config_digest,
            head_uid=objects.uid(head),
            applied=applied,
            composed_apps=apps,
            serve_apps=serve_apps,
            rejected_hash=rejected,
        )
    if reason is not None and head is not None and head_ip:
        # The statuses wait for the next round, which sees what Serve made of the new config; but for the
        # deployments Serve built, which the new config may name (ServeDeployments) while Serve rebuilds.
        actions += _known_deployments(snap, serve)
        actions.append(Submit(config, config_digest, reason, str(head_ip), objects.uid(head), generation=roles.active))
        return Plan(actions=tuple(actions), busy=True, config_hash=composition.config_hash)
    pending_submit = _pending_submit(snap, stored, upgrade, composition, rejected)
    if pending_submit is not None:
        actions.append(pending_submit)
        return Plan(actions=tuple(actions), busy=True, config_hash=composition.config_hash)
    if upgrade.step is not None and not wait_for_token:
        # Only once both heads run their capacities: the pod that goes hands its traffic to replicas already there.
        actions += [DeletePod(pod_name, why) for pod_name, why in upgrade.step.delete.items()]

    ready_pods = [p for p in active_pods if plan.pod_ready(p) and not objects.is_deleting(p)]
    view = status.ClusterView(
        name=name,
        namespace=namespace,
        generation=objects.generation(cluster),
        desired_nodes=len(desired),
        ready_nodes=len(ready_pods),
        head_pod=objects.name(head) if head else None,
        head_ready=bool(head and plan.pod_ready(head)),
        serve=serve,
        serve_error=snap.report_errors.get(roles.active) if head_ip else "the head pod has no IP yet",
        rejected=snap.rejection.message if snap.rejection and rejected == config_digest else None,
        http_port=spec.serve.http_port,
    )
    cluster_wire = status.cluster_status(view, composition, applied)
    cluster_wire.update(_generation_status(snap, spec, stored, upgrade, ray_pods))
    resources = {}
    if spec.autoscaling.enabled:
        resources = pods.group_resources(
            cluster=name, namespace=namespace, uid=uid, spec=spec, image=image, generation=roles.active
        )
    cluster_wire["workerGroups"] = autoscaling.group_status(spec, requested, _ready_by_group(ready_pods), resources)
    cluster_wire["autoscaler"] = stored.get("autoscaler")  # the autoscaler's to write, not the operator's
    cluster_wire["redisNamespaces"] = gcsft.namespaces_record(cluster, spec, snap.pods, live)
    if upgrade.step is not None and not upgrade.step.promote:
        cluster_wire["conditions"] = status.upgrading(
            cluster_wire["conditions"], upgrade.step.step, upgrade.step.failure
        )
    actions += _status(snap, CLUSTERS, cluster, cluster_wire)
    actions += _upgrade_events(stored, cluster_wire)
    decision = (stored.get("autoscaler") or {}).get("lastDecision")
    scaled = autoscaling.scale_events(stored.get("workerGroups") or [], cluster_wire["workerGroups"], decision)
    actions += [PostEvent("Normal", reason, message) for reason, message in scaled]
    for app in snap.apps:
        if not objects.is_deleting(app):
            verdict = composition.applications.get(objects.name(app))
            actions += _status(snap, APPS, app, status.application_status(app, verdict, view))
    for sdep in snap.deployments:
        serve_app = view.serve_app(objects.spec(sdep).get("application", ""))
        verdict = composition.deployments.get(objects.name(sdep))
        actions += _status(snap, DEPLOYMENTS, sdep, status.deployment_status(sdep, verdict, serve_app))
    busy = recovery is not None or upgrade.step is not None or bool(roles.retiring)
    busy = busy or _busy(view, composition, snap.apps)
    return Plan(actions=tuple(actions), busy=busy, config_hash=composition.config_hash)


def _services(
    snap: Snapshot, spec: ServeClusterSpec, uid: str, roles: generations.Roles, ray_pods: list[Obj]
) -> list[Action]:
    """The head Service (the active generation's head), one head Service per generation with pods (its workers
    join by it), and the serve Service; a generation's head Service goes with its last pod."""
    name, namespace = snap.name, snap.namespace
    live = {roles.active, *([roles.pending] if roles.pending else []), *(plan.generation_of(p) for p in ray_pods)}
    live.discard(generations.LEGACY)
    wanted = [network.head_service(cluster=name, namespace=namespace, uid=uid, generation=roles.active)]
    wanted += [
        network.generation_head_service(cluster=name, namespace=namespace, uid=uid, generation=g) for g in sorted(live)
    ]
    wanted.append(network.serve_service(cluster=name, namespace=namespace, uid=uid, spec=spec))
    actions: list[Action] = [a for w in wanted for a in _owned(snap, SERVICES, w, snap.services)]
    keep = {objects.name(w) for w in wanted}
    for svc_name, svc in sorted(snap.services.items()):
        if svc_name not in keep and common.GENERATION_LABEL in (svc["metadata"].get("labels") or {}):
            actions.append(DeleteOwned(SERVICES, svc_name))
    return actions


def _generation(pods_of: list[Obj], report: dict[str, Any] | None, applied: bool) -> generations.Generation:
    return generations.Generation(pods=pods_of, report=report, applied=applied)


def _upgrade(
    snap: Snapshot,
    spec: ServeClusterSpec,
    stored: dict[str, Any],
    roles: generations.Roles,
    ray_pods: list[Obj],
    wanted: Callable[[str], list[Obj]],
    composition: Composition,
    serve: dict[str, Any] | None,
) -> _Upgrade:
    if roles.pending is None:
        return _Upgrade(roles, None, [], None)
    pending_pods = [p for p in ray_pods if plan.generation_of(p) == roles.pending]
    active_pods = [p for p in ray_pods if plan.generation_of(p) == roles.active]
    pending_head = plan.live_head(pending_pods, roles.pending)
    record = stored.get("upgrade") or {}
    mine = record.get("generation") == roles.pending
    pending_report = snap.reports.get(roles.pending) if pending_head else None
    pending_applied = bool(
        mine and pending_head and record.get("appliedHeadUid") == objects.uid(pending_head)
        and _same_apps(record.get("appliedApps"), composition)
    )
    active_applied = stored.get("appliedConfigHash") is not None
    joining = plan.proxy_labels(pending_pods, pending_report) if pending_report else {}
    step = generations.upgrade_step(
        strategy=spec.upgrade_strategy,
        desired=wanted(roles.pending),
        active=_generation(active_pods, serve, active_applied),
        pending=_generation(pending_pods, pending_report, pending_applied),
        all_pods=len(ray_pods),
        apps=set(composition.app_names),
        failure=record.get("failure") if mine else None,
        since_step=generations.parse_time(record.get("stepSince") or record.get("startedAt")) if mine else snap.now,
        now=snap.now,
        labels_settled=not joining,
    )
    return _Upgrade(roles, step, pending_pods, pending_head)


def _same_apps(applied_apps: Any, composition: Composition) -> bool:
    """The pending head runs the applications' config as composed now (its capacity may differ)."""
    return bool(applied_apps == compose_hash({"applications": composition.config["applications"]}))


def _known_deployments(snap: Snapshot, serve: dict[str, Any] | None) -> list[Action]:
    """The applications' knownDeployments alone, where Serve's report adds to them."""
    actions: list[Action] = []
    for app in snap.apps:
        if objects.is_deleting(app):
            continue
        serve_app = ((serve or {}).get("applications") or {}).get(objects.name(app))
        known = status.known_deployments(app, serve_app)
        if known != (objects.status(app).get("knownDeployments") or []):
            actions += _status(snap, APPS, app, {**objects.status(app), "knownDeployments": known})
    return actions


def _pending_submit(
    snap: Snapshot, stored: dict[str, Any], upgrade: _Upgrade, composition: Composition, rejected: str | None
) -> Submit | None:
    """The composed config, with the pending generation's capacity, for its head, when that head does not run it."""
    step, head = upgrade.step, upgrade.pending_head
    pending = upgrade.roles.pending
    if step is None or step.failure or head is None or pending is None:
        return None
    head_ip = (head.get("status") or {}).get("podIP")
    report = snap.reports.get(pending)
    if not head_ip or report is None:
        return None
    config = with_capacity(composition.config, step.capacity.get("pending"))
    digest = compose_hash(config)
    record = stored.get("upgrade") or {}
    applied = {"appliedConfigHash": record.get("appliedConfigHash"), "appliedHeadUid": record.get("appliedHeadUid")}
    reason = plan.submit_reason(
        config_hash=digest, head_uid=objects.uid(head), applied=applied, composed_apps=set(composition.app_names),
        serve_apps=plan.serve_app_names(report), rejected_hash=rejected,
    )
    if reason is None:
        return None
    apps_digest = compose_hash({"applications": composition.config["applications"]})
    return Submit(
        config, digest, reason, str(head_ip), objects.uid(head), generation=pending, upgrade=True, apps_hash=apps_digest
    )


def _retire(
    snap: Snapshot, spec: ServeClusterSpec, stored: dict[str, Any], roles: generations.Roles, ray_pods: list[Obj]
) -> list[Action]:
    """Retiring generations' pods go: at once, or BlueGreen's old one after its delay."""
    record = stored.get("upgrade") or {}
    actions: list[Action] = []
    for generation in roles.retiring:
        keep_until = None
        switched = generations.parse_time(record.get("retiredAt"))
        if record.get("retired") == generation and switched is not None:
            keep_until = switched + timedelta(seconds=spec.upgrade_strategy.old_generation_delay_seconds)
        mine = [p for p in ray_pods if plan.generation_of(p) == generation]
        gone = generations.retire(mine, keep_until=keep_until, now=snap.now)
        actions += [DeletePod(pod_name, why) for pod_name, why in gone.items()]
    return actions


def _labels(
    snap: Snapshot, roles: generations.Roles, upgrade: _Upgrade, active_pods: list[Obj], serve: dict[str, Any] | None
) -> list[Action]:
    """Proxy labels: the active generation's from its Serve, the pending one's from its own once it may take
    traffic, none on retiring generations (and on a pending one that may not)."""
    changes = plan.proxy_labels(active_pods, serve)
    if upgrade.step is not None and roles.pending is not None:
        if upgrade.step.release:
            changes.update(plan.proxy_labels(upgrade.pending_pods, snap.reports.get(roles.pending)))
        else:
            changes.update(plan.withdrawn(upgrade.pending_pods))
    changes.update(plan.withdrawn([p for p in snap.pods if plan.generation_of(p) in roles.retiring]))
    return [LabelPod(pod_name, labels) for pod_name, labels in changes.items()]


def _generation_status(
    snap: Snapshot,
    spec: ServeClusterSpec,
    stored: dict[str, Any],
    upgrade: _Upgrade,
    ray_pods: list[Obj],
) -> dict[str, Any]:
    """activeGeneration, generations and upgrade, as the status carries them."""
    roles, step = upgrade.roles, upgrade.step
    record = dict(stored.get("upgrade") or {})
    active = roles.active
    capacity = step.capacity if step else {}
    if step is not None and step.promote:
        # Traffic is on the new generation: it becomes the active one, with what its head accepted.
        record.update({"step": step.step, "failure": None})
        if spec.upgrade_strategy.type is UpgradeType.BLUE_GREEN:
            record.update({"retired": roles.active, "retiredAt": status.wire_time(snap.now)})
        active = roles.pending or active
    elif step is not None and roles.pending is not None:
        if record.get("generation") != roles.pending:
            record = {
                "generation": roles.pending, "strategy": spec.upgrade_strategy.type.value,
                "startedAt": status.wire_time(snap.now),
            }
        if record.get("step") != step.step:
            record["stepSince"] = status.wire_time(snap.now)
        record.update({"step": step.step, "failure": step.failure})
    elif not roles.retiring:
        record = {}
    else:
        record["step"] = "Removing the old generation's pods"
    total = sum(1 for p in ray_pods if generations.serving(p))
    entries = []
    for generation in sorted({plan.generation_of(p) for p in ray_pods} | {active}):
        mine = [p for p in ray_pods if plan.generation_of(p) == generation]
        role = "Active" if generation == roles.active else "Pending" if generation == roles.pending else "Retiring"
        head = plan.live_head(mine, generation)
        cap = capacity.get("active" if role == "Active" else "pending") if role != "Retiring" else None
        entries.append({
            "name": generation or "legacy", "role": role, "headPod": objects.name(head) if head else None,
            "readyPods": sum(1 for p in mine if plan.pod_ready(p)),
            "servingPods": sum(1 for p in mine if generations.serving(p)),
            "targetCapacity": cap,
            "trafficShare": round(100.0 * sum(1 for p in mine if generations.serving(p)) / total, 2) if total else 0,
        })
    out: dict[str, Any] = {
        "activeGeneration": active,
        "generations": [{k: v for k, v in e.items() if v is not None} for e in entries],
        "upgrade": {k: v for k, v in record.items() if v is not None} or None,
    }
    if step is not None and step.promote:
        out.update({key: record.get(key) for key in ("appliedConfigHash", "appliedHeadUid")})
    return out


def _upgrade_events(stored: dict[str, Any], wire: dict[str, Any]) -> list[Action]:
    """An Event for each step of an upgrade, when the status records a new one."""
    before, after = stored.get("upgrade") or {}, wire.get("upgrade") or {}
    if not after or after.get("step") == before.get("step"):
        if before and not after:
            return [PostEvent("Normal", "UpgradeDone", f"generation {wire.get('activeGeneration')} runs the cluster")]
        return []
    kind = "Warning" if after.get("failure") else "Normal"
    message = f"generation {after.get('generation')}: {after['step']}"
    if after.get("failure"):
        message += f": {after['failure']}"
    return [PostEvent(kind, "Upgrading", message)]


def _ready_by_group(ready_pods: list[Obj]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in ready_pods:
        group = (pod["metadata"].get("labels") or {}).get(common.GROUP_LABEL)
        if group:
            counts[group] = counts.get(group, 0) + 1
    return counts


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
