"""PURE: statuses and conditions of the three kinds, from what the operator observed.

Each function returns the status as it goes on the wire; the caller writes it only if it differs from the
live one, so nothing is written while nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from . import conditions, objects
from .api.application import ServeApplicationStatus
from .api.base import Condition, StatusModel
from .api.cluster import ServeClusterStatus
from .api.deployment import DeploymentReplicas, ServeDeploymentStatus
from .compose import Composition, Verdict
from .manifests import common
from .objects import Obj
from .servereport import AppReport, ServeReport

OK = (False, "AsExpected", "")


@dataclass(frozen=True)
class ClusterView:
    """What the operator saw of one ServeCluster in one reconcile."""

    name: str
    namespace: str
    generation: int
    desired_nodes: int
    ready_nodes: int
    head_pod: str | None
    head_ready: bool
    serve: ServeReport | None
    """Serve's report; None while the dashboard cannot be reached."""
    serve_error: str | None = None
    rejected: str | None = None
    """Serve's own text when it refused the last PUT."""
    http_port: int = 8000
    foreign: tuple[tuple[str, str], ...] = ()
    """(plural, name) of namesakes of owned objects that are someone else's."""

    @property
    def serve_url(self) -> str:
        return f"http://{common.serve_service_name(self.name)}.{self.namespace}.svc.cluster.local:{self.http_port}"

    def serve_app(self, name: str) -> AppReport | None:
        return self.serve.app(name) if self.serve else None

    @property
    def healthy_proxies(self) -> int:
        proxies = self.serve.proxies if self.serve else {}
        return sum(1 for p in proxies.values() if p.status == "HEALTHY")


def deployment_replicas(serve_app: AppReport | None) -> dict[str, DeploymentReplicas]:
    out = {}
    for name, details in (serve_app.deployments if serve_app else {}).items():
        out[name] = DeploymentReplicas(
            status=details.status,
            message=bounded(details.message, DEPLOYMENT_TEXT_LIMIT),
            replicas=details.running,
            target_replicas=details.target_num_replicas,
        )
    return out


KIND_NAMES = {
    "services": "Service", "ingresses": "Ingress", "networkpolicies": "NetworkPolicy", "secrets": "Secret",
    "serviceaccounts": "ServiceAccount", "rolebindings": "RoleBinding",
}


def name_taken(kind: str, name: str) -> str:
    """What to say of a namesake of an owned object that is someone else's."""
    return (
        f"{KIND_NAMES.get(kind, kind)} {name} exists and is not this ServeCluster's (no controller reference to it): "
        "serveplane changes nothing of it; delete or rename it, or rename the ServeCluster"
    )


def cluster_status(view: ClusterView, composition: Composition | None, applied: dict[str, Any]) -> dict[str, Any]:
    """Status of a ServeCluster; `applied` holds appliedConfigHash, appliedHeadUid and lastHeadRecovery as last
    recorded (the executor writes them)."""
    nodes_ready = view.ready_nodes >= view.desired_nodes
    if not view.head_ready:
        ready = (False, "HeadNotReady", f"waiting for head pod {view.head_pod or '(none yet)'} to become ready")
    elif view.serve is None:
        ready = (False, "DashboardUnavailable", cut(f"the Ray dashboard does not answer: {view.serve_error}"))
    elif view.healthy_proxies == 0 and composition is not None and composition.app_names:
        ready = (False, "NoHealthyProxy", "no Serve proxy reports HEALTHY yet")
    elif view.healthy_proxies == 0:
        # Serve starts its proxies with the first application; a cluster without one is up, not broken.
        ready = (True, "Idle", f"{view.ready_nodes} Ray pods are ready; no application is deployed yet")
    else:
        ready = (True, "Serving", f"{view.healthy_proxies} healthy Serve proxies on {view.ready_nodes} Ray pods")
    if view.rejected:
        progressing = (False, "ConfigRejected", "Serve refused the config; fix the resources named in its message")
    elif not nodes_ready:
        progressing = (True, "PodsStarting", f"{view.ready_nodes} of {view.desired_nodes} Ray pods are ready")
    elif composition is not None and applied.get("appliedConfigHash") != composition.config_hash:
        progressing = (True, "Submitting", "the Serve config has changed and is being submitted")
    elif not ready[0]:
        progressing = (True, ready[1], ready[2])
    else:
        progressing = (False, "Stable", "all Ray pods are ready and the Serve config is applied")
    degraded = (True, "ConfigRejected", cut(f"Serve refused the config: {view.rejected}")) if view.rejected else OK
    if view.foreign and not view.rejected:
        degraded = (True, "NameTaken", "; ".join(name_taken(kind, name) for kind, name in view.foreign))
    status = ServeClusterStatus(
        observed_generation=view.generation,
        head_pod=view.head_pod,
        desired_nodes=view.desired_nodes,
        ready_nodes=view.ready_nodes,
        healthy_proxies=view.healthy_proxies,
        applications=composition.app_names if composition else [],
        applied_config_hash=applied.get("appliedConfigHash"),
        applied_head_uid=applied.get("appliedHeadUid"),
        last_head_recovery=applied.get("lastHeadRecovery"),
        dashboard_url=common.dashboard_url(view.name, view.namespace),
        conditions=conditions.triple(view.generation, ready=ready, progressing=progressing, degraded=degraded),
    )
    return status.to_wire()


@dataclass(frozen=True)
class ClusterParts:
    """What a ServeCluster's status carries besides what the view says, as the round's stages computed it."""

    generations: dict[str, Any]
    """activeGeneration, generations and upgrade (and, when an upgrade promotes, what the new head accepted)."""
    worker_groups: list[dict[str, Any]]
    autoscaler: dict[str, Any] | None
    """Ray's autoscaler's own record, passed through as it wrote it."""
    redis_namespaces: list[str]
    upgrade_step: str | None = None
    """The step of an upgrade under way (none once it promotes)."""
    upgrade_failure: str | None = None


def whole_cluster_status(
    view: ClusterView, composition: Composition, applied: dict[str, Any], parts: ClusterParts
) -> dict[str, Any]:
    """A ServeCluster's whole status: the view's, then each part, then an upgrade's word on the conditions."""
    wire = cluster_status(view, composition, applied)
    wire.update(parts.generations)
    wire["workerGroups"] = parts.worker_groups
    wire["autoscaler"] = parts.autoscaler
    wire["redisNamespaces"] = parts.redis_namespaces
    upgrade = wire.get("upgrade")
    if isinstance(upgrade, dict) and isinstance(upgrade.get("failure"), str):
        # The failure may quote Serve (an application DEPLOY_FAILED on the new generation).
        wire["upgrade"] = {**upgrade, "failure": bounded(upgrade["failure"])}
    if parts.upgrade_step is not None:
        wire["conditions"] = upgrading(wire["conditions"], parts.upgrade_step, parts.upgrade_failure)
    return wire


def wire_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def upgrading(wire: list[dict[str, Any]], step: str, failure: str | None) -> list[dict[str, Any]]:
    """A cluster's conditions during an upgrade: Progressing says the step; a failed new generation makes it
    Degraded, while Ready stays what the active generation is."""
    out = []
    for cond in wire:
        if cond["type"] == conditions.PROGRESSING:
            value = "False" if failure else "True"
            cond = {**cond, "status": value, "reason": "UpgradeFailed" if failure else "Upgrading", "message": step}
        elif cond["type"] == conditions.DEGRADED and failure:
            cond = {**cond, "status": "True", "reason": "UpgradeFailed", "message": failure[:MESSAGE_LIMIT]}
        out.append(cond)
    return out


MESSAGE_LIMIT = 1000
"""The most of a condition's message, in characters."""
SERVE_TEXT_LIMIT = 8000
"""The most of one Serve message a status field keeps (an application's or a ServeDeployment's `message`, an
upgrade's failure): Serve's text (a traceback, or whatever an application raised) is otherwise unbounded, and one
status could grow past what etcd stores."""
DEPLOYMENT_TEXT_LIMIT = 2000
"""The same for each deployment's `message` in an application's status, which lists every deployment."""


def cut(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """A message for a condition: its start, with "..." where it was cut."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def bounded(message: str, limit: int = SERVE_TEXT_LIMIT) -> str:
    """Serve's text for a status field: whole when short, else its start and its end (a traceback's last line
    names the error) around a note of how long it was."""
    if len(message) <= limit:
        return message
    note = f"\n[... {len(message)} characters, cut to {limit} ...]\n"
    keep = max(limit - len(note), 0)
    head = keep // 2
    return (message[:head] + note + message[len(message) - (keep - head):])[:limit]


def serve_summary(message: str) -> str:
    """Serve's message made fit for a condition: a traceback shrinks to its last line, which names the error.

    The whole text stays in the status's `message` field for whoever needs the stack.
    """
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if len(lines) > 1 and any(line.startswith("Traceback") for line in lines):
        message = lines[-1] + " (full traceback in status.message)"
    return cut(message)


def _serve_app_conditions(
    serve_app: AppReport | None, was_ready: bool
) -> tuple[tuple[bool | None, str, str], tuple[bool, str, str], tuple[bool, str, str]]:
    if serve_app is None:
        waiting = (False, "Submitted", "the application was submitted; Serve has not reported it yet")
        return waiting, (True, "Submitted", waiting[2]), OK
    state, message = serve_app.status, serve_summary(serve_app.message)
    if state == "RUNNING":
        return (True, "Running", "Serve reports the application RUNNING"), (False, "Running", ""), OK
    if state in ("DEPLOYING", "NOT_STARTED"):
        # An update keeps the old replicas answering until the new ones are up.
        ready = (
            (True, "Updating", "the previous version answers while Serve deploys the new one")
            if was_ready
            else (False, "Deploying", "Serve is deploying the application")
        )
        return ready, (True, "Deploying", message or "Serve is deploying the application"), OK
    reason = {"DEPLOY_FAILED": "DeployFailed", "UNHEALTHY": "Unhealthy", "DELETING": "Deleting"}.get(
        state, state.title()
    )
    text = f"Serve reports {state}: {message}" if message else f"Serve reports {state}"
    return (False, reason, text), (False, reason, text), (state != "DELETING", reason, text)


def application_status(
    app: Obj, verdict: Verdict | None, view: ClusterView | None, *, cluster_missing: bool = False
) -> dict[str, Any]:
    """Status of a ServeApplication from its composition verdict and Serve's report of it."""
    name, generation = objects.name(app), objects.generation(app)
    old = ServeApplicationStatus.model_validate(objects.status(app))
    was_ready = conditions.is_true(objects.status(app).get("conditions") or [], conditions.READY)
    serve_app = view.serve_app(name) if view else None
    # Where it answers: Serve's word first, since a refused change leaves the last good route running.
    route = (serve_app.route_prefix if serve_app else None) or objects.spec(app).get("routePrefix") or f"/{name}"
    ready: tuple[bool | None, str, str]
    if cluster_missing:
        cluster = objects.spec(app).get("cluster", "default")
        msg = f"waiting for ServeCluster {cluster!r} in namespace {objects.namespace(app)!r} to exist"
        ready, progressing, degraded = (False, "ClusterNotFound", msg), (True, "WaitingForCluster", msg), OK
    elif verdict is not None and not verdict.ok:
        kept = serve_app is not None and serve_app.status == "RUNNING"
        ready = (kept, verdict.reason, verdict.message)
        progressing, degraded = (False, verdict.reason, verdict.message), (True, verdict.reason, verdict.message)
    elif view is None or view.serve is None:
        reason = "ClusterUnavailable"
        msg = "the Ray cluster's dashboard does not answer, so Serve's state is unknown"
        if view is not None and view.serve_error:
            msg = cut(f"{msg}: {view.serve_error}")
        ready, progressing, degraded = (False, reason, msg), (True, reason, msg), OK
    else:
        ready, progressing, degraded = _serve_app_conditions(serve_app, was_ready)
    status = ServeApplicationStatus(
        observed_generation=generation,
        serve_status=serve_app.status if serve_app and not cluster_missing else None,
        message=bounded(serve_app.message) if serve_app and serve_app.message else None,
        route_prefix=route,
        url=f"{view.serve_url}{route}" if view else None,
        deployments=deployment_replicas(serve_app) if serve_app else old.deployments,
        known_deployments=known_deployments(app, serve_app),
        conditions=conditions.triple(generation, ready=ready, progressing=progressing, degraded=degraded),
    )
    return status.to_wire()


def known_deployments(app: Obj, serve_app: AppReport | None) -> list[str]:
    """The deployments an application's code builds: exactly those Serve reports once the application RUNNING,
    and while Serve (re)builds it, those known before plus any reported. A new config empties Serve's list until
    it is built: without the memory, a ServeDeployment applied with its application would leave the config, come
    back, and have Serve rebuild forever."""
    reported = set(serve_app.deployments) if serve_app else set()
    if serve_app is not None and serve_app.status == "RUNNING":
        return sorted(reported)
    return sorted(reported | set(objects.status(app).get("knownDeployments") or ()))


def deployment_status(sdep: Obj, verdict: Verdict | None, serve_app: AppReport | None) -> dict[str, Any]:
    """Status of a ServeDeployment from its composition verdict and Serve's report of its deployment."""
    generation = objects.generation(sdep)
    target = objects.spec(sdep).get("deploymentName") or objects.name(sdep)
    details = serve_app.deployments.get(target) if serve_app else None
    if verdict is None:
        # Like an application waiting for its cluster: GitOps may apply the pieces in any order.
        msg = f"waiting for application {objects.spec(sdep).get('application')!r} to exist on a ServeCluster"
        ready, progressing, degraded = (False, "ApplicationNotFound", msg), (True, "WaitingForApplication", msg), OK
    elif not verdict.ok:
        ready, progressing, degraded = (
            (False, verdict.reason, verdict.message),
            (False, verdict.reason, ""),
            (True, verdict.reason, verdict.message),
        )
    elif verdict.waiting or details is None:
        msg = verdict.message if verdict.waiting else f"Serve has not reported deployment {target!r} yet"
        ready, progressing, degraded = (False, "Waiting", msg), (True, "Waiting", msg), OK
    else:
        state, message = details.status, serve_summary(details.message)
        running, wanted = details.running, details.target_num_replicas
        text = f"{running} of {wanted} replicas running; Serve reports {state}" + (f": {message}" if message else "")
        healthy = state == "HEALTHY"
        failed = state in ("DEPLOY_FAILED", "UNHEALTHY")
        ready = (healthy, "Healthy" if healthy else state.title().replace("_", ""), text)
        progressing = (not healthy and not failed, "Stable" if healthy else "Failed" if failed else "Scaling", text)
        degraded = (failed, state.title().replace("_", "") if failed else "AsExpected", text if failed else "")
    status = ServeDeploymentStatus(
        observed_generation=generation,
        serve_status=details.status if details else None,
        message=bounded(details.message) if details and details.message else None,
        replicas=details.running if details else 0,
        target_replicas=details.target_num_replicas if details else None,
        conditions=conditions.triple(generation, ready=ready, progressing=progressing, degraded=degraded),
    )
    return status.to_wire()


M = TypeVar("M", bound=StatusModel)


def read(model: type[M], stored: dict[str, Any]) -> M:
    """A stored status as its model. A field that does not parse (written by another hand, or half written by an
    older operator) reads as unset, so one bad field never stops a round; the others are kept."""
    try:
        return model.model_validate(stored)
    except ValidationError as error:
        bad = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
        return model.model_validate({k: v for k, v in stored.items() if k not in bad})


def status_patch(
    model: type[StatusModel], old: dict[str, Any], new: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """The merge patch that turns `old` into `new`, or None when they already match (nothing to write).

    Conditions keep their lastTransitionTime while their status holds; fields the model does not know are
    somebody else's and are left alone.
    """
    new = dict(new)
    if "conditions" in new:
        parsed = [Condition.model_validate(c) for c in new["conditions"]]
        new["conditions"] = conditions.merge(old.get("conditions") or [], parsed, now)
    managed = {f.alias or key for key, f in model.model_fields.items()}
    patch = _merge_diff({k: v for k, v in old.items() if k in managed or k in new}, new)
    return patch or None


def _merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch from `old` to `new`: an object field is patched key by key (a key it no longer has
    is set to null), anything else replaced whole; a null in `new` where `old` has nothing is no change."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            inner = _merge_diff(before, value)
            if inner:
                patch[key] = inner
        elif before != value:
            patch[key] = value
    patch.update({key: None for key in old if key not in new})
    return patch
