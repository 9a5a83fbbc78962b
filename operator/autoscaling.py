"""PURE: how many worker pods each group runs, and which ones, when Ray's autoscaler sizes the groups.

Ray's autoscaler (beside the head, serveplane.runtime.autoscaler) writes what it asks for into
status.autoscaler, never into the spec: a GitOps tool syncing the spec would revert it. The operator runs
clamp(minReplicas, maxReplicas, asked) workers per group, with `replicas` standing for the ask until the autoscaler
has made one; an edit of minReplicas or maxReplicas in Git takes effect at the next round. A pod the autoscaler
chose to remove (an idle one it drained) is the one that goes, never another.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from .api.cluster import ServeClusterSpec, WorkerGroupSpec
from .manifests import common
from .objects import Obj


def clamp(low: int, high: int, value: int) -> int:
    """`value` within [low, high]; low wins should the bounds cross (the API refuses that)."""
    return max(low, min(high, value))


def requests(spec: ServeClusterSpec, autoscaler: Mapping[str, Any] | None) -> dict[str, Any]:
    """The autoscaler's per-group asks while autoscaling is on. After an upgrade they stand, though made by the
    old generation's autoscaler, until the new one asks: a new generation starts as large as the old one."""
    if not spec.autoscaling.enabled or not autoscaler:
        return {}
    return dict(autoscaler.get("groups") or {})


def asked(group: WorkerGroupSpec, requested: Mapping[str, Any]) -> int | None:
    found = requested.get(group.name)
    return int(found["replicas"]) if isinstance(found, Mapping) and "replicas" in found else None


def desired(spec: ServeClusterSpec, requested: Mapping[str, Any]) -> dict[str, int]:
    """Worker pods per group: its replicas, or with autoscaling clamp(minReplicas, maxReplicas, the ask)."""
    counts: dict[str, int] = {}
    for group in spec.worker_groups:
        if not spec.autoscaling.enabled:
            counts[group.name] = group.replicas
            continue
        low, high = group.bounds
        ask = asked(group, requested)
        counts[group.name] = clamp(low, high, group.replicas if ask is None else ask)
    return counts


def doomed(autoscaler: Mapping[str, Any] | None, generation: str) -> set[str]:
    """The pods the autoscaler of `generation` chose to remove, in every group."""
    if not autoscaler or autoscaler.get("generation") != generation:
        return set()
    return {
        str(pod)
        for found in (autoscaler.get("groups") or {}).values()
        if isinstance(found, Mapping)
        for pod in found.get("workersToDelete") or ()
    }


def why_deleted(pod: str, chosen: set[str], why: str) -> str:
    return "Ray's autoscaler chose it: idle, drained through Ray" if pod in chosen else why


def worker_index(pod_name: str, cluster: str, generation: str, group: str) -> int | None:
    """The index in a worker pod's name (`<cluster>-<generation>-worker-<group>-<index>`), None for another's."""
    prefix = common.worker_pod_name(cluster, generation, group, 0)[:-1]
    rest = pod_name[len(prefix):] if pod_name.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


def pick(count: int, present: Iterable[int], chosen: Iterable[int], terminating: Iterable[int] = ()) -> list[int]:
    """Which indices of a group run `count` workers: those of its pods now, the ones the autoscaler chose to
    remove last (so they go first when the count drops, and only then), terminating ones after running ones, the
    lowest first; new ones take the lowest free index. A terminating pod keeps its index unless chosen: a pod
    replaced in place comes back under its name once gone, with no pod started beside it."""
    doomed_ones, going = set(chosen), set(terminating)
    keep = sorted(set(present), key=lambda i: (i in doomed_ones, i in going, i))[:count]
    used = set(keep)
    free = (i for i in itertools.count() if i not in used)
    keep += list(itertools.islice(free, count - len(keep)))
    return sorted(keep)


def workers(
    *,
    spec: ServeClusterSpec,
    cluster: str,
    generation: str,
    pods: Iterable[Obj],
    requested: Mapping[str, Any],
    chosen: set[str],
) -> dict[str, list[int]]:
    """Per group, the indices of the worker pods a generation runs, given its pods now and those the autoscaler
    chose to remove."""
    counts = desired(spec, requested)
    out: dict[str, list[int]] = {}
    pods = list(pods)
    for group in spec.worker_groups:
        present: list[int] = []
        remove: list[int] = []
        going: list[int] = []
        for pod in pods:
            name = pod["metadata"]["name"]
            index = worker_index(name, cluster, generation, group.name)
            if index is None:
                continue
            present.append(index)
            if name in chosen:
                remove.append(index)
            if pod["metadata"].get("deletionTimestamp"):
                going.append(index)
        out[group.name] = pick(counts[group.name], present, remove, going)
    return out


def group_status(
    spec: ServeClusterSpec,
    requested: Mapping[str, Any],
    ready: Mapping[str, int],
    resources: Mapping[str, dict[str, float]],
) -> list[dict[str, Any]]:
    """status.workerGroups: per group, desired and ready workers and, with autoscaling, what the autoscaler reads
    (its ask, the bounds, the Ray resources of a pod: `resources`)."""
    counts = desired(spec, requested)
    entries = []
    for group in spec.worker_groups:
        entry: dict[str, Any] = {"name": group.name, "desired": counts[group.name], "running": ready.get(group.name, 0)}
        if spec.autoscaling.enabled:
            ask = asked(group, requested)
            low, high = group.bounds
            entry.update({
                "requested": group.replicas if ask is None else ask, "minReplicas": low, "maxReplicas": high,
                "rayResources": dict(resources.get(group.name) or {}),
            })
        entries.append(entry)
    return entries


def scale_events(
    before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]], decision: str | None
) -> list[tuple[str, str]]:
    """(reason, message) of an Event for each group whose desired count changed: ScaledUp or ScaledDown, with the
    autoscaler's last decision when it made one."""
    old = {str(g.get("name")): int(g.get("desired", 0)) for g in before}
    events = []
    for group in after:
        name, now = str(group["name"]), int(group["desired"])
        if name not in old or old[name] == now:
            continue
        why = f" (autoscaler: {decision})" if decision and group.get("requested") is not None else ""
        reason = "ScaledUp" if now > old[name] else "ScaledDown"
        events.append((reason, f"worker group {name}: {old[name]} -> {now} pods{why}"))
    return events
