"""PURE: a ServeCluster's podTemplate merged into a Ray pod the operator built, the head's and every worker group's.

Called by pods.py. The rules are the ones `kubectl explain` shows for podTemplate (api/cluster.py,
POD_TEMPLATE_SPEC_DOC): objects merge key by key with the template winning, tolerations are appended, named
lists merge by name, and the container named `ray` merges into the Ray container rather than replacing the list.
"""
from __future__ import annotations

import copy
from typing import Any

from ..api.cluster import POD_SPEC_NAMED_LISTS, RAY_CONTAINER, RAY_CONTAINER_KEYED_LISTS, PodTemplate

# Labels under this prefix are the operator's: the store, the Services and the proxy label's traffic routing
# select on them, so a template cannot set them (a template's serveplane.dev/proxy=healthy would route traffic
# to a pod whose proxy Serve never reported).
OPERATOR_LABEL_PREFIX = "serveplane.dev/"
# Lists the template's entries are added to. The keyed lists (api/cluster.py: POD_SPEC_NAMED_LISTS,
# RAY_CONTAINER_KEYED_LISTS, checked there to hold objects) merge entry by entry instead.
_POD_APPENDED = frozenset({"tolerations"})
# Handlers are one-of (httpGet, exec, ...): merging two probes key by key could give one with two handlers.
_RAY_WHOLE = frozenset({"readinessProbe", "livenessProbe", "startupProbe", "lifecycle"})
# The runtime's contract (runtime/args.py): the operator's flags, from rayStartParams.
_RAY_OWNED = frozenset({"name", "command", "args"})


def _merge_objects(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_objects(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_keyed(base: list[dict[str, Any]], override: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Entries of `override` replace those of `base` with the same key, in place; the others are appended."""
    replacing = {item.get(key): item for item in override}
    merged = [copy.deepcopy(replacing.pop(item.get(key), item)) for item in base]
    return merged + [copy.deepcopy(item) for item in override if item.get(key) in replacing]


def _merge_ray_container(ray: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(ray)
    for field, value in override.items():
        if field in _RAY_OWNED:
            continue
        if field in RAY_CONTAINER_KEYED_LISTS:
            merged[field] = _merge_keyed(merged.get(field, []), value, RAY_CONTAINER_KEYED_LISTS[field])
        elif field not in _RAY_WHOLE and isinstance(value, dict) and isinstance(merged.get(field), dict):
            merged[field] = _merge_objects(merged[field], value)
        else:
            merged[field] = copy.deepcopy(value)
    return merged


def _merge_containers(base: list[dict[str, Any]], override: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rays = [c for c in override if c.get("name") == RAY_CONTAINER]
    sidecars = [c for c in override if c.get("name") != RAY_CONTAINER]
    merged = _merge_keyed(base, sidecars, "name")
    for ray in rays:
        merged = [_merge_ray_container(c, ray) if c.get("name") == RAY_CONTAINER else c for c in merged]
    return merged


def _merge_spec(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for field, value in override.items():
        if field == "containers":
            merged[field] = _merge_containers(merged.get(field, []), value)
        elif field in POD_SPEC_NAMED_LISTS:
            merged[field] = _merge_keyed(merged.get(field, []), value, "name")
        elif field in _POD_APPENDED and isinstance(value, list):
            merged[field] = merged.get(field, []) + copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(merged.get(field), dict):
            merged[field] = _merge_objects(merged[field], value)
        else:
            merged[field] = copy.deepcopy(value)
    return merged


def merge(pod: dict[str, Any], template: PodTemplate | None) -> dict[str, Any]:
    """`pod` with `template` merged in; the operator's labels win, and neither argument is changed."""
    merged = copy.deepcopy(pod)
    if template is None:
        return merged
    meta = merged["metadata"]
    if template.metadata and template.metadata.labels:
        theirs = {k: v for k, v in template.metadata.labels.items() if not k.startswith(OPERATOR_LABEL_PREFIX)}
        meta["labels"] = {**theirs, **meta["labels"]}
    if template.metadata and template.metadata.annotations:
        meta["annotations"] = {**meta.get("annotations", {}), **template.metadata.annotations}
    if template.spec:
        merged["spec"] = _merge_spec(merged["spec"], template.spec)
    return merged
