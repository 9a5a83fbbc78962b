"""PURE: the frozen context of one round for a live ServeCluster, built once from the Snapshot; every stage reads
it and none changes it.

It is built in two steps. `Base` holds what follows from the store alone (the spec, the typed stored status, the
generations' roles, the token gate, the autoscaler's asks); `Round` adds what needs Serve's report (the live
head, the composition, the upgrade step, the config to submit, whether the head changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import autoscaling, gcsft, generations, objects, podfacts, status
from ..api.cluster import AuthMode, ServeClusterSpec, ServeClusterStatus
from ..compose import Composition, compose, serve_view, start_key, with_capacity
from ..compose import config_hash as compose_hash
from ..manifests import auth, autoscaler, cleanup, netpol, pods
from ..objects import Obj
from ..servereport import ServeReport
from ..snapshot import Snapshot
from .upgrading import UpgradeView, upgrade_view


@dataclass(frozen=True)
class Settings:
    """The operator's settings a round needs: the default Ray image, who the NetworkPolicy lets in besides the
    cluster's own pods, and the ClusterRole of Ray's autoscaler."""

    image: str
    access: netpol.Access = field(default_factory=netpol.Access)
    autoscaler_role: str = autoscaler.DEFAULT_CLUSTER_ROLE


@dataclass(frozen=True)
class TokenGate:
    """The token the Ray pods must carry (its digest), and whether they wait for the Secret to exist."""

    digest: str | None
    wait: bool


def token_gate(snap: Snapshot, spec: ServeClusterSpec) -> TokenGate:
    secret = snap.token_secret
    if spec.auth.mode is not AuthMode.TOKEN:
        return TokenGate(None, False)
    if secret is None or secret.digest is None:
        return TokenGate(None, True)
    return TokenGate(secret.digest, False)


@dataclass(frozen=True)
class Base:
    """What a round knows of a live, valid ServeCluster from the store alone."""

    snap: Snapshot
    settings: Settings
    cluster: Obj
    spec: ServeClusterSpec
    stored: ServeClusterStatus
    """The stored status, parsed once."""
    autoscaler_record: dict[str, Any] | None
    """status.autoscaler as Ray's autoscaler wrote it: its own, passed through as it is."""
    now: datetime
    ray_pods: list[Obj]
    """The cluster's Ray pods (the Redis clean-up pod aside), every generation."""
    roles: generations.Roles
    token: TokenGate
    requested: dict[str, Any]
    """The autoscaler's asks per group."""
    chosen: set[str]
    """The pods the autoscaler chose to remove."""

    @property
    def name(self) -> str:
        return self.snap.name

    @property
    def namespace(self) -> str:
        return self.snap.namespace

    @property
    def uid(self) -> str:
        return objects.uid(self.cluster)

    @property
    def image(self) -> str:
        return self.settings.image

    def pods_of(self, generation: str) -> list[Obj]:
        return [p for p in self.ray_pods if podfacts.generation_of(p) == generation]

    def wanted(self, generation: str) -> list[Obj]:
        """The pods a generation should have, head first, with the token's digest."""
        indices = autoscaling.workers(
            spec=self.spec, cluster=self.name, generation=generation, pods=self.pods_of(generation),
            requested=self.requested, chosen=self.chosen,
        )
        built = pods.ray_pods(
            cluster=self.name, namespace=self.namespace, uid=self.uid, spec=self.spec, image=self.image,
            generation=generation, workers=indices,
        )
        if self.token.digest is not None:
            for pod in built:
                pod["metadata"].setdefault("annotations", {})[auth.DIGEST_ANNOTATION] = self.token.digest
        return built


def base(snap: Snapshot, settings: Settings, cluster: Obj, spec: ServeClusterSpec) -> Base:
    ray_pods = [p for p in snap.pods if not cleanup.is_cleanup_pod(p)]
    stored = status.read(ServeClusterStatus, objects.status(cluster))
    record = objects.status(cluster).get("autoscaler")
    target = pods.generation_name(
        cluster=snap.name, namespace=snap.namespace, uid=objects.uid(cluster), spec=spec, image=settings.image,
        serve_start=start_key(spec, list(snap.apps)),
    )
    roles = generations.roles(target=target, stored_active=stored.active_generation, pods=ray_pods)
    return Base(
        snap=snap, settings=settings, cluster=cluster, spec=spec, stored=stored, autoscaler_record=record, now=snap.now,
        ray_pods=ray_pods, roles=roles, token=token_gate(snap, spec),
        requested=autoscaling.requests(spec, record), chosen=autoscaling.doomed(record, roles.active),
    )


@dataclass(frozen=True)
class Round:
    """A round's whole context: the Base, and what Serve's report adds."""

    base: Base
    active_pods: list[Obj]
    desired: list[Obj]
    """The active generation's wanted pods."""
    ready_pods: list[Obj]
    """The active generation's pods that are Ready and not going."""
    head: Obj | None
    """The active generation's live head."""
    head_ip: str | None
    serve: ServeReport | None
    """The active generation's Serve report, while its head has an IP."""
    composition: Composition
    upgrade: UpgradeView
    config: dict[str, Any]
    """The composed Serve config with the active generation's capacity: what its head should run."""
    config_digest: str
    applied: dict[str, Any]
    """appliedConfigHash, appliedHeadUid and lastHeadRecovery as the status records them."""
    rejected: str | None
    """The hash of the config Serve refused last, if any."""
    recovery: gcsft.HeadChange | None
    view: status.ClusterView

    @property
    def live_generations(self) -> set[str]:
        roles = self.base.roles
        pending = {roles.pending} if roles.pending else set()
        return {podfacts.generation_of(p) for p in self.base.ray_pods} | {roles.active} | pending


def _applied(stored: ServeClusterStatus) -> dict[str, Any]:
    recovery = stored.last_head_recovery.to_wire() if stored.last_head_recovery else None
    return {
        "appliedConfigHash": stored.applied_config_hash, "appliedHeadUid": stored.applied_head_uid,
        "lastHeadRecovery": recovery,
    }


def build(b: Base) -> Round:
    """The round's context, from its Base and Serve's reports."""
    snap, spec = b.snap, b.spec
    active_pods = b.pods_of(b.roles.active)
    head = podfacts.live_head(active_pods, b.roles.active)
    head_ip = ((head or {}).get("status") or {}).get("podIP") or None
    serve = snap.reports.get(b.roles.active) if head_ip else None
    composition = compose(spec, list(snap.apps), list(snap.deployments), serve_view(serve, list(snap.apps)))
    upgrade = upgrade_view(b, composition, serve)
    config = with_capacity(composition.config, upgrade.capacity.get("active"))
    digest = compose_hash(config)
    applied = _applied(b.stored)
    recovery = None
    if head is not None and head_ip:
        recovery = gcsft.head_change(
            spec=spec, head=head, applied=applied, config_hash=digest, composed_apps=set(composition.app_names),
            serve=serve, now=b.now,
        )
    rejected = snap.rejection.config_hash if snap.rejection else None
    desired = b.wanted(b.roles.active)
    ready = [p for p in active_pods if podfacts.pod_ready(p) and not objects.is_deleting(p)]
    return Round(
        base=b, active_pods=active_pods, desired=desired, ready_pods=ready, head=head, head_ip=head_ip, serve=serve,
        composition=composition, upgrade=upgrade, config=config, config_digest=digest, applied=applied,
        rejected=rejected, recovery=recovery,
        view=_view(b, ready, desired, head, head_ip, serve, rejected=rejected, digest=digest),
    )


def _view(
    b: Base, ready: list[Obj], desired: list[Obj], head: Obj | None, head_ip: str | None,
    serve: ServeReport | None, *, rejected: str | None, digest: str,
) -> status.ClusterView:
    snap = b.snap
    return status.ClusterView(
        name=b.name,
        namespace=b.namespace,
        generation=objects.generation(b.cluster),
        desired_nodes=len(desired),
        ready_nodes=len(ready),
        head_pod=objects.name(head) if head else None,
        head_ready=bool(head and podfacts.pod_ready(head)),
        serve=serve,
        serve_error=snap.report_errors.get(b.roles.active) if head_ip else "the head pod has no IP yet",
        rejected=snap.rejection.message if snap.rejection and rejected == digest else None,
        http_port=b.spec.serve.http_port,
        foreign=tuple(sorted(snap.foreign)),
    )
