"""The operator's settings, read once from environment variables (the Helm chart sets them)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .manifests import autoscaler, netpol

T = TypeVar("T")


class SettingsError(ValueError):
    """An environment variable holds a value the operator cannot use; the message names it."""


def _read(env: dict[str, str], name: str, parse: Callable[[str], T], default: T, check: Callable[[T], bool]) -> T:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not valid (default: {default!r})") from None
    if not check(value):
        raise SettingsError(f"{name}={raw!r} is not valid (default: {default!r})")
    return value


@dataclass(frozen=True)
class Settings:
    default_image: str = "serveplane/runtime:0.1.0"
    """Ray plus serveplane's runtime (helm/Dockerfile.runtime); a plain Ray image lacks the pods' entrypoint."""
    poll_fast_s: float = 2.0
    """Poll interval while anything deploys, starts or fails."""
    poll_slow_s: float = 15.0
    """Poll interval while everything is steady."""
    dashboard_timeout_s: float = 10.0
    metrics_port: int = 8080
    health_port: int = 8081
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means the whole cluster."""
    log_level: str = "INFO"
    operator_namespace: str = netpol.Access.operator_namespace
    """Where the operator's pods run: the Ray pods' NetworkPolicy lets them reach Ray's ports."""
    operator_pod_labels: dict[str, str] = field(default_factory=lambda: netpol.Access().operator_pod_labels)
    """Labels of the operator's pods (a JSON object), for the same NetworkPolicy rule."""
    ray_metrics_sources: tuple[dict[str, Any], ...] = ()
    """NetworkPolicyPeers (a JSON list) that may scrape the Ray pods' metrics port, e.g. Prometheus's namespace."""
    autoscaler_cluster_role: str = autoscaler.DEFAULT_CLUSTER_ROLE
    """The chart's ClusterRole for Ray's autoscaler, bound in each autoscaling ServeCluster's namespace."""

    @property
    def access(self) -> netpol.Access:
        return netpol.Access(
            operator_namespace=self.operator_namespace,
            operator_pod_labels=dict(self.operator_pod_labels),
            metrics_sources=self.ray_metrics_sources,
        )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        d = cls()
        positive, port = (lambda v: v > 0), (lambda v: 0 < v < 65536)
        levels = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        spaces = tuple(n.strip() for n in env.get("SERVEPLANE_NAMESPACES", "").split(",") if n.strip())
        return cls(
            default_image=_read(env, "SERVEPLANE_DEFAULT_IMAGE", str, d.default_image, bool),
            poll_fast_s=_read(env, "SERVEPLANE_POLL_FAST_S", float, d.poll_fast_s, positive),
            poll_slow_s=_read(env, "SERVEPLANE_POLL_SLOW_S", float, d.poll_slow_s, positive),
            dashboard_timeout_s=_read(env, "SERVEPLANE_DASHBOARD_TIMEOUT_S", float, d.dashboard_timeout_s, positive),
            metrics_port=_read(env, "SERVEPLANE_METRICS_PORT", int, d.metrics_port, port),
            health_port=_read(env, "SERVEPLANE_HEALTH_PORT", int, d.health_port, port),
            namespaces=spaces,
            log_level=_read(env, "SERVEPLANE_LOG_LEVEL", str.upper, d.log_level, levels.__contains__),
            operator_namespace=_read(env, "SERVEPLANE_OPERATOR_NAMESPACE", str, d.operator_namespace, bool),
            operator_pod_labels=_read(
                env, "SERVEPLANE_OPERATOR_POD_LABELS", json.loads, d.operator_pod_labels, _is_labels
            ),
            ray_metrics_sources=tuple(
                _read(env, "SERVEPLANE_RAY_METRICS_SOURCES", json.loads, list(d.ray_metrics_sources), _is_peers)
            ),
            autoscaler_cluster_role=_read(
                env, "SERVEPLANE_AUTOSCALER_CLUSTER_ROLE", str, d.autoscaler_cluster_role, bool
            ),
        )


def _is_labels(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _is_peers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(peer, dict) and peer for peer in value)
