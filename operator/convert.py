"""PURE: KubeRay's RayService (or a RayCluster and a Serve config) -> ServeCluster, ServeApplications, ServeDeployments.

`serveplane convert` (cli.py) reads the files and prints `to_yaml(convert(...))`. Nothing is contacted.

- The Serve config (a RayService's serveConfigV2, or the file given with --serve-config) maps GENERICALLY: a
  snake_case key is looked up in the API model's `model_fields`, nested models key by key, each value validated
  by the field's own type, so a field added to the models is converted without a change here; the models then
  emit camelCase. One ServeApplication per application; a deployment's numReplicas/autoscalingConfig go to a
  ServeDeployment (so `kubectl scale` works on it), its other settings inline in the application's deployments[].
- The Ray cluster (head group, worker groups, autoscaler, GCS fault tolerance, RayService's upgrade strategy and
  serve Service) maps by the KubeRay v1.5.0 field names, onto what ServeCluster has.
- Whatever has no equivalent is named, with why, in a `# not converted: <path>: <why>` comment at the top of the
  document it belongs to; nothing is dropped silently. Every Output records which input paths it mapped and which
  it noted, so a test can check that each leaf of the input is one or the other.
- Every document is validated by its pydantic model. One the models refuse is printed commented out, with why, so
  it can be fixed by hand (an import path with a slash, for one).
- Other documents of the input (the Secrets, ConfigMaps, Services a sample ships with) are passed through.
"""
from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from . import yamltext
from .api.application import ServeApplicationSpec
from .api.base import API_VERSION
from .api.cluster import (
    RAY_CONTAINER,
    GcsFaultToleranceSpec,
    HeadSpec,
    ServeClusterSpec,
    ServeOptions,
    ServiceSpec,
    UpgradeType,
    WorkerGroupSpec,
)
from .api.deployment import InlineDeployment, ServeDeploymentSpec
from .api.kinds import SERVE_APPLICATION, SERVE_CLUSTER, SERVE_DEPLOYMENT
from .compose import REPLICA_MODES
from .manifests import common

RAY_GROUP = "ray.io/"
# KubeRay's annotations of GCS fault tolerance before gcsFaultToleranceOptions: on, and the Redis key prefix.
_GCS_ANNOTATIONS = ("ray.io/ft-enabled", "ray.io/external-storage-namespace")
ROOT = ""
"""The path of a whole input document; it covers every part of it."""
SERVE_CONFIG_FILE = "serveConfig"
"""The root of the paths into the Serve config given apart from a RayCluster (--serve-config)."""
# `ray start` flags serveplane's runtime sets itself and refuses from rayStartParams (runtime/args.py:
# RESERVED_RAY_PARAMS; the operator may not import the runtime, a unit test keeps the two equal).
RESERVED_RAY_PARAMS = frozenset(
    {"address", "block", "dashboard-host", "dashboard-port", "head", "metrics-export-port", "node-ip-address",
     "port", "temp-dir"}
)
# The ports serveplane's Ray container declares itself (manifests/pods.py), by name and number.
OPERATOR_PORTS = {
    "gcs": common.GCS_PORT,
    "dashboard": common.DASHBOARD_PORT,
    "client": common.CLIENT_PORT,
    "agent": common.AGENT_PORT,
    "metrics": common.METRICS_PORT,
}
# Serve's own default name of an application without one.
DEFAULT_APP_NAME = "default"
# Serve's default route prefix of an application that sets none is "/", serveplane's is /<name>: written out.
SERVE_DEFAULT_ROUTE = "/"
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConvertError(ValueError):
    """The input cannot be converted at all (not a part of it: those are noted in the output)."""


# --- what became of the input: paths, notes, outputs ---------------------------------------------------------------


def child(path: str, key: str | int) -> str:
    """The path of `key` under `path`: `a.b`, `a[0]`, or `a["ray.io/ft-enabled"]` for a key with dots or slashes."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    part = key if _PLAIN_KEY.fullmatch(key) else f"[{json.dumps(key)}]"
    if part.startswith("["):
        return f"{path}{part}"
    return f"{path}.{part}" if path else part


def within(path: str, ancestor: str) -> bool:
    """Whether `path` is `ancestor` or below it (the whole document's path, ROOT, covers everything)."""
    return ancestor == ROOT or path == ancestor or path.startswith((ancestor + ".", ancestor + "["))


@dataclass(frozen=True)
class Note:
    path: str
    reason: str


@dataclass
class Output:
    """One document of the output, and what became of the parts of the input it stands for."""

    obj: dict[str, Any] | None
    source: str
    """The input document it comes from, e.g. `RayService rayservice-sample`."""
    mapped: set[str] = field(default_factory=set)
    notes: list[Note] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    disabled: bool = False
    """Printed commented out: its model refuses it (the notes say why)."""

    def map(self, path: str) -> None:
        self.mapped.add(path)

    def note(self, path: str, reason: str) -> None:
        self.notes.append(Note(path, reason))

    def remark(self, text: str) -> None:
        self.remarks.append(text)

    def forget(self, path: str) -> None:
        """Take back what was recorded as mapped under `path` (its value was refused after all)."""
        self.mapped = {p for p in self.mapped if not within(p, path)}

    def absorb(self, other: Output) -> None:
        """Take over what `other`, a document that will not be printed, recorded."""
        self.mapped |= other.mapped
        self.notes += other.notes
        self.remarks += other.remarks


@dataclass
class Conversion:
    outputs: list[Output]
    sources: list[str]
    """Per input document, in order, what it was: `RayService name`, `passed through: Secret name`, ..."""


# --- the generic mapping onto the models ---------------------------------------------------------------------------


class _Missing:
    """The value of a key that was not mapped (None is a value)."""


MISSING = _Missing()


def fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return model.model_fields


def _submodel(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the model, whether a list of it) a field holds, looking through `X | None`; (None, False) for others."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        options = [arg for arg in get_args(annotation) if arg is not NoneType]
        return _submodel(options[0]) if len(options) == 1 else (None, False)
    if origin is list:
        inner, nested_list = _submodel(get_args(annotation)[0])
        return (inner, True) if inner is not None and not nested_list else (None, False)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """Validates one field's value alone: its type with its constraints (ge, pattern, ...)."""
    info = fields(model)[name]
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated.__class_getitem__((annotation, *info.metadata))  # type: ignore[attr-defined]
    return TypeAdapter(annotation)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def field_error(model: type[BaseModel], name: str, value: Any) -> str | None:
    """Why the field `name` of `model` refuses `value`, or None when it takes it."""
    try:
        _adapter(model, name).validate_python(value)
    except ValidationError as error:
        return f"{model.__name__}.{name} refuses {_short(value)}: {_errors(error)}"
    return None


# Reasons for Serve keys that no model has a field for, where more can be said than "no field". Looked up only
# when the model has no such field, so a field added later wins.
_NO_FIELD_REASONS = {
    "host": "serveplane's proxies listen on all of the pod's addresses (0.0.0.0)",
    "target_capacity": "serveplane sets Serve's target_capacity itself while it upgrades a cluster",
    "port": "Serve's per-application port is deprecated; the proxies' ports are spec.serve's",
}


def _no_field(model: type[BaseModel], key: Any) -> str:
    why = _NO_FIELD_REASONS.get(str(key))
    return why or f"{model.__name__} has no field {key} (the serveplane API cannot express it yet)"


def map_field(model: type[BaseModel], name: str, value: Any, path: str, out: Output) -> Any:
    """`value` for the field `name` of `model`, nested models mapped key by key; MISSING (and a note on `out`)
    when the model has no such field or the field refuses the value. `path` is where the value is in the input."""
    info = fields(model).get(name)
    if info is None:
        out.note(path, _no_field(model, name))
        return MISSING
    raw = value
    nested, is_list = _submodel(info.annotation)
    handled = False
    if nested is not None and not is_list and isinstance(value, dict):
        value, handled = map_onto(nested, value, path, out), True
        if not value and value != raw:
            return MISSING  # every key was refused (and noted): an empty one would mean the defaults, not theirs
    elif nested is not None and is_list and isinstance(value, list) and all(isinstance(v, dict) for v in value):
        value, handled = [map_onto(nested, item, child(path, i), out) for i, item in enumerate(value)], True
    error = field_error(model, name, value)
    if error:
        out.forget(path)
        out.note(path, error)
        return MISSING
    # A nested value records its own leaves; an empty one has none, so it is recorded here.
    if not handled or not value:
        out.map(path)
    return value


def map_onto(
    model: type[BaseModel], data: Mapping[str, Any], path: str, out: Output, skip: Collection[str] = ()
) -> dict[str, Any]:
    """The keys of `data` (snake_case, as Serve writes them) that `model` has a field for, by field name; each
    other key is noted on `out`. `skip`: keys the caller maps itself."""
    mapped: dict[str, Any] = {}
    for key, value in data.items():
        if key in skip:
            continue
        converted = map_field(model, str(key), value, child(path, str(key)), out)
        if converted is not MISSING:
            mapped[str(key)] = converted
    return mapped


def to_wire_keys(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` (by field name) with the model's camelCase aliases, nested models too, free-form values untouched:
    the shape of a document the model refuses, printed commented out for a fix by hand."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        info = fields(model).get(key)
        if info is None:
            out[key] = value
            continue
        nested, is_list = _submodel(info.annotation)
        if nested is not None and isinstance(value, dict) and not is_list:
            value = to_wire_keys(nested, value)
        elif nested is not None and isinstance(value, list) and is_list:
            value = [to_wire_keys(nested, v) if isinstance(v, dict) else v for v in value]
        out[info.alias or key] = value
    return out


def validated(model: type[BaseModel], data: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(the camelCase wire form of `data`, None) when `model` takes it, else (its best-effort camelCase, why not).

    Only what was set is emitted: the models' defaults are the operator's business, not the conversion's."""
    try:
        spec = model.model_validate(dict(data))
    except ValidationError as error:
        return to_wire_keys(model, data), _errors(error)
    return spec.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json"), None


def _dig(data: Any, *keys: str | int) -> Any:
    """data[k1][k2]... through maps and lists, None where the input has no such part (or the wrong shape)."""
    for key in keys:
        if isinstance(data, dict) and isinstance(key, str):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
            data = data[key]
        else:
            return None
    return data


def _front(data: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """`data` with `keys` first (the models put a deployment's name last), for a reader of the YAML."""
    return {**{k: data[k] for k in keys if k in data}, **{k: v for k, v in data.items() if k not in keys}}


# --- names and metadata --------------------------------------------------------------------------------------------


def k8s_name(text: str) -> str:
    """A Kubernetes object name for a Serve name: MangoStand -> mango-stand, fruit_app -> fruit-app."""
    dashed = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", text)
    return _DNS_LABEL.sub("-", dashed.lower()).strip("-")[:63].strip("-") or DEFAULT_APP_NAME


@dataclass
class _Context:
    """What every document of one input shares."""

    source: str
    cluster: str
    namespace: str | None
    labels: dict[str, str]
    image: str | None
    """--image: replaces every Ray container's image."""
    taken: set[tuple[str, str]] = field(default_factory=set)
    """(kind, name) of the documents made so far, to keep names unique."""

    def unique(self, kind: str, name: str) -> str:
        candidate, number = name, 2
        while (kind, candidate) in self.taken:
            candidate, number = f"{name[:60]}-{number}", number + 1
        self.taken.add((kind, candidate))
        return candidate

    def document(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        if self.labels:
            metadata["labels"] = dict(self.labels)
        return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _dispatch(
    data: Any,
    path: str,
    out: Output,
    handlers: Mapping[str, Callable[[Any, str], None]],
    reasons: Mapping[str, str],
    what: str,
    otherwise: Callable[[str, Any, str], None] | None = None,
) -> None:
    """Each key of the KubeRay object `data` to its handler, else noted with its reason, else to `otherwise`
    (key, value, path) when given, else noted as unknown."""
    if not isinstance(data, dict):
        out.note(path, f"{what} must be a map")
        return
    if not data:
        out.map(path)  # nothing in it, nothing lost
    for key, value in data.items():
        where = child(path, str(key))
        if key in handlers:
            handlers[key](value, where)
        elif key in reasons or otherwise is None:
            out.note(where, reasons.get(key, f"not a field of KubeRay v1.5.0's {what} that serveplane knows"))
        else:
            otherwise(str(key), value, where)


def _off_or_note(value: Any, path: str, out: Output, reason: str, off: Any = False) -> None:
    """A KubeRay switch: its off value means what serveplane does anyway; any other is noted."""
    if value == off or value is None:
        out.map(path)
    else:
        out.note(path, reason)


# --- the Serve config ----------------------------------------------------------------------------------------------


def parse_serve_config(text: Any, path: str, out: Output) -> dict[str, Any] | None:
    """A RayService's serveConfigV2 (a YAML string) as a map; None (noted) when it is not one."""
    if not isinstance(text, str):
        out.note(path, "serveConfigV2 must be a YAML string")
        return None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        out.note(path, f"not valid YAML: {str(error).splitlines()[0]}")
        return None
    if not isinstance(config, dict):
        out.note(path, "not a Serve config (a map with `applications`)")
        return None
    return config


# The section of a Serve option (http_options.port) and the ServeOptions field it maps to: ServeOptions names the
# gRPC proxy's options grpc_<key> (grpc_port) and keeps the HTTP proxy's unprefixed (request_timeout_s), besides
# http_port; a nested field named like the section itself (http_options) is found before these by map_field.
_SECTION_PREFIXES = {"http_options": ("http_", ""), "grpc_options": ("grpc_",)}
SERVICERS = "grpc_servicer_functions"


def _option_field(section: str, key: str) -> str | None:
    prefixes = _SECTION_PREFIXES.get(section, (section.removesuffix("_options") + "_",))
    return next((p + key for p in prefixes if p + key in fields(ServeOptions)), None)


def _section(section: str, values: Any, path: str, out: Output) -> dict[str, Any]:
    """The ServeOptions fields of one `<x>_options` section of the Serve config."""
    options: dict[str, Any] = {}

    def option(key: str, value: Any, where: str) -> None:
        name = _option_field(section, key)
        if name is None:
            out.note(where, _NO_FIELD_REASONS.get(key, f"ServeOptions has no field for {section}.{key}"))
            return
        converted = map_field(ServeOptions, name, value, where, out)
        if converted is not MISSING:
            options[name] = converted

    # The gRPC servicers are the applications' (see applications).
    servicers = {SERVICERS: lambda v, w: None} if section == "grpc_options" else {}
    _dispatch(values, path, out, servicers, {}, section, otherwise=option)
    return options


def serve_options(config: Mapping[str, Any], path: str, out: Output) -> dict[str, Any]:
    """ServeCluster.spec.serve from the cluster-level keys of a Serve config (all but `applications`)."""
    options: dict[str, Any] = {}
    for key, value in config.items():
        where = child(path, str(key))
        if key == "applications":
            continue
        if key in fields(ServeOptions) or not str(key).endswith("_options"):
            converted = map_field(ServeOptions, str(key), value, where, out)
            if converted is not MISSING:
                options[str(key)] = converted
        else:
            options.update(_section(str(key), value, where, out))
    return options


def _free_grpc_port(options: dict[str, Any], out: Output) -> None:
    """Serve's default gRPC port is 9000; when the HTTP port is 9000 too (KubeRay's different-port sample) the
    serve Service would have one port twice, so the gRPC proxy moves to the next free one."""
    if "grpc_port" in options:
        return
    default = fields(ServeOptions)["grpc_port"].default
    http, grpc = options.get("http_port", fields(ServeOptions)["http_port"].default), default
    while grpc == http:
        grpc += 1
    if grpc != default:
        options["grpc_port"] = grpc
        out.remark(f"spec.serve.grpcPort {grpc}: Serve's default gRPC port {default} is the HTTP port here")


def _servicers(config: Mapping[str, Any], path: str) -> tuple[list[Any] | None, str]:
    grpc = config.get("grpc_options")
    value = grpc.get(SERVICERS) if isinstance(grpc, dict) else None
    return (value if isinstance(value, list) else None), child(child(path, "grpc_options"), SERVICERS)


# --- applications and deployments ----------------------------------------------------------------------------------


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
    ctx: _Context


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
    sdep.obj = app.ctx.document(SERVE_DEPLOYMENT.kind, sdep_name, _front(spec, ("application", "deploymentName")))
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
    raw: Any, path: str, ctx: _Context, servicers: tuple[list[Any] | None, str]
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
        wire["deployments"] = [_front(entry, ("name",)) for entry in wire["deployments"]]
    out.obj = ctx.document(SERVE_APPLICATION.kind, name, wire)
    if error:
        _disable(out, path, f"ServeApplicationSpec refuses it: {error}", sdeps)
    return [out, *sdeps]


def _disable(out: Output, path: str, why: str, dependents: Iterable[Output]) -> None:
    """A document the models refuse: printed commented out, with why, and so are those that depend on it."""
    out.disabled = True
    out.forget(path)
    out.note(path, f"{why}; the document is printed commented out, for a fix by hand")
    for dependent in dependents:
        dependent.disabled = True
        dependent.mapped.clear()
        dependent.note(path, "its ServeApplication is not converted (see it)")


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


def applications(config: Mapping[str, Any], path: str, ctx: _Context, cluster: Output) -> list[Output]:
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


# --- the Ray cluster: pods --------------------------------------------------------------------------------------


_CONTAINER_REASONS = {
    "command": "serveplane's runtime starts Ray (python -m serveplane.runtime); `ray start` flags go in rayStartParams",
    "args": "serveplane's runtime starts Ray (python -m serveplane.runtime); `ray start` flags go in rayStartParams",
    "lifecycle": "serveplane's preStop hook drains the node through its agent; this one would replace it",
    "readinessProbe": "serveplane's probes ask its node agent (/readyz)",
    "livenessProbe": "serveplane's probes ask its node agent (/livez)",
    "startupProbe": "serveplane's probes ask its node agent",
}


@dataclass
class _Node:
    """A head or worker group being converted: its HeadSpec/WorkerGroupSpec fields and its Ray container's image."""

    path: str
    out: Output
    consumed: frozenset[str]
    """Input paths already mapped elsewhere (GCS fault tolerance's env and flags)."""
    serve_ports: frozenset[int]
    spec: dict[str, Any] = field(default_factory=dict)
    image: str | None = None
    ray_container: dict[str, Any] = field(default_factory=dict)
    sidecars: list[Any] = field(default_factory=list)
    pod: dict[str, Any] = field(default_factory=dict)
    pod_metadata: dict[str, Any] = field(default_factory=dict)


def _ports(ports: Any, path: str, node: _Node) -> None:
    """KubeRay's samples declare Ray's ports on the container; serveplane declares those itself. Other ports (a
    user's own server's) are kept."""
    if not isinstance(ports, list):
        node.out.note(path, "ports must be a list")
        return
    if not ports:
        node.out.map(path)
    kept = []
    taken = {str(p) for p in set(OPERATOR_PORTS.values()) | node.serve_ports}
    for index, port in enumerate(ports):
        where = child(path, index)
        number, name = str(_dig(port, "containerPort")), str(_dig(port, "name"))
        if isinstance(port, dict) and (number in taken or name in OPERATOR_PORTS):
            node.out.note(where, f"{port.get('name', 'port')} {port.get('containerPort')}: serveplane's Ray "
                          "container declares Ray's and Serve's ports itself")
        else:
            kept.append(port)
            node.out.map(where)
    if kept:
        node.ray_container["ports"] = kept


def _env(env: Any, path: str, node: _Node) -> None:
    if not isinstance(env, list):
        node.out.note(path, "env must be a list")
        return
    kept = []
    for index, item in enumerate(env):
        where = child(path, index)
        if where not in node.consumed:
            kept.append(item)
            node.out.map(where)
    if not env:
        node.out.map(path)
    if kept:
        node.spec["env"] = kept


def _ray_container(container: Any, path: str, node: _Node) -> None:
    """KubeRay's first container is Ray's: its image, resources and env map to the group's fields, what
    serveplane owns (command, probes, preStop, Ray's ports) is noted, the rest goes to the podTemplate's `ray`."""
    def image(value: Any, where: str) -> None:
        node.image = value
        node.out.map(where)

    def resources(value: Any, where: str) -> None:
        node.spec["resources"] = value
        node.out.map(where)

    def extra(key: str, value: Any, where: str) -> None:
        node.ray_container[key] = value
        node.out.map(where)

    handlers: dict[str, Callable[[Any, str], None]] = {
        "name": lambda v, w: node.out.map(w),  # serveplane's Ray container is always called `ray`
        "image": image,
        "resources": resources,
        "env": lambda v, w: _env(v, w, node),
        "ports": lambda v, w: _ports(v, w, node),
    }
    _dispatch(container, path, node.out, handlers, _CONTAINER_REASONS, "container", otherwise=extra)


def _containers(containers: Any, path: str, node: _Node) -> None:
    if not isinstance(containers, list) or not containers:
        node.out.note(path, "a pod template needs its Ray container first")
        return
    _ray_container(containers[0], child(path, 0), node)
    sidecars = []
    for index, sidecar in enumerate(containers[1:], start=1):
        if isinstance(sidecar, dict) and sidecar.get("name") == RAY_CONTAINER:
            node.out.note(child(path, index), f"a sidecar named {RAY_CONTAINER} would merge into serveplane's Ray "
                          "container; rename it")
            continue
        sidecars.append(sidecar)
        node.out.map(child(path, index))
    node.sidecars = sidecars


def _pod_spec(spec: Any, path: str, node: _Node) -> None:
    """Every field of the pod spec but `containers` goes to the podTemplate as it is (nodeSelector, tolerations,
    affinity, volumes, serviceAccountName, ...): the podTemplate merges them into serveplane's pod."""
    def keep(key: str, value: Any, where: str) -> None:
        node.pod[key] = value
        node.out.map(where)

    handlers = {"containers": lambda v, w: _containers(v, w, node)}
    _dispatch(spec, path, node.out, handlers, {}, "pod template spec", otherwise=keep)


def _template(template: Any, path: str, node: _Node) -> None:
    def metadata(value: Any, where: str) -> None:
        reasons = {k: "serveplane names its pods itself" for k in ("name", "generateName", "namespace")}
        _dispatch(value, where, node.out, {"labels": keep, "annotations": keep}, reasons, "pod template metadata")

    def keep(value: Any, where: str) -> None:
        node.pod_metadata[where.rpartition(".")[2]] = value
        node.out.map(where)

    _dispatch(template, path, node.out, {"metadata": metadata, "spec": lambda v, w: _pod_spec(v, w, node)}, {},
              "pod template")


def _pod_template(node: _Node, cluster_image: str | None) -> dict[str, Any] | None:
    """The podTemplate of a group: what _template kept, the Ray container's extras in an entry named `ray`."""
    ray = dict(node.ray_container)
    if node.image is not None and node.image != cluster_image:
        ray["image"] = node.image
    spec = dict(node.pod)
    containers = ([{"name": RAY_CONTAINER, **ray}] if ray else []) + node.sidecars
    if containers:
        spec["containers"] = containers
    template: dict[str, Any] = {}
    if spec:
        template["spec"] = spec
    if node.pod_metadata:
        template["metadata"] = node.pod_metadata
    return template or None


def _ray_start_params(params: Any, path: str, node: _Node) -> None:
    """`ray start` flags, as strings (YAML may have made numbers or booleans of them); the runtime's own refused."""
    if not isinstance(params, dict):
        node.out.note(path, "rayStartParams must be a map")
        return
    kept: dict[str, str] = {}
    for key, value in params.items():
        where = child(path, str(key))
        if where in node.consumed:
            continue
        if key in RESERVED_RAY_PARAMS:
            node.out.note(where, "serveplane's runtime sets this `ray start` flag itself")
            continue
        kept[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
        node.out.map(where)
    if not params:
        node.out.map(path)
    if kept:
        node.spec["ray_start_params"] = kept


_GROUP_REASONS = {
    "resources": "ServeCluster has no Ray resources override per group: put num-cpus, num-gpus, memory or resources "
    "in rayStartParams",
    "labels": "ServeCluster has no Ray node labels per group: put them in rayStartParams (labels)",
}
_HEAD_REASONS = {
    **_GROUP_REASONS,
    "serviceType": "serveplane's head Service is always ClusterIP (spec.service.type is the serve Service's)",
    "headService": "serveplane builds the head Service itself (<name>-head)",
}


def _node(group: Any, path: str, node: _Node, extra: Mapping[str, Callable[[Any, str], None]],
          reasons: Mapping[str, str], what: str) -> None:
    handlers = {
        "rayStartParams": lambda v, w: _ray_start_params(v, w, node),
        "template": lambda v, w: _template(v, w, node),
        **extra,
    }
    _dispatch(group, path, node.out, handlers, reasons, what)


def head(group: Any, node: _Node) -> None:
    """HeadSpec fields of KubeRay's headGroupSpec, into `node`."""
    extra = {
        "enableIngress": lambda v, w: _off_or_note(
            v, w, node.out, "serveplane's Ingress (spec.ingress) routes to the applications, not to the dashboard"
        ),
    }
    _node(group, node.path, node, extra, _HEAD_REASONS, "headGroupSpec")


def _replicas(group: Mapping[str, Any], path: str, node: _Node) -> None:
    """KubeRay's replicas clamped to [minReplicas, maxReplicas] as KubeRay does (absent: minReplicas)."""
    low, high, wanted = group.get("minReplicas"), group.get("maxReplicas"), group.get("replicas")
    replicas = wanted if wanted is not None else low or 0
    if isinstance(high, int) and isinstance(low, int) and low > high:
        node.out.forget(child(path, "minReplicas"))
        node.out.note(child(path, "minReplicas"), "above maxReplicas (KubeRay then runs maxReplicas)")
        low = None
    if isinstance(high, int) and isinstance(replicas, int):
        replicas = min(replicas, high)
    if isinstance(low, int) and isinstance(replicas, int):
        replicas = max(replicas, low)
    if wanted is not None and replicas != wanted:
        node.out.remark(f"{child(path, 'replicas')}: KubeRay runs {replicas} (between minReplicas and maxReplicas), "
                        "written so")
    node.spec["replicas"] = replicas
    if low is not None:
        node.spec["min_replicas"] = low
    if high is not None:
        node.spec["max_replicas"] = high


def worker_group(group: Any, node: _Node, names: set[str]) -> None:
    """WorkerGroupSpec fields of one entry of KubeRay's workerGroupSpecs, into `node`."""
    def name(value: Any, where: str) -> None:
        node.spec["name"] = k8s_name(str(value))[:30].strip("-")
        if node.spec["name"] != value:
            node.out.remark(f"{where}: worker group {value} is named {node.spec['name']}")
        node.out.map(where)

    def counted(value: Any, where: str) -> None:
        node.out.map(where)  # read by _replicas, with the others

    def hosts(value: Any, where: str) -> None:
        _off_or_note(value, where, node.out, "serveplane runs one pod per Ray node: a multi-host group (a TPU "
                     "slice) has no equivalent", off=1)

    extra = {
        "groupName": name, "replicas": counted, "minReplicas": counted, "maxReplicas": counted, "numOfHosts": hosts,
        "suspend": lambda v, w: _off_or_note(v, w, node.out, "a worker group cannot be suspended: set replicas 0"),
        "scaleStrategy": lambda v, w: _off_or_note(
            v, w, node.out, "KubeRay's autoscaler's state; serveplane's autoscaler keeps its choice in status", off={}
        ),
    }
    reasons = {
        **_GROUP_REASONS,
        "idleTimeoutSeconds": "serveplane's autoscaler has one idle timeout (spec.autoscaling.idleTimeoutSeconds)",
    }
    _node(group, node.path, node, extra, reasons, "workerGroupSpec")
    if isinstance(group, dict):
        _replicas(group, node.path, node)
        if node.spec.get("name") in names:
            node.spec["name"] = f"{node.spec['name'][:27]}-{len(names)}"
        names.add(str(node.spec.get("name")))


def _group_spec(model: type[BaseModel], node: _Node, cluster_image: str | None) -> dict[str, Any] | None:
    """The HeadSpec/WorkerGroupSpec of a converted group (by field name), or None (noted) if its model refuses it."""
    data = dict(node.spec)
    template = _pod_template(node, cluster_image)
    if template:
        data["pod_template"] = template
    try:
        model.model_validate(data)
    except ValidationError as error:
        node.out.forget(node.path)
        node.out.note(node.path, f"{model.__name__} refuses it: {_errors(error)}")
        return None
    return data


# --- the Ray cluster: cluster-wide settings ------------------------------------------------------------------------


def _autoscaling(rc: Mapping[str, Any], path: str, out: Output) -> dict[str, Any]:
    """enableInTreeAutoscaling and autoscalerOptions -> spec.autoscaling (serveplane always runs Ray's v2)."""
    result: dict[str, Any] = {}
    if "enableInTreeAutoscaling" in rc:
        result["enabled"] = bool(rc["enableInTreeAutoscaling"])
        out.map(child(path, "enableInTreeAutoscaling"))
    options = rc.get("autoscalerOptions")
    if options is None:
        return result
    # Ray's KubeRay config reader: Conservative is upscaling_speed 1, Default and Aggressive 1000.
    speeds = {"Conservative": 1.0, "Default": 1000.0, "Aggressive": 1000.0}

    def idle(value: Any, where: str) -> None:
        result["idle_timeout_seconds"] = value
        out.map(where)

    def mode(value: Any, where: str) -> None:
        if isinstance(value, str) and value in speeds:
            result["upscaling_speed"] = speeds[value]
            out.map(where)
        else:
            out.note(where, f"unknown upscalingMode {value}")

    def version(value: Any, where: str) -> None:
        _off_or_note(value, where, out, "serveplane runs Ray's v2 autoscaler only", off="v2")

    container = "serveplane builds the autoscaler's container beside the head itself"
    reasons = {k: container for k in ("resources", "image", "imagePullPolicy", "securityContext", "env", "envFrom",
                                       "volumeMounts")}
    handlers = {"idleTimeoutSeconds": idle, "upscalingMode": mode, "version": version}
    _dispatch(options, child(path, "autoscalerOptions"), out, handlers, reasons, "autoscalerOptions")
    return result


def _secret_ref(credential: Any, path: str, out: Output) -> dict[str, Any] | None:
    """KubeRay's RedisCredential -> serveplane's RedisPassword (a Secret key only)."""
    ref = _dig(credential, "valueFrom", "secretKeyRef")
    if isinstance(ref, dict) and set(ref) <= {"name", "key"}:
        out.map(path)
        return {"secret_key_ref": ref}
    out.note(path, "serveplane reads Redis's password from a Secret key only (gcsFaultTolerance.redisPassword."
             "secretKeyRef): put it in a Secret")
    return None


def _gcs_options(options: Any, path: str, out: Output) -> dict[str, Any]:
    result: dict[str, Any] = {}

    def keep(name: str) -> Callable[[Any, str], None]:
        def handler(value: Any, where: str) -> None:
            result[name] = value
            out.map(where)
        return handler

    def password(value: Any, where: str) -> None:
        ref = _secret_ref(value, where, out)
        if ref:
            result["redis_password"] = ref

    handlers = {"redisAddress": keep("redis_address"), "externalStorageNamespace": keep("external_storage_namespace"),
                "redisPassword": password}
    reasons = {"redisUsername": "serveplane's GCS fault tolerance has no Redis user name (Redis's default user)"}
    _dispatch(options, path, out, handlers, reasons, "gcsFaultToleranceOptions")
    return result


def _head_env(head_group: Mapping[str, Any], head_path: str) -> tuple[dict[str, tuple[str, dict[str, Any]]], str]:
    """The env of the head's Ray container (KubeRay's first) by name -> (its path, the entry)."""
    container_path = child(child(child(child(head_path, "template"), "spec"), "containers"), 0)
    env = _dig(head_group, "template", "spec", "containers", 0, "env")
    env = env if isinstance(env, list) else []
    env_path = child(container_path, "env")
    named = {str(item.get("name")): (child(env_path, index), item) for index, item in enumerate(env)
             if isinstance(item, dict)}
    return named, env_path


def _legacy_gcs(head_group: Mapping[str, Any], head_path: str, out: Output) -> tuple[dict[str, Any], set[str]]:
    """The GCS fault tolerance of KubeRay before gcsFaultToleranceOptions: RAY_REDIS_ADDRESS in the head's env and
    a redis-password flag, often `$REDIS_PASSWORD` from a Secret through the env. Returns it and the input paths it
    used (mapped or noted here), which the head's conversion then leaves alone."""
    env, _ = _head_env(head_group, head_path)
    if "RAY_REDIS_ADDRESS" not in env or "value" not in env["RAY_REDIS_ADDRESS"][1]:
        return {}, set()
    address_path, address = env["RAY_REDIS_ADDRESS"]
    result: dict[str, Any] = {"redis_address": address["value"]}
    out.map(address_path)
    used = {address_path}
    params = head_group.get("rayStartParams") if isinstance(head_group.get("rayStartParams"), dict) else {}
    flag = (params or {}).get("redis-password")
    if flag is None:
        return result, used
    flag_path = child(child(head_path, "rayStartParams"), "redis-password")
    used.add(flag_path)
    variable = flag.strip("${}") if isinstance(flag, str) and flag.startswith("$") else None
    if variable in env:
        env_path, item = env[variable]
        used.add(env_path)
        ref = _secret_ref(item, env_path, out)
        if ref:
            result["redis_password"] = ref
            out.map(flag_path)
            return result, used
    out.note(flag_path, "serveplane reads Redis's password from a Secret key only (gcsFaultTolerance.redisPassword."
             "secretKeyRef): put it in a Secret")
    return result, used


def gcs_fault_tolerance(
    rc: Mapping[str, Any], path: str, annotations: Mapping[str, Any], annotations_path: str, out: Output
) -> tuple[dict[str, Any] | None, set[str]]:
    """spec.gcsFaultTolerance from gcsFaultToleranceOptions or the older annotations and head env; also the input
    paths it used, which the head's conversion must then leave alone."""
    enabled_key, namespace_key = _GCS_ANNOTATIONS
    head_group = rc.get("headGroupSpec") if isinstance(rc.get("headGroupSpec"), dict) else {}
    options_path = child(path, "gcsFaultToleranceOptions")
    used: set[str] = set()
    if "gcsFaultToleranceOptions" in rc:
        result = _gcs_options(rc["gcsFaultToleranceOptions"], options_path, out)
    else:
        result, used = _legacy_gcs(head_group or {}, child(path, "headGroupSpec"), out)
    if enabled_key in annotations:
        out.map(child(annotations_path, enabled_key))
    if namespace_key in annotations:
        result.setdefault("external_storage_namespace", annotations[namespace_key])
        out.map(child(annotations_path, namespace_key))
    enabled = str(annotations.get(enabled_key, "")).lower() == "true" or "gcsFaultToleranceOptions" in rc
    if not result.get("redis_address"):
        if enabled:
            out.note(options_path if "gcsFaultToleranceOptions" in rc else child(annotations_path, enabled_key),
                     "GCS fault tolerance without a Redis address (RAY_REDIS_ADDRESS) is not converted")
        return None, used
    try:
        GcsFaultToleranceSpec.model_validate(result)
    except ValidationError as error:
        out.forget(options_path)
        out.note(options_path, f"GCS fault tolerance not converted: {_errors(error)}")
        return None, used
    return result, used


# --- the Ray cluster: the whole ServeCluster -----------------------------------------------------------------------


_CLUSTER_REASONS = {
    "rayVersion": "a ServeCluster runs the Ray of its image (spec.image); there is no version to declare",
    "managedBy": "a ServeCluster is always managed by serveplane's operator",
    "headServiceAnnotations": "ServeCluster has no annotations for the head Service (spec.service annotates the "
    "serve Service)",
}


@dataclass
class _ClusterParts:
    """A ServeClusterSpec (by field name) being assembled from KubeRay's fields."""

    out: Output
    ctx: _Context
    spec: dict[str, Any] = field(default_factory=dict)


def ray_cluster(
    rc: Any, path: str, parts: _ClusterParts, annotations: Mapping[str, Any], annotations_path: str
) -> None:
    """The ServeClusterSpec fields of a RayClusterSpec (RayCluster.spec, or a RayService's rayClusterConfig)."""
    out = parts.out
    if not isinstance(rc, dict):
        out.note(path, "the Ray cluster's spec must be a map")
        for key in set(_GCS_ANNOTATIONS) & set(annotations):  # settings of that spec
            out.note(child(annotations_path, key), "the Ray cluster's spec is not a map")
        return
    gcs, consumed = gcs_fault_tolerance(rc, path, annotations, annotations_path, out)
    if gcs:
        parts.spec["gcs_fault_tolerance"] = gcs
    serve = parts.spec.get("serve", {})
    serve_ports = frozenset(
        serve.get(name, fields(ServeOptions)[name].default) for name in ("http_port", "grpc_port")
    )
    head_node = _Node(child(path, "headGroupSpec"), out, frozenset(consumed), serve_ports)
    groups: list[_Node] = []
    names: set[str] = set()

    def head_handler(value: Any, where: str) -> None:
        head(value, head_node)

    def workers(value: Any, where: str) -> None:
        if not isinstance(value, list):
            out.note(where, "workerGroupSpecs must be a list")
            return
        if not value:
            out.map(where)
        for index, group in enumerate(value):
            node = _Node(child(where, index), out, frozenset(), serve_ports)
            worker_group(group, node, names)
            groups.append(node)

    autoscaling = _autoscaling(rc, path, out)
    handlers: dict[str, Callable[[Any, str], None]] = {
        "headGroupSpec": head_handler,
        "workerGroupSpecs": workers,
        "enableInTreeAutoscaling": lambda v, w: None,  # read by _autoscaling
        "autoscalerOptions": lambda v, w: None,
        "gcsFaultToleranceOptions": lambda v, w: None,  # read by gcs_fault_tolerance
        "suspend": lambda v, w: _off_or_note(v, w, out, "a ServeCluster cannot be suspended; delete it instead"),
    }
    _dispatch(rc, path, out, handlers, _CLUSTER_REASONS, "RayClusterSpec")
    if autoscaling:
        parts.spec["autoscaling"] = autoscaling
    _assemble_nodes(parts, head_node, groups)


def _assemble_nodes(parts: _ClusterParts, head_node: _Node, groups: list[_Node]) -> None:
    """spec.image (the head's Ray image, or --image), spec.head and spec.workerGroups; a worker group whose Ray
    image differs keeps it in its podTemplate."""
    image = parts.ctx.image or head_node.image
    if parts.ctx.image is not None:
        for node in [head_node, *groups]:
            if node.image is not None and node.image != image:
                parts.out.remark(f"{node.path}: the Ray image {node.image} is replaced by --image {image}")
            node.image = image
    if image is not None:
        parts.spec["image"] = image
    if image is not None and parts.ctx.image is None:
        parts.out.remark(
            f"spec.image {image}: serveplane's pods run `python -m serveplane.runtime` from it, so it needs "
            "serveplane's runtime: build one FROM it as helm/Dockerfile.runtime does and give it with --image"
        )
    head_spec = _group_spec(HeadSpec, head_node, image)
    if head_spec is not None:
        parts.spec["head"] = head_spec
    worker_specs = [_group_spec(WorkerGroupSpec, node, image) for node in groups]
    if groups:
        parts.spec["worker_groups"] = [spec for spec in worker_specs if spec is not None]


def _serve_service(service: Any, path: str, parts: _ClusterParts) -> None:
    """RayService's serveService (a whole Service) -> spec.service: its type and annotations."""
    out = parts.out
    result: dict[str, Any] = {}

    def annotations(value: Any, where: str) -> None:
        converted = map_field(ServiceSpec, "annotations", value, where, out)
        if converted is not MISSING:
            result["annotations"] = converted

    def service_spec(value: Any, where: str) -> None:
        def service_type(kind: Any, at: str) -> None:
            converted = map_field(ServiceSpec, "type", kind, at, out)
            if converted is not MISSING:
                result["type"] = converted

        reasons = {"ports": "the serve Service's ports are spec.serve's httpPort and grpcPort",
                   "selector": "serveplane selects the pods whose Serve proxy is healthy itself"}
        _dispatch(value, where, out, {"type": service_type}, reasons, "serveService spec")

    reasons = {"name": "serveplane names the serve Service itself (<name>-serve)",
               "labels": "ServeCluster has no labels for the serve Service"}
    handlers = {
        "metadata": lambda v, w: _dispatch(v, w, out, {"annotations": annotations}, reasons, "serveService metadata"),
        "spec": service_spec,
    }
    _dispatch(service, path, out, handlers, {}, "serveService")
    if result:
        parts.spec["service"] = result


# KubeRay's upgrade types: NewCluster brings a whole new cluster up and then moves traffic (BlueGreen);
# NewClusterWithIncrementalUpgrade moves it step by step (Incremental).
_UPGRADE_TYPES = {"NewCluster": UpgradeType.BLUE_GREEN, "NewClusterWithIncrementalUpgrade": UpgradeType.INCREMENTAL}


def _upgrade(service_spec: Mapping[str, Any], path: str, parts: _ClusterParts) -> None:
    """upgradeStrategy and rayClusterDeletionDelaySeconds -> spec.upgradeStrategy."""
    out = parts.out
    result: dict[str, Any] = {}
    strategy = service_spec.get("upgradeStrategy")

    def kind(value: Any, where: str) -> None:
        if value in _UPGRADE_TYPES:
            result["type"] = _UPGRADE_TYPES[value].value
            out.map(where)
        else:
            out.note(where, f"{value}: serveplane always rolls a change out as a new generation (there is no "
                     "`None`); Recreate is the closest but has an outage")

    def options(value: Any, where: str) -> None:
        out.note(where, "serveplane's Incremental upgrade grows the new generation pod by pod (maxSurgePods) and "
                 "moves traffic with each pod; it has no percentages, interval or Gateway")

    if strategy is not None:
        _dispatch(strategy, child(path, "upgradeStrategy"), out, {"type": kind, "clusterUpgradeOptions": options},
                  {}, "upgradeStrategy")
    if "rayClusterDeletionDelaySeconds" in service_spec:
        result["old_generation_delay_seconds"] = service_spec["rayClusterDeletionDelaySeconds"]
        out.map(child(path, "rayClusterDeletionDelaySeconds"))
    if "type" not in result:
        out.remark("KubeRay upgrades a RayService by a whole new cluster (NewCluster) unless told otherwise; this "
                   "ServeCluster keeps serveplane's default, Incremental: set spec.upgradeStrategy.type BlueGreen "
                   "for KubeRay's way")
    if result:
        parts.spec["upgrade_strategy"] = result


_SERVICE_REASONS = {
    "serviceUnhealthySecondThreshold": "deprecated and unused in KubeRay; serveplane reports an unhealthy "
    "application in its conditions",
    "deploymentUnhealthySecondThreshold": "deprecated and unused in KubeRay; serveplane reports an unhealthy "
    "deployment in its conditions",
}


def ray_service_spec(spec: Any, path: str, parts: _ClusterParts, annotations: Mapping[str, Any],
                     annotations_path: str) -> dict[str, Any] | None:
    """The ServeCluster fields of a RayService's spec; returns its Serve config (parsed), if any."""
    out = parts.out
    if not isinstance(spec, dict):
        out.note(path, "a RayService's spec must be a map")
        return None
    config: dict[str, Any] | None = None

    def serve_config(value: Any, where: str) -> None:
        nonlocal config
        config = parse_serve_config(value, where, out)

    handlers: dict[str, Callable[[Any, str], None]] = {
        "serveConfigV2": serve_config,
        "rayClusterConfig": lambda v, w: ray_cluster(v, w, parts, annotations, annotations_path),
        "serveService": lambda v, w: _serve_service(v, w, parts),
        "upgradeStrategy": lambda v, w: None,  # read by _upgrade
        "rayClusterDeletionDelaySeconds": lambda v, w: None,
        "excludeHeadPodFromServeSvc": lambda v, w: _off_or_note(
            v, w, out, "ServeCluster cannot keep the head pod out of the serve Service: every pod's proxy serves "
            "(spec.serve.proxyLocation EveryNode) or the head's alone (HeadOnly)"
        ),
    }
    # The Serve config's options decide the serve ports, which the containers' port declarations are checked against.
    if isinstance(spec.get("serveConfigV2"), str):
        serve_config(spec["serveConfigV2"], child(path, "serveConfigV2"))
        handlers["serveConfigV2"] = lambda v, w: None
        if config is not None:
            _set_serve(parts, config, child(path, "serveConfigV2"))
    _dispatch(spec, path, out, handlers, _SERVICE_REASONS, "RayServiceSpec")
    _upgrade(spec, path, parts)
    return config


def _set_serve(parts: _ClusterParts, config: Mapping[str, Any], path: str) -> None:
    options = serve_options(config, path, parts.out)
    _free_grpc_port(options, parts.out)
    if options:
        parts.spec["serve"] = options


# --- metadata and documents ----------------------------------------------------------------------------------------


_ANNOTATION_REASONS = {
    "ray.io/initializing-timeout": "serveplane has no initializing timeout: an upgrade fails after "
    "spec.upgradeStrategy.timeoutSeconds",
    "ray.io/overwrite-container-cmd": "serveplane's runtime always starts Ray itself",
    "ray.io/enable-serve-service": "serveplane always creates the serve Service",
}


def _annotations(annotations: Any, path: str, out: Output) -> dict[str, Any]:
    """The annotations copied to the ServeCluster: all but Ray's own (ray.io/), which are settings."""
    copied: dict[str, Any] = {}

    def copy(name: str, text: Any, where: str) -> None:
        if name.startswith(RAY_GROUP):
            out.note(where, "a KubeRay setting serveplane has no equivalent for")
        else:
            copied[name] = text
            out.map(where)

    gcs = {name: lambda v, w: None for name in _GCS_ANNOTATIONS}  # gcs_fault_tolerance's
    _dispatch(annotations, path, out, gcs, _ANNOTATION_REASONS, "annotations", otherwise=copy)
    return copied


def _metadata(meta: Any, path: str, out: Output) -> dict[str, Any]:
    """The ServeCluster's annotations from the KubeRay object's metadata; its name, namespace and labels are the
    new documents' (_Context)."""
    copied: dict[str, Any] = {}

    def annotations(value: Any, where: str) -> None:
        copied.update(_annotations(value, where, out))

    def labels(value: Any, where: str) -> None:
        if isinstance(value, dict):
            out.map(where)
        else:
            out.note(where, "labels must be a map")

    handlers = {"name": lambda v, w: out.map(w), "namespace": lambda v, w: out.map(w), "labels": labels,
                "annotations": annotations}
    server = "set by the API server for the KubeRay object; the new objects get their own"
    if meta is None:
        out.map(path)
    else:
        _dispatch(meta, path, out, handlers, {}, "metadata", otherwise=lambda k, v, w: out.note(w, server))
    return copied


def _context(doc: Mapping[str, Any], image: str | None, taken: set[tuple[str, str]] | None) -> _Context:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = str((meta or {}).get("name") or "converted")
    labels = (meta or {}).get("labels")
    return _Context(
        source=f"{doc.get('kind')} {name}",
        cluster=k8s_name(name),
        namespace=(meta or {}).get("namespace"),
        labels=dict(labels) if isinstance(labels, dict) else {},
        image=image,
        taken=set() if taken is None else taken,
    )


def _cluster_document(parts: _ClusterParts, annotations: dict[str, Any]) -> None:
    """Validate the assembled ServeClusterSpec and make the document of it."""
    ctx, out = parts.ctx, parts.out
    name = ctx.unique(SERVE_CLUSTER.kind, ctx.cluster)
    wire, error = validated(ServeClusterSpec, parts.spec)
    out.obj = ctx.document(SERVE_CLUSTER.kind, name, wire)
    if annotations:
        out.obj["metadata"]["annotations"] = annotations
    if error:
        _disable(out, "spec", f"ServeClusterSpec refuses it: {error}", [])


def _kubernetes_object(doc: Mapping[str, Any], out: Output) -> tuple[Any, str, dict[str, Any]]:
    """The parts every KubeRay object has: (spec, its path, the annotations); apiVersion, kind and status noted."""
    out.map("apiVersion")
    out.map("kind")
    if "status" in doc:
        out.note("status", "the operator writes the new objects' status")
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            out.note(str(key), "not a field of a Kubernetes object serveplane knows")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    annotations = (meta or {}).get("annotations")
    return doc.get("spec"), "spec", annotations if isinstance(annotations, dict) else {}


def convert_ray_service(
    doc: Mapping[str, Any], image: str | None = None, taken: set[tuple[str, str]] | None = None
) -> list[Output]:
    """A RayService -> its ServeCluster, then each application's ServeApplication and ServeDeployments. `taken`:
    the (kind, name) of documents made before, shared by the documents of one file so that names stay unique."""
    ctx = _context(doc, image, taken)
    parts = _ClusterParts(Output(None, ctx.source), ctx)
    spec, path, annotations = _kubernetes_object(doc, parts.out)
    copied = _metadata(doc.get("metadata"), "metadata", parts.out)
    config = ray_service_spec(spec, path, parts, annotations, child("metadata", "annotations"))
    _cluster_document(parts, copied)
    apps = applications(config, child(path, "serveConfigV2"), ctx, parts.out) if config is not None else []
    if config is None and "serveConfigV2" not in (spec if isinstance(spec, dict) else {}):
        parts.out.remark("the RayService has no serveConfigV2: no applications")
    return [parts.out, *apps]


def convert_ray_cluster(
    doc: Mapping[str, Any],
    serve_config: Mapping[str, Any] | None = None,
    image: str | None = None,
    taken: set[tuple[str, str]] | None = None,
) -> list[Output]:
    """A RayCluster (and the Serve config it would run, paths under `serveConfig`) -> a ServeCluster, and the
    ServeApplications and ServeDeployments of the Serve config; `taken` as for convert_ray_service."""
    ctx = _context(doc, image, taken)
    parts = _ClusterParts(Output(None, ctx.source), ctx)
    spec, path, annotations = _kubernetes_object(doc, parts.out)
    copied = _metadata(doc.get("metadata"), "metadata", parts.out)
    if serve_config is not None:
        _set_serve(parts, serve_config, SERVE_CONFIG_FILE)
    ray_cluster(spec, path, parts, annotations, child("metadata", "annotations"))
    _cluster_document(parts, copied)
    if serve_config is None:
        parts.out.remark("no Serve config given (--serve-config): no applications")
        return [parts.out]
    return [parts.out, *applications(serve_config, SERVE_CONFIG_FILE, ctx, parts.out)]


def _describe(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return f"{doc.get('kind')} {(meta or {}).get('name', '')}".strip()


def _is_ray(doc: Mapping[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith("ray.io/")


def convert(
    docs: Sequence[Mapping[str, Any] | None], serve_config: Mapping[str, Any] | None = None, image: str | None = None
) -> Conversion:
    """Every document of a KubeRay YAML file, converted: RayServices, RayClusters (with `serve_config`, the Serve
    config the one RayCluster runs), other KubeRay kinds noted, any other object passed through unchanged.
    `image` replaces every Ray container's image. Raises ConvertError when nothing there is KubeRay's."""
    present = [d for d in docs if d]
    clusters = [d for d in present if _is_ray(d) and d.get("kind") == "RayCluster"]
    if not any(_is_ray(d) and d.get("kind") in ("RayService", "RayCluster") for d in present):
        raise ConvertError("no RayService or RayCluster (apiVersion ray.io/v1) in the input")
    if serve_config is not None and len(clusters) != 1:
        raise ConvertError(f"a Serve config goes with exactly one RayCluster; the input has {len(clusters)}")
    outputs: list[Output] = []
    sources: list[str] = []
    taken: set[tuple[str, str]] = set()
    for doc in present:
        if _is_ray(doc) and doc.get("kind") == "RayService":
            outputs += convert_ray_service(doc, image, taken)
        elif _is_ray(doc) and doc.get("kind") == "RayCluster":
            outputs += convert_ray_cluster(doc, serve_config, image, taken)
        elif _is_ray(doc):
            out = Output(None, _describe(doc))
            out.note(ROOT, f"{doc.get('kind')} is not converted: serveplane runs Serve applications (RayService, "
                     "or a RayCluster with --serve-config)")
            outputs.append(out)
        else:
            outputs.append(Output(dict(doc), f"passed through: {_describe(doc)}", mapped={ROOT}))
        sources.append(outputs[-1].source)
    return Conversion(outputs, sources)


# --- text ----------------------------------------------------------------------------------------------------------




COMMENT_WIDTH = 118


def _comment(text: str) -> str:
    """`text` as YAML comment lines of at most COMMENT_WIDTH characters (a path is never broken: no spaces in it)."""
    lines = textwrap.wrap(" ".join(text.split()), COMMENT_WIDTH - 2, break_long_words=False, break_on_hyphens=False)
    return "\n".join(("# " if index == 0 else "#   ") + line for index, line in enumerate(lines))


def document_text(out: Output) -> str:
    """One document: where it comes from, what was not converted and why, remarks, then the YAML (commented out
    when its model refuses it)."""
    lines = [_comment(f"from {out.source}" if out.obj is not None or not out.notes else out.source)]
    lines += [_comment(f"not converted: {note.path or '(the whole document)'}: {note.reason}") for note in out.notes]
    lines += [_comment(f"note: {remark}") for remark in out.remarks]
    body = yamltext.dump(out.obj) if out.obj is not None else ""
    if out.disabled:
        body = "".join(f"# {line}\n" for line in body.splitlines())
    return "\n".join(lines) + "\n" + body


def to_yaml(conversion: Conversion) -> str:
    """The conversion as multi-document YAML, for `kubectl apply -f -`."""
    return "---\n".join(document_text(out) for out in conversion.outputs)
