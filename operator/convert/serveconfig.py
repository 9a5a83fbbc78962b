"""PURE: the Serve config itself (a RayService's serveConfigV2, or --serve-config) and its cluster-level options.

Apart from its applications (applications.py): these options are the ServeCluster's spec.serve, read before the
pods are, whose port declarations are checked against the serve ports.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ..api.cluster import ServeOptions
from .dispatch import dispatch
from .mapping import MISSING, NO_FIELD_REASONS, map_field
from .outputs import Output, child


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
    return next((p + key for p in prefixes if p + key in ServeOptions.model_fields), None)


def _section(section: str, values: Any, path: str, out: Output) -> dict[str, Any]:
    """The ServeOptions fields of one `<x>_options` section of the Serve config."""
    options: dict[str, Any] = {}

    def option(key: str, value: Any, where: str) -> None:
        name = _option_field(section, key)
        if name is None:
            out.note(where, NO_FIELD_REASONS.get(key, f"ServeOptions has no field for {section}.{key}"))
            return
        converted = map_field(ServeOptions, name, value, where, out)
        if converted is not MISSING:
            options[name] = converted

    # The gRPC servicers are the applications' (see applications.py).
    servicers = {SERVICERS: lambda v, w: None} if section == "grpc_options" else {}
    dispatch(values, path, out, servicers, {}, section, otherwise=option)
    return options


def serve_options(config: Mapping[str, Any], path: str, out: Output) -> dict[str, Any]:
    """ServeCluster.spec.serve from the cluster-level keys of a Serve config (all but `applications`)."""
    options: dict[str, Any] = {}
    for key, value in config.items():
        where = child(path, str(key))
        if key == "applications":
            continue
        if key in ServeOptions.model_fields or not str(key).endswith("_options"):
            converted = map_field(ServeOptions, str(key), value, where, out)
            if converted is not MISSING:
                options[str(key)] = converted
        else:
            options.update(_section(str(key), value, where, out))
    return options


def free_grpc_port(options: dict[str, Any], out: Output) -> None:
    """Serve's default gRPC port is 9000; when the HTTP port is 9000 too (KubeRay's different-port sample) the
    serve Service would have one port twice, so the gRPC proxy moves to the next free one."""
    if "grpc_port" in options:
        return
    default = ServeOptions.model_fields["grpc_port"].default
    http, grpc = options.get("http_port", ServeOptions.model_fields["http_port"].default), default
    while grpc == http:
        grpc += 1
    if grpc != default:
        options["grpc_port"] = grpc
        out.remark(f"spec.serve.grpcPort {grpc}: Serve's default gRPC port {default} is the HTTP port here")
