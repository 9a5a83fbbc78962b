"""PURE: a ServeCluster, its ServeApplications and their ServeDeployments -> the body of Serve's PUT.

Serve's PUT is declarative (an application missing from it is deleted), so every application of a cluster is
always composed into one body. A resource with a problem never takes others down: it gets a verdict saying
what is wrong, and its application is kept at the config Serve last ran for it, or left out if there is none.

Precedence of deployment settings: the code's own defaults < ServeApplication.spec.deployments[] <
ServeDeployment. Whichever layer sets numReplicas or autoscalingConfig decides between the two; nested settings
(rayActorOptions, autoscalingConfig, loggingConfig, ...) merge key by key, userConfig and lists are replaced whole.
Logging: the cluster's < the application's < the deployment's, which Serve itself resolves.

Serve reads its start options (proxy location, HTTP and gRPC options, controller and tracing options) only when
its controller starts and ignores them afterwards: `start_key` names them, and the ServeCluster's generation
includes it, so a change there rolls a new generation (a zero-downtime upgrade) instead of being ignored.

The merged settings of each deployment are checked against the rules Serve's schema enforces across fields: one
application breaking them would otherwise fail the one PUT that carries every application of the cluster.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from . import objects
from .api.application import ServeApplicationServicers, ServeApplicationSpec
from .api.cluster import ServeClusterSpec
from .api.deployment import DeploymentSettings, ServeDeploymentSpec
from .objects import Obj
from .servereport import ServeReport

REPLICA_MODES = ("num_replicas", "autoscaling_config")
# Settings replaced whole even though they are maps: the user's own data, whose keys mean nothing to Serve.
REPLACED_WHOLE = ("user_config",)
# Serve's own defaults where its cross-field rules need a value that no layer set.
SERVE_MIN_REPLICAS = 1
SERVE_MAX_REPLICAS = 1


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


def validation_message(error: ValidationError, root: str = "spec") -> str:
    """pydantic's errors as `root.field.path: message` lines, camelCase as the user wrote them."""
    parts = []
    for item in error.errors():
        where = ".".join([root, *(str(p) for p in item["loc"])] if root else [str(p) for p in item["loc"]])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def _settings(model: DeploymentSettings) -> dict[str, Any]:
    return model.model_dump(exclude_none=True, exclude={"name", "application", "deployment_name"}, mode="json")


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    if any(mode in top for mode in REPLICA_MODES):
        for mode in REPLICA_MODES:
            merged.pop(mode, None)
    for key, value in top.items():
        if key not in REPLACED_WHOLE and isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _gang_problem(settings: dict[str, Any]) -> str | None:
    gang = settings.get("gang_scheduling_config")
    if gang is None:
        return None
    size = gang["gang_size"]
    for other in ("max_replicas_per_node", "placement_group_strategy"):
        if other in settings:
            return f"{to_camel(other)} cannot be set with gangSchedulingConfig"
    # Serve checks a fixed count only: under autoscaling it rounds to whole gangs itself.
    count = settings.get("num_replicas")
    if count is not None and "autoscaling_config" not in settings and count % size:
        return f"numReplicas ({count}) must be a multiple of gangSchedulingConfig.gangSize ({size})"
    return None


def _autoscaling_problem(settings: dict[str, Any]) -> str | None:
    auto = settings.get("autoscaling_config")
    if auto is None:
        return None
    low, high = auto.get("min_replicas", SERVE_MIN_REPLICAS), auto.get("max_replicas", SERVE_MAX_REPLICAS)
    initial = auto.get("initial_replicas")
    if high < low:
        return f"autoscalingConfig.maxReplicas ({high}) must be at least minReplicas ({low}; Serve's default is 1)"
    if initial is not None and not low <= initial <= high:
        return f"autoscalingConfig.initialReplicas ({initial}) must be between minReplicas ({low}) and maxReplicas " \
            f"({high})"
    return None


def _placement_problem(settings: dict[str, Any]) -> str | None:
    bundles = settings.get("placement_group_bundles")
    selectors = settings.get("placement_group_bundle_label_selector")
    if bundles is not None and "max_replicas_per_node" in settings:
        return "maxReplicasPerNode cannot be set with placementGroupBundles"
    if selectors is not None and bundles is None:
        return "placementGroupBundleLabelSelector needs placementGroupBundles"
    if selectors is not None and bundles is not None and len(selectors) not in (1, len(bundles)):
        return f"placementGroupBundleLabelSelector needs 1 selector or one per bundle ({len(bundles)}), not " \
            f"{len(selectors)}"
    return None


def deployment_problem(settings: dict[str, Any]) -> str | None:
    """What Serve's schema would refuse in one deployment's merged settings, as the user wrote the fields."""
    for check in (_gang_problem, _autoscaling_problem, _placement_problem):
        problem = check(settings)
        if problem is not None:
            return problem
    return None


@dataclass
class _ParsedDeployments:
    by_app: dict[str, dict[str, dict[str, Any]]]
    verdicts: dict[str, Verdict]
    owners: dict[tuple[str, str], str]
    """(application, deployment) -> the ServeDeployment whose settings go there."""


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
    return _ParsedDeployments(by_app, verdicts, owners)


class InvalidSettings(ValueError):
    """An application's merged deployment settings break one of Serve's cross-field rules."""


def _app_config(name: str, spec: ServeApplicationSpec, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, dict[str, Any]] = {d.name: _settings(d) for d in spec.deployments}
    for target, settings in overrides.items():
        merged[target] = _overlay(merged.get(target, {}), settings)
    for target in sorted(merged):
        problem = deployment_problem(merged[target])
        if problem is not None:
            raise InvalidSettings(f"deployment {target!r}: {problem}")
    if spec.external_scaler_enabled:
        scaled = sorted(t for t, settings in merged.items() if "autoscaling_config" in settings)
        if scaled:
            raise InvalidSettings(
                "externalScalerEnabled: Serve's autoscaling must be off, but autoscalingConfig is set for "
                + ", ".join(scaled)
            )
    app: dict[str, Any] = {
        "name": name,
        "route_prefix": spec.effective_route_prefix(name),
        "import_path": spec.import_path,
        "args": spec.args or {},
        "deployments": [{"name": target, **merged[target]} for target in sorted(merged)],
    }
    app |= spec.model_dump(
        include={"runtime_env", "logging_config", "autoscaling_policy", "external_scaler_enabled"},
        exclude_none=True,
        mode="json",
    )
    return app


def servicers(applications: list[Obj]) -> list[str]:
    """The union of the applications' gRPC servicer functions. Read on their own, so an application whose spec
    is invalid elsewhere keeps its servicers in the union (a change of the union restarts Serve's proxies)."""
    found: set[str] = set()
    for obj in applications:
        if objects.is_deleting(obj):
            continue
        try:
            found |= set(ServeApplicationServicers.model_validate(objects.spec(obj)).grpc_servicer_functions or ())
        except ValidationError:
            continue
    return sorted(found)


def start_options(cluster: ServeClusterSpec, applications: list[Obj]) -> dict[str, Any]:
    """The part of the Serve config Serve reads only when its controller starts."""
    serve = cluster.serve
    http: dict[str, Any] = {"host": "0.0.0.0", "port": serve.http_port}
    http |= serve.model_dump(include={"request_timeout_s", "keep_alive_timeout_s", "root_path"}, exclude_none=True)
    grpc: dict[str, Any] = {"port": serve.grpc_port, "grpc_servicer_functions": servicers(applications)}
    if serve.grpc_request_timeout_s is not None:
        grpc["request_timeout_s"] = serve.grpc_request_timeout_s
    if serve.grpc_enable_reflection is not None:
        grpc["enable_reflection"] = serve.grpc_enable_reflection
    options: dict[str, Any] = {"proxy_location": serve.proxy_location.value, "http_options": http, "grpc_options": grpc}
    if serve.controller_env:
        options["controller_options"] = {"runtime_env": {"env_vars": serve.controller_env}}
    if serve.tracing_config is not None:
        options["tracing_config"] = serve.tracing_config.model_dump(exclude_none=True, mode="json")
    return options


def start_key(cluster: ServeClusterSpec, applications: list[Obj]) -> str | None:
    """A name for the start options, or None while they are those of a cluster that sets only its ports (what
    every generation ran before start options counted: their names stay)."""
    options = start_options(cluster, applications)
    plain = ServeClusterSpec.model_validate(
        {"serve": cluster.serve.model_dump(include={"http_port", "grpc_port"}, by_alias=True)}
    )
    return None if options == start_options(plain, []) else config_hash(options)


def _serve_options(cluster: ServeClusterSpec, applications: list[Obj]) -> dict[str, Any]:
    options = start_options(cluster, applications)
    if cluster.serve.logging_config is not None:
        options["logging_config"] = cluster.serve.logging_config.model_dump(exclude_none=True, mode="json")
    return options


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
        try:
            app_config = _app_config(name, spec, parsed.by_app.get(name, {}))
        except InvalidSettings as error:
            del routes[route]
            keep_last_good(name, Verdict(False, "InvalidSettings", str(error)))
            # Its ServeDeployments' settings are not in the config either, whichever layer broke the rule.
            for (app, _), sdep in parsed.owners.items():
                if app == name:
                    parsed.verdicts[sdep] = Verdict(False, "InvalidSettings", f"application {name!r}: {error}")
            continue
        composed.append(app_config)
        verdicts[name] = Verdict(True, "Composed", "the application is in the Serve config")

    config = {**_serve_options(cluster, live), "applications": sorted(composed, key=lambda a: a["name"])}
    return Composition(config, config_hash(config), verdicts, parsed.verdicts)


def serve_view(serve: ServeReport | None, apps: list[Obj]) -> ServeView:
    """Serve's running configs (the last good ones) and each application's known deployment names.

    Deployment names also come from the ServeApplication's status, so they survive a head restart.
    """
    reported = serve.applications if serve else {}
    deployed = {
        name: details.deployed_app_config
        for name, details in reported.items()
        if details.status == "RUNNING" and details.deployed_app_config
    }
    known: dict[str, frozenset[str]] = {}
    for app in apps:
        name = objects.name(app)
        names = set((objects.status(app).get("deployments") or {}).keys())
        names |= set(objects.status(app).get("knownDeployments") or ())
        names |= set(reported[name].deployments) if name in reported else set()
        if names:
            known[name] = frozenset(names)
    return ServeView(deployed=deployed, deployments=known)
