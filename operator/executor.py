"""The act step of a round: performs a Plan's actions in order, records metrics and Events, and feeds every
write's response back into the store, so the next round sees its own writes before their watch events arrive.

It decides nothing: what to write and when is in the actions (a Submit carries the status record to write once
Serve accepts the config). An action that raises stops the round there (the order is the planner's, see
`planner`); the loop retries with backoff from a fresh snapshot. Serve's refusal or an unreachable dashboard is
no exception: it is counted, and the round goes on.
"""

from __future__ import annotations

import base64
import copy
import logging
import secrets
import time
from dataclasses import dataclass, field

from . import actions, metrics, objects, status
from .actions import Action, AdoptHead, Apply, CreatePod, DeletePod, LabelPod, SetFinalizers, Submit, WriteStatus
from .api.kinds import CLUSTERS, PODS, SECRETS
from .cache import Key, Store
from .clients.dashboard import DashboardError, DashboardRejected, DashboardUnauthorized
from .clients.dashboards import DashboardPool, timed
from .clients.kube import Kube, KubeError
from .manifests import auth
from .objects import Obj
from .observe import cluster_token
from .snapshot import Rejection

log = logging.getLogger(__name__)


CONFLICT_RETRY_S = 60.0


@dataclass
class ClusterMemory:
    """What a cluster's loop remembers between rounds; only ever an optimisation, never the truth."""

    rejection: Rejection | None = None
    composed_since: dict[str, float] = field(default_factory=dict)
    """When each composed config hash was first planned: the start of the change-to-applied latency."""
    conflicts: dict[tuple[str, str], float] = field(default_factory=dict)
    """(plural, name) -> when a create found the name taken by an object the store does not hold (not labelled
    serveplane's): someone else's. Tried again after CONFLICT_RETRY_S, in case it went."""
    reported: set[tuple[str, str]] = field(default_factory=set)
    """Conflicts already told in an Event: one Warning per name until it is resolved."""

    def current_conflicts(self, now: float) -> frozenset[tuple[str, str]]:
        for key in [k for k, since in self.conflicts.items() if now - since >= CONFLICT_RETRY_S]:
            del self.conflicts[key]
        return frozenset(self.conflicts)


class Executor:
    def __init__(self, kube: Kube, store: Store, dashboards: DashboardPool) -> None:
        self.kube = kube
        self.store = store
        self.dashboards = dashboards

    def _keep(self, kind: str, obj: Obj | None) -> None:
        if obj is not None:
            self.store.put(kind, obj)

    async def run(self, key: Key, actions: tuple[Action, ...], memory: ClusterMemory) -> bool:
        """Do the actions in order; True when a Serve config was accepted (the next round should follow at once)."""
        submitted = False
        for action in actions:
            submitted = await self._do(key, action, memory) or submitted
        return submitted

    async def _do(self, key: Key, action: Action, memory: ClusterMemory) -> bool:
        namespace, name = key
        cluster = self.store.get(CLUSTERS, namespace, name)
        match action:
            case CreatePod(pod=pod):
                self._keep(PODS, await self.kube.create_pod(pod))
                metrics.POD_ACTIONS.labels("create").inc()
                await self._event(cluster, "Normal", "PodCreated", f"created Ray pod {objects.name(pod)}")
            case DeletePod(name=pod_name, why=why):
                self._keep(PODS, await self.kube.delete_pod(namespace, pod_name))
                metrics.POD_ACTIONS.labels("delete").inc()
                await self._event(cluster, "Normal", "PodDeleted", f"deleted Ray pod {pod_name}: {why}")
            case LabelPod(name=pod_name, labels=labels):
                self._keep(PODS, await self.kube.label_pod(namespace, pod_name, labels))
            case Apply(kind=kind, obj=obj):
                self._keep(kind, await self.kube.apply(kind, obj))
            case actions.Create(kind=kind, obj=obj):
                await self._create(cluster, kind, obj, memory)
            case actions.DeleteOwned(kind=kind, name=obj_name, uid=uid):
                await self.kube.delete(kind, namespace, obj_name, uid)
                gone = self.store.get(kind, namespace, obj_name)
                if gone is not None:
                    self.store.remove(kind, gone)
            case actions.CreateSecret(secret=secret):
                await self._create_token_secret(cluster, secret, memory)
            case SetFinalizers(kind=kind, name=obj_name, finalizers=finalizers, resource_version=version):
                self._keep(kind, await self.kube.set_finalizers(kind, namespace, obj_name, list(finalizers), version))
            case WriteStatus(kind=kind, name=obj_name, patch=patch):
                self._keep(kind, await self.kube.patch_custom_status(kind, namespace, obj_name, patch))
            case Submit():
                return await self._submit(key, action, memory)
            case actions.PostEvent(type=kind, reason=reason, message=message):
                await self._event(cluster, kind, reason, message)
            case AdoptHead(record=record):
                await self._record(namespace, record)
                await self._event(
                    cluster, "Normal", "ServeRecovered",
                    "Serve came back on the new head from the GCS's state in Redis; nothing was resubmitted",
                )
        return False

    async def _create(self, cluster: Obj | None, kind: str, obj: Obj, memory: ClusterMemory) -> None:
        """POST an owned object; a namesake someone else made (409) is left alone, remembered and reported once."""
        created = await self.kube.create(kind, obj)
        key = (kind, objects.name(obj))
        if created is not None:
            self._keep(kind, created)
            memory.conflicts.pop(key, None)
            memory.reported.discard(key)
            return
        await self._conflict(cluster, key, memory)

    async def _conflict(self, cluster: Obj | None, key: tuple[str, str], memory: ClusterMemory) -> None:
        memory.conflicts[key] = time.monotonic()
        if key not in memory.reported:
            memory.reported.add(key)
            await self._event(cluster, "Warning", "NameTaken", status.name_taken(*key))

    async def _create_token_secret(self, cluster: Obj | None, secret: Obj, memory: ClusterMemory) -> None:
        """Create the token Secret with a new random token (Ray's own format: 32 random bytes, hex). The token
        goes only into the request's body and the store: never into a log line, an Event or an action."""
        wanted = copy.deepcopy(secret)
        wanted["data"] = {auth.TOKEN_KEY: base64.b64encode(secrets.token_hex(32).encode()).decode()}
        created = await self.kube.create(SECRETS, wanted)
        name = secret["metadata"]["name"]
        if created is None:
            # Someone else's Secret by that name (or the namespace is going): never read, never replaced.
            await self._conflict(cluster, (SECRETS, name), memory)
            return
        self._keep(SECRETS, created)
        await self._event(cluster, "Normal", "TokenCreated", f"created Ray auth token Secret {name}")

    async def _event(self, obj: Obj | None, kind: str, reason: str, message: str) -> None:
        """Events tell people what happened; one that cannot be posted must not fail the round."""
        if obj is None:
            return
        try:
            await self.kube.post_event(obj, kind, reason, message)
        except (KubeError, OSError, TimeoutError) as error:
            log.warning("could not post Event %s on %s: %s", reason, objects.name(obj), error)

    async def _submit(self, key: Key, action: Submit, memory: ClusterMemory) -> bool:
        namespace, name = key
        cluster = self.store.get(CLUSTERS, namespace, name)
        token = cluster_token(self.store, namespace, name)
        client = await self.dashboards.for_head(namespace, name, action.generation, action.head_ip, token)
        try:
            await timed("PUT", client.put_applications(action.config))
        except DashboardUnauthorized as error:
            # Not Serve's verdict on the config: the head runs with another token (a rotation under way).
            metrics.SUBMISSIONS.labels(action.reason, "error").inc()
            log.warning("ServeCluster %s/%s: the head refused the operator's token: %s", namespace, name, error)
            return False
        except DashboardRejected as error:
            memory.rejection = Rejection(action.config_hash, error.message)
            metrics.SUBMISSIONS.labels(action.reason, "rejected").inc()
            await self._event(cluster, "Warning", "ConfigRejected", f"Serve refused the config: {error.message[:500]}")
            return True
        except DashboardError as error:
            metrics.SUBMISSIONS.labels(action.reason, "error").inc()
            log.warning("ServeCluster %s/%s: submitting the Serve config failed: %s", namespace, name, error)
            return False
        metrics.SUBMISSIONS.labels(action.reason, "applied").inc()
        # Record at once: if the operator stops right here, its successor must not submit again.
        await self._record(namespace, action.record)
        since = memory.composed_since.pop(action.config_hash, None)
        if since is not None:
            metrics.SPEC_TO_APPLIED_SECONDS.observe(time.monotonic() - since)
        memory.composed_since.clear()
        memory.rejection = None
        names = ", ".join(app["name"] for app in action.config["applications"])
        await self._event(
            cluster,
            "Normal",
            "ConfigApplied",
            f"submitted Serve config {action.config_hash} ({action.reason}): {names}",
        )
        return True

    async def _record(self, namespace: str, record: WriteStatus) -> None:
        """Write a status record the planner made; a head recovery it records is counted by how it went."""
        written = await self.kube.patch_custom_status(record.kind, namespace, record.name, record.patch)
        self._keep(record.kind, written)
        how = (record.patch.get("lastHeadRecovery") or {}).get("how")
        if how:
            metrics.HEAD_RECOVERIES.labels(how).inc()
