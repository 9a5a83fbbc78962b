"""Turns the pydantic models into apiextensions.k8s.io/v1 CRDs with structural schemas.

pydantic's JSON Schema uses $ref, anyOf-with-null and titles, none of which a structural schema allows; this
module inlines references, drops the null branches (unset fields are omitted, never null) and keeps the parts
Kubernetes understands: descriptions, defaults, bounds, patterns, enums and `x-kubernetes-*` hints.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .base import GROUP, VERSION, rules_on_create
from .kinds import CATEGORY, KINDS, Kind

_KEPT = {
    "type", "description", "default", "enum", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "required", "properties", "items",
    "additionalProperties", "nullable", "maxProperties", "minProperties",
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].split("/")[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _drop_null_branch(node: dict[str, Any]) -> dict[str, Any]:
    branches = [b for b in node.get("anyOf", []) if b.get("type") != "null"]
    if "anyOf" not in node or len(branches) != 1:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    # The outer node's description and default win over the branch's.
    return {**branches[0], **rest}


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    node = _drop_null_branch(node)
    if node.get("default", ...) is None:
        del node["default"]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key == "properties":
            out[key] = {name: _structural(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _structural(value) if value else {"x-kubernetes-preserve-unknown-fields": True}
        elif key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "additionalProperties" and value is False:
            continue
        elif key in _KEPT:
            out[key] = value
    # Structural schemas allow either named properties or additionalProperties, not both.
    if "properties" in out:
        out.pop("additionalProperties", None)
        out.pop("x-kubernetes-preserve-unknown-fields", None)
    elif out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
    # JSON Schema 2020-12 (pydantic) gives exclusive bounds as numbers, OpenAPI 3.0 (Kubernetes) as flags.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(out.get(exclusive), (int, float)) and not isinstance(out[exclusive], bool):
            out[bound], out[exclusive] = out[exclusive], True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "x-kubernetes-int-or-string" in out:
        out.pop("type", None)
    elif out.get("type") == "integer" and "format" not in out:
        out["format"] = "int64"
    return out


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(_resolve(raw, defs))


def crd_for(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = _model_schema(kind.spec)
    status_schema = _model_schema(kind.status)
    spec_schema["description"] = f"Desired state of the {kind.kind}."
    status_schema["description"] = f"Observed state of the {kind.kind}, written by the operator."
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale:
        subresources["scale"] = dict(kind.scale)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/name": "serveplane", "app.kubernetes.io/part-of": "serveplane"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": kind.columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "APIVersion of this object."},
                                "kind": {"type": "string", "description": "Kind of this object."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                            **(rules_on_create(*kind.create_rules) if kind.create_rules else {}),
                        }
                    },
                }
            ],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    return [crd_for(kind) for kind in KINDS]
