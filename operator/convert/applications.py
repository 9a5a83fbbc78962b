"""PURE: the Serve config's applications and deployments -> ServeApplications and ServeDeployments.

A deployment's replica settings (numReplicas, autoscalingConfig) go to a ServeDeployment of its own so that
`kubectl scale` works on it; its other settings stay inline in the application's deployments[].
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api.application import ServeApplicationSpec
from ..api.deployment import InlineDeployment, ServeDeploymentSpec
from ..api.kinds import SERVE_APPLICATION, SERVE_DEPLOYMENT
from ..compose import REPLICA_MODES
from .mapping import MISSING, field_error, front, map_field, map_onto, validated
from .names import DEFAULT_APP_NAME, Context, k8s_name
from .outputs import Output, child
from .serveconfig import SERVICERS

# Serve's default route prefix of an application that sets none is "/", serveplane's is /<name>: written out.
SERVE_DEFAULT_ROUTE = "/"


def _import_path(value: Any, path: str, out: Output) -> Any:
    """Serve also takes `module.attribute` (it splits at the last dot); when the model wants the colon, the same
    path with it."""
    if not isinstance(value, str) or ":" in value or "." not in value:
        return value
    if field_error(ServeApplicationSpec, "import_path", value) is None:
        return value
    module, _, attribute = value.rpartition(".")
    out.remark(f"{path}: {value} written as {module}:{attribute} (the same attribute for Serve)")
    return f"{module}:{attribute}"


def _route_prefix(app: Mapping[str, Any], path: str, out: Output) -> dict[str, Any]:
    where = child(path, "route_prefix")
    if "route_prefix" not in app:
        out.remark(f"{where} is absent: Serve's default {SERVE_DEFAULT_ROUTE} is written out (serveplane's is /<name>)")
        return {"route_prefix": SERVE_DEFAULT_ROUTE}
    if app["route_prefix"] is None:
        out.note(where, "an application without an HTTP route has no equivalent: routePrefix defaults to /<name>")
        return {}
    return {}


@dataclass
class _App:
    """What an application's deployments are converted against."""

    name: str
    path: str
    out: Output
    ctx: Context


def _deployment(dep: Any, path: str, app: _App) -> tuple[dict[str, Any] | None, Output | None]:
    """(its inline entry for ServeApplication.spec.deployments[], its ServeDeployment): the replica settings
    (numReplicas, autoscalingConfig) go to the ServeDeployment so that `kubectl scale` works, the rest inline."""
    if not isinstance(dep, dict) or not isinstance(dep.get("name"), str):
        app.out.note(path, "a deployment needs a name")
        return None, None
    name = dep["name"]
    app.out.map(child(path, "name"))
    sdep = Output(None, app.ctx.source)
    replicas = map_onto(ServeDeploymentSpec, {k: v for k, v in dep.items() if k in REPLICA_MODES}, path, sdep)
    rest = map_onto(InlineDeployment, dep, path, app.out, skip={"name", *REPLICA_MODES})
    if not replicas:
        app.out.absorb(sdep)
        return {"name": name, **rest}, None
    sdep_name = app.ctx.unique(SERVE_DEPLOYMENT.kind, k8s_name(f"{app.name}-{name}"))
    spec, error = validated(ServeDeploymentSpec, {"application": app.name, "deployment_name": name, **replicas})
    sdep.obj = app.ctx.document(SERVE_DEPLOYMENT.kind, sdep_name, front(spec, ("application", "deploymentName")))
    if error:
        sdep.disabled = True
        sdep.forget(path)
        sdep.note(path, f"ServeDeploymentSpec refuses it: {error}")
    return ({"name": name, **rest} if rest else None), sdep


def _deployments(deps: Any, path: str, app: _App) -> tuple[list[dict[str, Any]], list[Output]]:
    if not isinstance(deps, list):
        app.out.note(path, "deployments must be a list")
        return [], []
    if not deps:
        app.out.map(path)
    inline: list[dict[str, Any]] = []
    sdeps: list[Output] = []
    for index, dep in enumerate(deps):
        entry, sdep = _deployment(dep, child(path, index), app)
        inline += [entry] if entry else []
        sdeps += [sdep] if sdep else []
    return inline, sdeps


def _application(
    raw: Any, path: str, ctx: Context, servicers: tuple[list[Any] | None, str]
) -> list[Output]:
    """The ServeApplication of one entry of the Serve config's `applications`, then its ServeDeployments."""
    out = Output(None, ctx.source)
    if not isinstance(raw, dict):
        out.note(path, "an application must be a map")
        return [out]
    serve_name = raw.get("name", DEFAULT_APP_NAME)
    name = ctx.unique(SERVE_APPLICATION.kind, k8s_name(str(serve_name)))
    if "name" in raw:
        out.map(child(path, "name"))
    if name != serve_name:
        out.remark(f"Serve application {serve_name} is named {name} now (a Kubernetes name; gRPC clients' "
                   "`application` metadata too)")
    fields = {**raw, "import_path": _import_path(raw.get("import_path"), child(path, "import_path"), out)}
    spec = map_onto(ServeApplicationSpec, fields, path, out, skip={"name", "deployments", "import_path"})
    if "import_path" in raw:
        # Not through map_field: a path the model refuses stays in the (commented-out) document, for a fix by hand.
        spec["import_path"] = fields["import_path"]
        out.map(child(path, "import_path"))
    spec.update(_route_prefix(raw, path, out), cluster=ctx.cluster)
    spec.update(_servicers_for_app(servicers, out))
    app = _App(name, path, out, ctx)
    inline: list[dict[str, Any]] = []
    sdeps: list[Output] = []
    if "deployments" in raw:
        inline, sdeps = _deployments(raw["deployments"], child(path, "deployments"), app)
    if inline:
        spec["deployments"] = inline
    wire, error = validated(ServeApplicationSpec, spec)
    if isinstance(wire.get("deployments"), list):
        wire["deployments"] = [front(entry, ("name",)) for entry in wire["deployments"]]
    out.obj = ctx.document(SERVE_APPLICATION.kind, name, wire)
    if error:
        disable(out, path, f"ServeApplicationSpec refuses it: {error}", sdeps)
    return [out, *sdeps]


def disable(out: Output, path: str, why: str, dependents: Iterable[Output]) -> None:
    """A document the models refuse: printed commented out, with why, and so are those that depend on it."""
    out.disabled = True
    out.forget(path)
    out.note(path, f"{why}; the document is printed commented out, for a fix by hand")
    for dependent in dependents:
        dependent.disabled = True
        dependent.mapped.clear()
        dependent.note(path, "its ServeApplication is not converted (see it)")


def _servicers(config: Mapping[str, Any], path: str) -> tuple[list[Any] | None, str]:
    grpc = config.get("grpc_options")
    value = grpc.get(SERVICERS) if isinstance(grpc, dict) else None
    return (value if isinstance(value, list) else None), child(child(path, "grpc_options"), SERVICERS)


def _servicers_for_app(servicers: tuple[list[Any] | None, str], out: Output) -> dict[str, Any]:
    """Serve's gRPC servicers are the cluster's (grpc_options); serveplane's are each application's, and the
    proxies serve the union. Which application implements which service cannot be told from the config, so each
    application gets the whole list: the union, what the proxies serve, is the same."""
    functions, path = servicers
    if functions is None:
        return {}
    value = map_field(ServeApplicationSpec, SERVICERS, functions, path, out)
    if value is MISSING:
        return {}
    out.remark(f"{path}: the cluster's gRPC servicers are given to every application (the proxies serve the union)")
    return {SERVICERS: value}


def applications(config: Mapping[str, Any], path: str, ctx: Context, cluster: Output) -> list[Output]:
    """The ServeApplications and ServeDeployments of a Serve config (`path`: where it is in the input)."""
    apps = config.get("applications")
    where = child(path, "applications")
    servicers = _servicers(config, path)
    if not isinstance(apps, list) or not apps:
        cluster.note(where if "applications" in config else path, "no applications in the Serve config")
        if servicers[0] is not None:
            cluster.note(servicers[1], "no application to give the gRPC servicers to")
        return []
    outputs: list[Output] = []
    for index, app in enumerate(apps):
        outputs += _application(app, child(where, index), ctx, servicers)
    return outputs
