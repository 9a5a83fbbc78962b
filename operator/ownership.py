"""PURE: what is serveplane's to change: an object is a ServeCluster's only when it carries that cluster's controller
ownerReference (its UID), never by its labels or name alone; and whether a live owned object already holds what
the operator wants of it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .manifests import common
from .objects import Obj


def is_ours(obj: Obj, uid: str) -> bool:
    """Whether the object's controller is the ServeCluster with this UID (or it names that UID as its owner, for a
    dependent that cannot carry an ownerReference)."""
    meta = obj.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    if any(isinstance(r, dict) and r.get("controller") is True and r.get("uid") == uid for r in refs):
        return True
    return bool((meta.get("annotations") or {}).get(common.OWNER_UID_ANNOTATION) == uid)


def split(objs: Iterable[Obj], uid: str) -> tuple[list[Obj], list[Obj]]:
    """(ours, theirs): objects carrying serveplane's labels split by whether this cluster really owns them."""
    ours: list[Obj] = []
    theirs: list[Obj] = []
    for obj in objs:
        (ours if is_ours(obj, uid) else theirs).append(obj)
    return ours, theirs


def covers(live: Any, wanted: Any) -> bool:
    """Whether the live object already holds every field of `wanted` with its value.

    Fields the server defaults or others set (a Service's clusterIP, a port's protocol, foreign labels) are
    not the operator's to compare; a list must match item by item, as server-side apply would make it.
    """
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(k in live and covers(live[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(live, list) and len(live) == len(wanted) and all(map(covers, live, wanted))
    return bool(live == wanted)
