"""PURE: the names and metadata of the new documents, shared by every document made from one input.

Serve's application and deployment names and KubeRay's object and group names all become Kubernetes names the same
way here, and the names of one file's documents are kept unique in one place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..api.base import API_VERSION

# Serve's own default name of an application without one.
DEFAULT_APP_NAME = "default"
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def k8s_name(text: str) -> str:
    """A Kubernetes object name for a Serve name: MangoStand -> mango-stand, fruit_app -> fruit-app."""
    dashed = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", text)
    return _DNS_LABEL.sub("-", dashed.lower()).strip("-")[:63].strip("-") or DEFAULT_APP_NAME


@dataclass
class Context:
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
