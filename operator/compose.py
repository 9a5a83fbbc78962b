"""PURE: a ServeCluster, its ServeApplications and their ServeDeployments -> the body of Serve's PUT.

Serve's PUT is declarative (an application missing from it is deleted), so every application of a cluster is
always composed into one body. A resource with a problem never takes others down: it gets a verdict saying
what is wrong, and its application is kept at the config Serve last ran for it, or left out if there is none.

Precedence of deployment settings: the code's own defaults < ServeApplication.spec.deployments[] <
ServeDeployment. Whichever layer sets numReplicas or autoscalingConfig decides between the two.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import objects
from .api.application import ServeApplicationSpec
from .api.cluster import ServeClusterSpec
from .api.deployment import DeploymentSettings, ServeDeploymentSpec
from .objects import Obj

REPLICA_MODES = ("num_replicas", "autoscaling_config")
# Nested settings merged key by key across layers; anything else (user_config included) is replaced whole.
NESTED = ("ray_actor_options", "autoscaling_config")


@dataclass(frozen=True)
class Verdict:
    """What composition concluded about one resource; `ok` False means a Degraded condition is due."""

    ok: bool
    reason: str
    message: str
    waiting: bool = False


@dataclass(frozen=True)
class ServeView:
    """What Serve itself reports, used to keep bad input from breaking a running application."""

    deployed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per application, the config Serve is running now (its last good config)."""
    deployments: dict[str, frozenset[str]] = field(default_factory=dict)
    """Per application, the deployment names its code defines, once Serve has built it."""


@dataclass(frozen=True)
class Composition:
    config: dict[str, Any]
    config_hash: str
    applications: dict[str, Verdict]
    deployments: dict[str, Verdict]

    @property
    def app_names(self) -> list[str]:
        return [app["name"] for app in self.config["applications"]]


def config_hash(config: dict[str, Any]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_capacity(config: dict[str, Any], capacity: float | None) -> dict[str, Any]:
    """The config with Serve's target_capacity (percent of every deployment's replicas); None: full capacity."""
    return config if capacity is None else {**config, "target_capacity": capacity}


def validation_message(error: ValidationError) -> str:
    """pydantic's errors as `field.path: message` lines, camelCase as the user wrote them."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"spec.{where}: {item['msg']}" if where else f"spec: {item['msg']}")
    return "; ".join(parts)


def _settings(model: DeploymentSettings) -> dict[str, Any]:
    return model.model_dump(exclude_none=True, exclude={"name", "application", "deployment_name"})


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    if any(mode in top for mode in REPLICA_MODES):
        for mode in REPLICA_MODES:
            merged.pop(mode, None)
    for key, value in top.items():
        if key in NESTED and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@dataclass
class _ParsedDeployments:
    by_app: dict[str, dict[str, dict[str, Any]]]
    verdicts: dict[str, Verdict]


def _parse_deployments(
    deployments: list[Obj], known: dict[str, frozenset[str]], apps: set[str]
) -> _ParsedDeployments:
    by_app: dict[str, dict[str, dict[str, Any]]] = {}
    owners: dict[tuple[str, str], str] = {}
    verdicts: dict[str, Verdict] = {}
    for obj in sorted(deployments, key=objects.age_key):
        name = objects.name(obj)
        if objects.is_deleting(obj):
            continue
        try:
            spec = ServeDeploymentSpec.model_validate(objects.spec(obj))
        except ValidationError as error:
            verdicts[name] = Verdict(False, "InvalidSpec", validation_message(error))
            continue
        target = spec.deployment_name or name
        if spec.application not in apps:
            verdicts[name] = Verdict(
                False, "ApplicationNotFound", f"no ServeApplication {spec.application!r} on this cluster"
            )
            continue
        key = (spec.application, target)
        if key in owners:
            verdicts[name] = Verdict(
                False,
                "DuplicateDeployment",
                f"ServeDeployment {owners[key]!r} already configures deployment {target!r} of "
                f"application {spec.application!r}; delete one of them",
            )
            continue
        names = known.get(spec.application)
        if names is None:
            verdicts[name] = Verdict(
                True,
                "WaitingForApplication",
                f"waiting for application {spec.application!r} to be built once, to check that it has a "
                f"deployment {target!r}",
                waiting=True,
            )
            continue
        if target not in names:
            verdicts[name] = Verdict(
                False,
                "DeploymentNotFound",
                f"application {spec.application!r} has no deployment {target!r}; it has: "
                + ", ".join(sorted(names)),
            )
            continue
        owners[key] = name
        by_app.setdefault(spec.application, {})[target] = _settings(spec)
        verdicts[name] = Verdict(True, "Composed", f"settings of deployment {target!r} are in the Serve config")
    return _ParsedDeployments(by_app, verdicts)


def _app_config(name: str, spec: ServeApplicationSpec, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, dict[str, Any]] = {d.name: _settings(d) for d in spec.deployments}
    for target, settings in overrides.items():
        merged[target] = _overlay(merged.get(target, {}), settings)
    app: dict[str, Any] = {
        "name": name,
        "route_prefix": spec.effective_route_prefix(name),
        "import_path": spec.import_path,
        "args": spec.args or {},
        "deployments": [{"name": target, **merged[target]} for target in sorted(merged)],
    }
    if spec.runtime_env:
        app["runtime_env"] = spec.runtime_env
    return app


def _serve_options(cluster: ServeClusterSpec) -> dict[str, Any]:
    http: dict[str, Any] = {"host": "0.0.0.0", "port": cluster.serve.http_port}
    if cluster.serve.request_timeout_s is not None:
        http["request_timeout_s"] = cluster.serve.request_timeout_s
    return {
        "proxy_location": cluster.serve.proxy_location.value,
        "http_options": http,
        "grpc_options": {"port": cluster.serve.grpc_port, "grpc_servicer_functions": []},
    }


def compose(
    cluster: ServeClusterSpec, applications: list[Obj], deployments: list[Obj], serve: ServeView | None = None
) -> Composition:
    """The Serve config for a cluster, and a verdict for each application and deployment resource."""
    serve = serve or ServeView()
    live = [a for a in applications if not objects.is_deleting(a)]
    parsed = _parse_deployments(deployments, serve.deployments, {objects.name(a) for a in live})
    composed: list[dict[str, Any]] = []
    verdicts: dict[str, Verdict] = {}
    routes: dict[str, str] = {}

    def keep_last_good(name: str, verdict: Verdict) -> None:
        last = serve.deployed.get(name)
        last_route = str((last or {}).get("route_prefix") or "/")
        if last is not None and last_route not in routes:
            routes[last_route] = name
            composed.append(last)
            verdict = Verdict(False, verdict.reason, verdict.message + "; Serve keeps running its last good config")
        verdicts[name] = verdict

    for obj in sorted(live, key=objects.age_key):
        name = objects.name(obj)
        try:
            spec = ServeApplicationSpec.model_validate(objects.spec(obj))
        except ValidationError as error:
            keep_last_good(name, Verdict(False, "InvalidSpec", validation_message(error)))
            continue
        route = spec.effective_route_prefix(name)
        if route in routes:
            keep_last_good(
                name,
                Verdict(
                    False,
                    "RoutePrefixConflict",
                    f"route prefix {route} is already used by ServeApplication {routes[route]!r} on this "
                    "cluster; choose another spec.routePrefix",
                ),
            )
            continue
        routes[route] = name
        composed.append(_app_config(name, spec, parsed.by_app.get(name, {})))
        verdicts[name] = Verdict(True, "Composed", "the application is in the Serve config")

    config = {**_serve_options(cluster), "applications": sorted(composed, key=lambda a: a["name"])}
    return Composition(config, config_hash(config), verdicts, parsed.verdicts)


def serve_view(serve: dict[str, Any] | None, apps: list[Obj]) -> ServeView:
    """Serve's running configs (the last good ones) and each application's known deployment names.

    Deployment names also come from the ServeApplication's status, so they survive a head restart.
    """
    reported = (serve or {}).get("applications") or {}
    deployed = {
        name: details["deployed_app_config"]
        for name, details in reported.items()
        if details.get("status") == "RUNNING" and details.get("deployed_app_config")
    }
    known: dict[str, frozenset[str]] = {}
    for app in apps:
        name = objects.name(app)
        names = set((objects.status(app).get("deployments") or {}).keys())
        names |= set(objects.status(app).get("knownDeployments") or ())
        names |= set(((reported.get(name) or {}).get("deployments") or {}).keys())
        if names:
            known[name] = frozenset(names)
    return ServeView(deployed=deployed, deployments=known)
