"""PURE: the proxy labels by which the serve Service selects the pods whose Serve proxy may take traffic."""

from __future__ import annotations

from . import objects
from .manifests import common
from .objects import Obj
from .podfacts import pod_ready
from .servereport import ServeReport


def proxy_labels(pods: list[Obj], serve: ServeReport | None) -> dict[str, dict[str, str | None]]:
    """Pod name -> the proxy labels to set on it (a None value removes one), only where they differ from now.

    A pod gets the proxy label (and the label naming its proxy's actor) when Serve reports its proxy HEALTHY, and
    loses it when the proxy is reported in any other state or not at all, except one: the very proxy actor that
    was healthy, reported STARTING, keeps its pod as it is. That is a restarted controller (a new head recovering
    it from the GCS) re-discovering a proxy that served all along; a new proxy actor (its node's Ray restarted)
    serves only once HEALTHY. A pod that is not Ready loses the labels at once, report or not: its proxy may be
    gone with its Ray (a crash restarts the container), and once Ready again it must not get traffic before Serve
    reports a proxy there. Otherwise, with no report from Serve, labels stay as they are. A report without proxies
    is no report either: Serve's controller is not running.
    """
    unlabelled: dict[str, str | None] = {common.PROXY_LABEL: None, common.PROXY_ACTOR_LABEL: None}
    reported = {p.node_ip: p for p in serve.proxies.values()} if serve and serve.proxies else None
    changes: dict[str, dict[str, str | None]] = {}
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        labels = pod["metadata"].get("labels") or {}
        current = {key: labels.get(key) for key in (common.PROXY_LABEL, common.PROXY_ACTOR_LABEL)}
        if reported is None and pod_ready(pod):
            continue
        proxy = reported.get(ip) if reported is not None and ip and pod_ready(pod) else None
        state, actor = (proxy.status, proxy.actor_id) if proxy else (None, None)
        if state == "HEALTHY":
            wanted: dict[str, str | None] = {common.PROXY_LABEL: common.PROXY_HEALTHY, common.PROXY_ACTOR_LABEL: actor}
        elif state == "STARTING" and actor and actor == current[common.PROXY_ACTOR_LABEL]:
            wanted = current
        else:
            wanted = unlabelled
        if wanted != current:
            changes[objects.name(pod)] = wanted
    return changes


def withdrawn(pods: list[Obj]) -> dict[str, dict[str, str | None]]:
    """The proxy labels to remove so that these pods take no traffic, whatever their proxies report."""
    keys = (common.PROXY_LABEL, common.PROXY_ACTOR_LABEL)
    return {
        objects.name(pod): {key: None for key in keys}
        for pod in pods
        if any(key in (pod["metadata"].get("labels") or {}) for key in keys)
    }
