"""observe -> plan -> act -> write status, for one ServeCluster and everything on it.

One reconcile handles a cluster, its pods and Services, the Serve config of all its applications and the
statuses of its ServeApplications and ServeDeployments, so no two actions on one cluster ever race. Nothing
here is kopf-specific: the handlers call `Reconciler.cluster()` from a per-cluster loop.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import conditions, metrics, objects, plan, status
from .api.application import ServeApplicationStatus
from .api.base import Condition, StatusModel
from .api.cluster import ServeClusterSpec, ServeClusterStatus
from .api.deployment import ServeDeploymentStatus
from .clients.dashboard import DashboardError, DashboardRejected
from .clients.kube import Kube
from .compose import Composition, compose, validation_message
from .manifests import common, network, pods
from .objects import Obj
from .observe import DashboardPool, serve_app_names, serve_view, timed
from .settings import Settings

log = logging.getLogger(__name__)

CLUSTERS, APPS, DEPLOYMENTS = "serveclusters", "serveapplications", "servedeployments"

EventSink = Callable[[Obj, str, str, str], None]
"""(object, type Normal|Warning, reason, message) -> posts a Kubernetes Event."""


@dataclass
class ClusterMemory:
    """What a cluster's loop remembers between rounds; only ever an optimisation, never the truth."""

    rejected_hash: str | None = None
    rejected_text: str | None = None
    composed_since: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    busy: bool
    """Something is starting, deploying or failing: poll fast."""
    gone: bool = False


STATUS_MODELS: dict[str, type[StatusModel]] = {
    CLUSTERS: ServeClusterStatus, APPS: ServeApplicationStatus, DEPLOYMENTS: ServeDeploymentStatus,
}


def status_patch(model: type[StatusModel], old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """The merge patch that turns `old` into `new`, or None when they already match (nothing to write).

    Conditions keep their lastTransitionTime while their status holds; fields the model does not know are
    somebody else's and are left alone.
    """
    new = dict(new)
    if "conditions" in new:
        parsed = [Condition.model_validate(c) for c in new["conditions"]]
        new["conditions"] = conditions.merge(old.get("conditions") or [], parsed)
    managed = {f.alias or key for key, f in model.model_fields.items()}
    patch: dict[str, Any] = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new and key in managed})
    return patch or None


class Reconciler:
    def __init__(self, kube: Kube, settings: Settings, events: EventSink) -> None:
        self.kube = kube
        self.settings = settings
        self.events = events
        self.dashboards = DashboardPool(settings.dashboard_timeout_s)

    async def write_status(self, plural: str, obj: Obj, new: dict[str, Any]) -> None:
        patch = status_patch(STATUS_MODELS[plural], objects.status(obj), new)
        ready = conditions.find(new.get("conditions") or [], conditions.READY)
        metrics.record_ready(plural, objects.namespace(obj), objects.name(obj), ready.get("status") if ready else None)
        if patch is not None:
            await self.kube.patch_custom_status(plural, objects.namespace(obj), objects.name(obj), patch)

    async def cluster(self, namespace: str, name: str, memory: ClusterMemory) -> Outcome:
        start = time.monotonic()
        result = "error"
        try:
            outcome = await self._cluster(namespace, name, memory)
            result = "gone" if outcome.gone else "busy" if outcome.busy else "steady"
            return outcome
        finally:
            metrics.RECONCILES.labels("ServeCluster", result).inc()
            metrics.RECONCILE_SECONDS.labels("ServeCluster").observe(time.monotonic() - start)

    async def _cluster(self, namespace: str, name: str, memory: ClusterMemory) -> Outcome:
        cluster = await self.kube.get_custom(CLUSTERS, namespace, name)
        if cluster is None or objects.is_deleting(cluster):
            await self.dashboards.forget(namespace, name)
            return Outcome(busy=False, gone=True)
        try:
            spec = ServeClusterSpec.model_validate(objects.spec(cluster))
        except ValidationError as error:
            await self._invalid_cluster(cluster, validation_message(error))
            return Outcome(busy=False)
        uid = objects.uid(cluster)
        owned = await self.kube.list_pods(namespace, f"{common.CLUSTER_LABEL}={name}")
        apps = [a for a in await self.kube.list_custom(APPS, namespace) if objects.spec(a).get("cluster", "default") == name]
        app_names = {objects.name(a) for a in apps}
        sdeps = [d for d in await self.kube.list_custom(DEPLOYMENTS, namespace) if objects.spec(d).get("application") in app_names]

        await self.kube.apply_service(network.head_service(cluster=name, namespace=namespace, uid=uid))
        await self.kube.apply_service(network.serve_service(cluster=name, namespace=namespace, uid=uid, spec=spec))
        desired = [pods.head_pod(cluster=name, namespace=namespace, uid=uid, spec=spec, image=self.settings.default_image)]
        desired += pods.worker_pods(cluster=name, namespace=namespace, uid=uid, spec=spec, image=self.settings.default_image)
        await self._converge_pods(cluster, desired, owned)

        head = next((p for p in owned if objects.name(p) == common.head_pod_name(name) and not objects.is_deleting(p)), None)
        head_ip = ((head or {}).get("status") or {}).get("podIP")
        serve, serve_error = await self._read_serve(namespace, name, head_ip)
        composition = compose(spec, apps, sdeps, serve_view(serve, apps))
        applied = {k: objects.status(cluster).get(k) for k in ("appliedConfigHash", "appliedHeadUid")}
        memory.composed_since.setdefault(composition.config_hash, time.monotonic())
        reason = None
        if head is not None:
            reason = plan.submit_reason(
                config_hash=composition.config_hash,
                head_uid=objects.uid(head),
                applied=applied,
                composed_apps=set(composition.app_names),
                serve_apps=serve_app_names(serve),
                rejected_hash=memory.rejected_hash,
            )
            if reason is not None:
                serve, serve_error, applied = await self._submit(
                    cluster, head, composition, reason, memory, serve, applied
                )
        rejected = memory.rejected_text if memory.rejected_hash == composition.config_hash else None

        for pod_name, label in plan.proxy_labels(owned, serve).items():
            await self.kube.label_pod(namespace, pod_name, {common.PROXY_LABEL: label})
        await self._converge_ingress(name, namespace, uid, spec, composition)
        serve_apps = serve_app_names(serve)
        for app in apps:
            wanted = plan.finalizers_to_set(app, serve_apps)
            if wanted is not None:
                await self.kube.set_finalizers(APPS, app, wanted)

        ready_pods = [p for p in owned if plan.pod_ready(p) and not objects.is_deleting(p)]
        view = status.ClusterView(
            name=name,
            namespace=namespace,
            generation=objects.generation(cluster),
            desired_nodes=len(desired),
            ready_nodes=len(ready_pods),
            head_pod=objects.name(head) if head else None,
            head_ready=bool(head and plan.pod_ready(head)),
            serve=serve,
            serve_error=serve_error,
            rejected=rejected,
            http_port=spec.serve.http_port,
        )
        await self.write_status(CLUSTERS, cluster, status.cluster_status(view, composition, applied))
        for app in apps:
            if not objects.is_deleting(app):
                verdict = composition.applications.get(objects.name(app))
                await self.write_status(APPS, app, status.application_status(app, verdict, view))
        for sdep in sdeps:
            serve_app = view.serve_app(objects.spec(sdep).get("application", ""))
            await self.write_status(DEPLOYMENTS, sdep, status.deployment_status(sdep, composition.deployments.get(objects.name(sdep)), serve_app))
        return Outcome(busy=self._busy(view, composition, apps, reason))

    @staticmethod
    def _busy(view: status.ClusterView, composition: Composition, apps: list[Obj], reason: str | None) -> bool:
        if reason is not None or view.serve is None or view.ready_nodes < view.desired_nodes:
            return True
        reported = (view.serve or {}).get("applications") or {}
        if any(objects.is_deleting(a) for a in apps):
            return True
        if any(v.waiting for v in composition.deployments.values()):
            return True
        return any((reported.get(n) or {}).get("status") != "RUNNING" for n in composition.app_names)

    async def _converge_pods(self, cluster: Obj, desired: list[Obj], owned: list[Obj]) -> None:
        todo = plan.plan_pods(desired, owned)
        for pod in todo.create:
            await self.kube.create_pod(pod)
            metrics.POD_ACTIONS.labels("create").inc()
            self.events(cluster, "Normal", "PodCreated", f"created Ray pod {objects.name(pod)}")
        for pod_name, why in todo.delete.items():
            await self.kube.delete_pod(objects.namespace(cluster), pod_name)
            metrics.POD_ACTIONS.labels("delete").inc()
            self.events(cluster, "Normal", "PodDeleted", f"deleted Ray pod {pod_name}: {why}")

    async def _converge_ingress(
        self, name: str, namespace: str, uid: str, spec: ServeClusterSpec, composition: Composition
    ) -> None:
        routes = [app["route_prefix"] for app in composition.config["applications"]]
        wanted = network.ingress(cluster=name, namespace=namespace, uid=uid, spec=spec, routes=routes)
        if wanted is not None:
            await self.kube.apply_ingress(wanted)
        else:
            await self.kube.delete_ingress(namespace, common.serve_service_name(name))

    async def _read_serve(self, namespace: str, name: str, head_ip: str | None) -> tuple[dict[str, Any] | None, str | None]:
        if not head_ip:
            return None, "the head pod has no IP yet"
        client = await self.dashboards.for_head(namespace, name, head_ip)
        try:
            return await timed("GET", client.get_applications()), None
        except DashboardError as error:
            return None, str(error)

    async def _submit(
        self, cluster: Obj, head: Obj, composition: Composition, reason: str, memory: ClusterMemory,
        serve: dict[str, Any] | None, applied: dict[str, Any],
    ) -> tuple[dict[str, Any] | None, str | None, dict[str, Any]]:
        namespace, name = objects.namespace(cluster), objects.name(cluster)
        client = await self.dashboards.for_head(namespace, name, head["status"]["podIP"])
        try:
            await timed("PUT", client.put_applications(composition.config))
        except DashboardRejected as error:
            memory.rejected_hash, memory.rejected_text = composition.config_hash, error.message
            metrics.SUBMISSIONS.labels(reason, "rejected").inc()
            self.events(cluster, "Warning", "ConfigRejected", f"Serve refused the config: {error.message[:500]}")
            return serve, None, applied
        except DashboardError as error:
            metrics.SUBMISSIONS.labels(reason, "error").inc()
            return None, str(error), applied
        metrics.SUBMISSIONS.labels(reason, "applied").inc()
        since = memory.composed_since.pop(composition.config_hash, None)
        if since is not None:
            metrics.SPEC_TO_APPLIED_SECONDS.observe(time.monotonic() - since)
        memory.composed_since.clear()
        memory.rejected_hash = memory.rejected_text = None
        self.events(
            cluster, "Normal", "ConfigApplied",
            f"submitted Serve config {composition.config_hash} ({reason}): " + ", ".join(composition.app_names),
        )
        applied = {"appliedConfigHash": composition.config_hash, "appliedHeadUid": objects.uid(head)}
        # Record at once: if the operator stops right here, its successor must not submit again.
        await self.kube.patch_custom_status(CLUSTERS, namespace, name, applied)
        serve, problem = await self._read_serve(namespace, name, head["status"]["podIP"])
        return serve, problem, applied

    async def _invalid_cluster(self, cluster: Obj, message: str) -> None:
        generation = objects.generation(cluster)
        conds = conditions.triple(
            generation,
            ready=(False, "InvalidSpec", message),
            progressing=(False, "InvalidSpec", message),
            degraded=(True, "InvalidSpec", message),
        )
        new = {**objects.status(cluster), "observedGeneration": generation, "conditions": [c.to_wire() for c in conds]}
        await self.write_status(CLUSTERS, cluster, new)

    async def orphan_application(self, app: Obj) -> None:
        """An application whose ServeCluster does not exist: say so, and let a deleted one go."""
        if objects.is_deleting(app):
            wanted = [f for f in app["metadata"].get("finalizers") or [] if f != plan.FINALIZER]
            if wanted != list(app["metadata"].get("finalizers") or []):
                await self.kube.set_finalizers(APPS, app, wanted)
            return
        await self.write_status(APPS, app, status.application_status(app, None, None, cluster_missing=True))

    async def orphan_deployment(self, sdep: Obj) -> None:
        """A ServeDeployment whose application does not exist (or has no cluster)."""
        await self.write_status(DEPLOYMENTS, sdep, status.deployment_status(sdep, None, None))
