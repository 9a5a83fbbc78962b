"""PURE: what a round of reconcile decided to do, as data. The planner returns them; the executor does them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .objects import Obj


@dataclass(frozen=True)
class CreatePod:
    pod: Obj


@dataclass(frozen=True)
class DeletePod:
    name: str
    why: str


@dataclass(frozen=True)
class Apply:
    """Server-side apply of an owned object (its controller reference is this cluster's) whose live version differs
    from the wanted one."""

    kind: str
    obj: Obj


@dataclass(frozen=True)
class Create:
    """Create an owned Service, Ingress, NetworkPolicy, ServiceAccount or RoleBinding that does not exist. Never an
    apply: a namesake someone else made (409) is left as it is and reported, never taken over."""

    kind: str
    obj: Obj


@dataclass(frozen=True)
class DeleteOwned:
    """An owned object the spec no longer wants goes: the Ingress (disabled, or nothing routed), the
    NetworkPolicy (disabled), the token Secret (auth disabled, or it holds no usable token)."""

    kind: str
    name: str
    uid: str | None = None
    """The UID of the object the decision was made on: the API server deletes it only if it is still that one."""


@dataclass(frozen=True)
class CreateSecret:
    """Create the cluster's token Secret. The action holds no data: the executor generates the token."""

    secret: Obj


@dataclass(frozen=True)
class LabelPod:
    name: str
    labels: dict[str, str | None]
    """A None value removes the label."""


@dataclass(frozen=True)
class SetFinalizers:
    kind: str
    name: str
    finalizers: tuple[str, ...]
    resource_version: str
    """The version the decision was made on: a concurrent change makes the write fail (409) and the round retry."""


@dataclass(frozen=True)
class PostEvent:
    """An Event on the ServeCluster: a step of an upgrade."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class WriteStatus:
    kind: str
    name: str
    patch: dict[str, Any]
    """A merge patch of the status subresource."""


@dataclass(frozen=True)
class Submit:
    """PUT the composed Serve config to the head; once Serve accepts it, write `record` (what the status records of
    it: its hash and the head's UID, on the cluster or in status.upgrade for an upgrade's new head)."""

    config: dict[str, Any]
    config_hash: str
    reason: str
    head_ip: str
    head_uid: str
    generation: str
    """The generation whose head this is."""
    record: WriteStatus
    """Written only after Serve accepted the config, before anything else."""

    @property
    def upgrade(self) -> bool:
        """To an upgrade's new head: what it accepted goes into status.upgrade."""
        return "upgrade" in self.record.patch


@dataclass(frozen=True)
class AdoptHead:
    """Serve came back by itself on a new head (GCS fault tolerance): write `record` (the head as the config's), with
    no PUT."""

    head_uid: str
    record: WriteStatus


Action = (
    CreatePod
    | DeletePod
    | Apply
    | Create
    | DeleteOwned
    | CreateSecret
    | LabelPod
    | SetFinalizers
    | Submit
    | AdoptHead
    | PostEvent
    | WriteStatus
)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    busy: bool = False
    """Something starts, deploys or fails: poll fast."""
    done: bool = False
    """No ServeCluster by this name: once the actions are done, the loop can end (events restart it)."""
    config_hash: str | None = None
    """The composed config's hash, for the change-to-applied latency metric."""
