"""PURE: serveplane's finalizer on ServeApplications: an application's resource goes only once Serve dropped it."""

from __future__ import annotations

from . import objects
from .objects import Obj

FINALIZER = "serveplane.dev/serve-cleanup"


def finalizers_to_set(app: Obj, serve_apps: set[str] | None) -> list[str] | None:
    """The finalizers an application should have now, or None when they are right as they are.

    A live application gets serveplane's finalizer; a deleted one loses it once Serve no longer lists it, so
    the resource goes only after its application has left Serve.
    """
    current = list(app["metadata"].get("finalizers") or [])
    if not objects.is_deleting(app):
        return None if FINALIZER in current else current + [FINALIZER]
    if FINALIZER in current and serve_apps is not None and objects.name(app) not in serve_apps:
        return [f for f in current if f != FINALIZER]
    return None
