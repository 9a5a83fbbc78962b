"""PURE: a round's view of an upgrade between generations, and the upgrade's part of the status and its Events.

The step itself is decided in `generations.upgrade_step`; this module feeds it from the round and turns its result
into the status record (`status.upgrade`, `activeGeneration`, `generations`) a restarted operator resumes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .. import generations, objects, podfacts, proxies, status
from ..actions import Action, DeletePod, PostEvent
from ..api.cluster import GenerationStatus, UpgradeStatus, UpgradeType
from ..compose import Composition
from ..compose import config_hash as compose_hash
from ..objects import Obj
from ..servereport import ServeReport

if TYPE_CHECKING:
    from .context import Base


@dataclass(frozen=True)
class UpgradeView:
    """The generations of a round and the upgrade step between them."""

    roles: generations.Roles
    step: generations.Step | None
    """None: no upgrade is under way."""
    pending_pods: list[Obj]
    pending_head: Obj | None

    @property
    def capacity(self) -> dict[str, float | None]:
        return self.step.capacity if self.step else {}


def same_apps(applied_apps: str | None, composition: Composition) -> bool:
    """The pending head runs the applications' config as composed now (its capacity may differ)."""
    return bool(applied_apps == apps_hash(composition))


def apps_hash(composition: Composition) -> str:
    return compose_hash({"applications": composition.config["applications"]})


def upgrade_view(b: Base, composition: Composition, serve: ServeReport | None) -> UpgradeView:
    roles = b.roles
    if roles.pending is None:
        return UpgradeView(roles, None, [], None)
    pending_pods, active_pods = b.pods_of(roles.pending), b.pods_of(roles.active)
    pending_head = podfacts.live_head(pending_pods, roles.pending)
    record = b.stored.upgrade
    mine = record is not None and record.generation == roles.pending
    pending_report = b.snap.reports.get(roles.pending) if pending_head else None
    pending_applied = bool(
        mine and record and pending_head and record.applied_head_uid == objects.uid(pending_head)
        and same_apps(record.applied_apps, composition)
    )
    joining = proxies.proxy_labels(pending_pods, pending_report) if pending_report else {}
    since = (record.step_since or record.started_at) if mine and record else b.now
    step = generations.upgrade_step(
        strategy=b.spec.upgrade_strategy,
        desired=b.wanted(roles.pending),
        active=generations.Generation(active_pods, serve, b.stored.applied_config_hash is not None),
        pending=generations.Generation(pending_pods, pending_report, pending_applied),
        all_pods=len(b.ray_pods),
        apps=set(composition.app_names),
        failure=record.failure if mine and record else None,
        since_step=since,
        now=b.now,
        labels_settled=not joining,
    )
    return UpgradeView(roles, step, pending_pods, pending_head)


def retire(b: Base) -> list[Action]:
    """Retiring generations' pods go: at once, or BlueGreen's old one after its delay."""
    record = b.stored.upgrade
    actions: list[Action] = []
    for generation in b.roles.retiring:
        keep_until = None
        if record is not None and record.retired == generation and record.retired_at is not None:
            keep_until = record.retired_at + timedelta(seconds=b.spec.upgrade_strategy.old_generation_delay_seconds)
        gone = generations.retire(b.pods_of(generation), keep_until=keep_until, now=b.now)
        actions += [DeletePod(pod_name, why) for pod_name, why in gone.items()]
    return actions


def upgrade_record(b: Base, view: UpgradeView) -> dict[str, Any]:
    """status.upgrade as this round leaves it (the wire of UpgradeStatus; empty: no upgrade)."""
    roles, step = view.roles, view.step
    record = b.stored.upgrade.to_wire() if b.stored.upgrade else {}
    if step is not None and step.promote:
        # Traffic is on the new generation: it becomes the active one, with what its head accepted.
        record.update({"step": step.step, "failure": None})
        if b.spec.upgrade_strategy.type is UpgradeType.BLUE_GREEN:
            record.update({"retired": roles.active, "retiredAt": status.wire_time(b.now)})
    elif step is not None and roles.pending is not None:
        if record.get("generation") != roles.pending:
            record = {
                "generation": roles.pending, "strategy": b.spec.upgrade_strategy.type.value,
                "startedAt": status.wire_time(b.now),
            }
        if record.get("step") != step.step:
            record["stepSince"] = status.wire_time(b.now)
        record.update({"step": step.step, "failure": step.failure})
    elif not roles.retiring:
        record = {}
    else:
        record["step"] = "Removing the old generation's pods"
    return {k: v for k, v in record.items() if v is not None}


def _entry(b: Base, view: UpgradeView, generation: str, total: int) -> GenerationStatus:
    roles = view.roles
    mine = b.pods_of(generation)
    role = "Active" if generation == roles.active else "Pending" if generation == roles.pending else "Retiring"
    head = podfacts.live_head(mine, generation)
    cap = view.capacity.get("active" if role == "Active" else "pending") if role != "Retiring" else None
    serving = sum(1 for p in mine if generations.serving(p))
    return GenerationStatus(
        name=generation or "legacy", role=role, head_pod=objects.name(head) if head else None,
        ready_pods=sum(1 for p in mine if podfacts.pod_ready(p)), serving_pods=serving, target_capacity=cap,
        traffic_share=round(100.0 * serving / total, 2) if total else 0,
    )


def generation_status(b: Base, view: UpgradeView) -> dict[str, Any]:
    """activeGeneration, generations and upgrade, as the status carries them."""
    step = view.step
    record = upgrade_record(b, view)
    promoted = step is not None and step.promote
    active = (view.roles.pending or view.roles.active) if promoted else view.roles.active
    total = sum(1 for p in b.ray_pods if generations.serving(p))
    present = sorted({podfacts.generation_of(p) for p in b.ray_pods} | {active})
    out: dict[str, Any] = {
        "activeGeneration": active,
        "generations": [_entry(b, view, g, total).to_wire() for g in present],
        "upgrade": record or None,
    }
    if promoted:
        out.update({key: record.get(key) for key in ("appliedConfigHash", "appliedHeadUid")})
    return out


def events(stored: UpgradeStatus | None, wire: dict[str, Any]) -> list[Action]:
    """An Event for each step of an upgrade, when the status records a new one."""
    before, after = stored.to_wire() if stored else {}, wire.get("upgrade") or {}
    if not after or after.get("step") == before.get("step"):
        if before and not after:
            return [PostEvent("Normal", "UpgradeDone", f"generation {wire.get('activeGeneration')} runs the cluster")]
        return []
    kind = "Warning" if after.get("failure") else "Normal"
    message = f"generation {after.get('generation')}: {after['step']}"
    if after.get("failure"):
        message += f": {after['failure']}"
    return [PostEvent(kind, "Upgrading", message)]
