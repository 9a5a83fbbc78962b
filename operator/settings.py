"""The operator's settings, read once from environment variables (the Helm chart sets them)."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    default_image: str = "rayproject/ray:2.60.0-py311"
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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        defaults = cls()
        spaces = tuple(n.strip() for n in env.get("SERVEPLANE_NAMESPACES", "").split(",") if n.strip())
        return cls(
            default_image=env.get("SERVEPLANE_DEFAULT_IMAGE", defaults.default_image),
            poll_fast_s=float(env.get("SERVEPLANE_POLL_FAST_S", defaults.poll_fast_s)),
            poll_slow_s=float(env.get("SERVEPLANE_POLL_SLOW_S", defaults.poll_slow_s)),
            dashboard_timeout_s=float(env.get("SERVEPLANE_DASHBOARD_TIMEOUT_S", defaults.dashboard_timeout_s)),
            metrics_port=int(env.get("SERVEPLANE_METRICS_PORT", defaults.metrics_port)),
            health_port=int(env.get("SERVEPLANE_HEALTH_PORT", defaults.health_port)),
            namespaces=spaces,
            log_level=env.get("SERVEPLANE_LOG_LEVEL", defaults.log_level).upper(),
        )
