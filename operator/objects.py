"""Read-only accessors for Kubernetes objects as the API server returns them (plain dicts)."""
from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def namespace(obj: Obj) -> str:
    return str(obj["metadata"].get("namespace") or "default")


def generation(obj: Obj) -> int:
    return int(obj["metadata"].get("generation") or 0)


def uid(obj: Obj) -> str:
    return str(obj["metadata"].get("uid") or "")


def is_deleting(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def age_key(obj: Obj) -> tuple[str, str]:
    """Oldest first, name as tie-break: who came first keeps a contested route prefix or deployment."""
    return (str(obj["metadata"].get("creationTimestamp") or ""), name(obj))


def spec(obj: Obj) -> dict[str, Any]:
    return dict(obj.get("spec") or {})


def status(obj: Obj) -> dict[str, Any]:
    return dict(obj.get("status") or {})
