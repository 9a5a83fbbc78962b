"""PURE: what one round of a cluster loop observed, frozen, as the planner's only input."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .objects import Obj
from .servereport import ServeReport


@dataclass(frozen=True)
class Rejection:
    """Serve refused this exact config; it is not submitted again until the config changes."""

    config_hash: str
    message: str


@dataclass(frozen=True)
class TokenSecret:
    """The cluster's token Secret as the planner sees it: only the token's digest, never the token."""

    name: str
    digest: str | None
    """None: the Secret holds no usable token."""
    uid: str | None = None


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """One cluster loop's world: a ServeCluster (or its absence) and everything on it, plus Serve's report."""

    namespace: str
    name: str
    """The cluster's name; `cache.ORPHANS` for the loop of ServeDeployments whose application is missing."""
    cluster: Obj | None
    pods: tuple[Obj, ...] = ()
    services: dict[str, Obj] = field(default_factory=dict)
    """The cluster's own Services, by name."""
    ingresses: dict[str, Obj] = field(default_factory=dict)
    network_policies: dict[str, Obj] = field(default_factory=dict)
    autoscaler_access: dict[tuple[str, str], Obj] = field(default_factory=dict)
    """The autoscaler's ServiceAccount and RoleBinding, by (plural, name)."""
    token_secret: TokenSecret | None = None
    """The cluster's `<cluster>-ray-token` Secret, if the store has it."""
    apps: tuple[Obj, ...] = ()
    """The ServeApplications that name this cluster, deleted ones included."""
    deployments: tuple[Obj, ...] = ()
    """The ServeDeployments of those applications (for ORPHANS: those whose application does not exist)."""
    reports: dict[str, ServeReport | None] = field(default_factory=dict)
    """Per generation with a live head: its Serve's report, parsed (None: no answer, or none that parses)."""
    report_errors: dict[str, str] = field(default_factory=dict)
    """Per generation: why its dashboard gave no answer."""
    rejection: Rejection | None = None
    foreign: frozenset[tuple[str, str]] = frozenset()
    """(plural, name) of objects with the names this cluster's own would have that are not its own (no controller
    reference to its UID): someone else's, left as they are, and reported on the cluster."""
    now: datetime
    """When the round observed: new conditions' lastTransitionTime, an upgrade's timeout. The pure layer never reads
    the clock itself."""
