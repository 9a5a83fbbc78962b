"""PURE: whether the composed Serve config must be PUT to a head now, and why."""

from __future__ import annotations

from typing import Any

from .servereport import ServeReport


def submit_reason(
    *,
    config_hash: str,
    head_uid: str,
    applied: dict[str, Any],
    composed_apps: set[str],
    serve_apps: set[str] | None,
    rejected_hash: str | None,
) -> str | None:
    """Why the composed config must be PUT now, or None when Serve already runs it.

    The hash and head UID live on the ServeCluster's status, so a restarted operator resubmits nothing, while a
    new head (Serve's state is gone with the old one) gets the config again.
    """
    if serve_apps is None:
        return None
    if rejected_hash == config_hash:
        return None
    if applied.get("appliedConfigHash") != config_hash:
        return "ConfigChanged"
    if applied.get("appliedHeadUid") != head_uid:
        return "HeadReplaced"
    if not composed_apps <= serve_apps:
        return "ServeLostApplications"
    return None


def serve_app_names(serve: ServeReport | None) -> set[str] | None:
    """The applications Serve reports (deleting ones included), or None when Serve could not be asked."""
    return None if serve is None else set(serve.applications)
