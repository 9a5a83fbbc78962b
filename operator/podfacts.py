"""PURE: what a Ray pod says about itself: ready, its generation, whether it is a live head, ended."""

from __future__ import annotations

from . import objects
from .manifests import auth, common
from .objects import Obj


def pod_ready(pod: Obj) -> bool:
    found = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    return bool(found and found[0].get("status") == "True")


def live_head(pods: tuple[Obj, ...] | list[Obj], generation: str) -> Obj | None:
    """A generation's head pod, unless it is being deleted (a terminating head is no head to talk to)."""
    return next(
        (
            p for p in pods
            if common.is_head(p) and generation_of(p) == generation and not objects.is_deleting(p)
        ),
        None,
    )


def generation_of(pod: Obj) -> str:
    """The generation a pod belongs to; pods made before generations existed have none (the legacy one, "")."""
    return str((pod["metadata"].get("labels") or {}).get(common.GENERATION_LABEL, ""))


def finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def token_digest(pod: Obj) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(auth.DIGEST_ANNOTATION)
