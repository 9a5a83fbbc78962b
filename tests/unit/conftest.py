"""Builders of resource dicts shaped as the API server returns them, for the unit tests of the pure modules.

Exposed as the `k8s` fixture (a conftest is not importable by name: the repository root has one too).
"""
from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

API_VERSION = "serveplane.dev/v1alpha1"
NAMESPACE = "team-a"
CREATED = "2024-05-01T10:00:00Z"


class Builders:
    """Objects as `GET` returns them: apiVersion, kind, metadata (with server-set fields), spec, status."""

    namespace = NAMESPACE
    created = CREATED

    def __init__(self) -> None:
        self._uids = itertools.count(1)

    def resource(
        self,
        kind: str,
        name: str,
        spec: dict[str, Any] | None = None,
        *,
        api_version: str = API_VERSION,
        namespace: str = NAMESPACE,
        created: str = CREATED,
        generation: int = 1,
        deleting: bool = False,
        finalizers: list[str] | None = None,
        status: dict[str, Any] | None = None,
        uid: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"00000000-0000-0000-0000-{next(self._uids):012d}",
            "generation": generation,
            "creationTimestamp": created,
            "resourceVersion": str(1000 + generation),
        }
        if labels is not None:
            metadata["labels"] = dict(labels)
        if finalizers is not None:
            metadata["finalizers"] = list(finalizers)
        if deleting:
            metadata["deletionTimestamp"] = "2024-05-02T10:00:00Z"
        obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
        if spec is not None:
            obj["spec"] = copy.deepcopy(spec)
        if status is not None:
            obj["status"] = copy.deepcopy(status)
        return obj

    def cluster(self, name: str = "demo", spec: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.resource("ServeCluster", name, spec or {}, **kw)

    def app(self, name: str, spec: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """A ServeApplication; `importPath` defaults to a valid one."""
        body = {"cluster": "demo", "importPath": f"apps.{name.replace('-', '_')}:app", **(spec or {})}
        return self.resource("ServeApplication", name, body, **kw)

    def sdep(self, name: str, application: str, spec: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.resource("ServeDeployment", name, {"application": application, **(spec or {})}, **kw)

    def observed(
        self,
        pod: dict[str, Any],
        *,
        ready: bool = True,
        phase: str = "Running",
        ip: str | None = "10.0.0.1",
        deleting: bool = False,
        uid: str | None = None,
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        created: str | None = None,
        ready_since: str | None = None,
    ) -> dict[str, Any]:
        """A desired pod as the API server would return it once running (or not); `created` and `ready_since`
        (the Ready condition's lastTransitionTime) are RFC 3339 times, for the rules that count from them."""
        out = copy.deepcopy(pod)
        meta = out["metadata"]
        meta.setdefault("uid", uid or f"pod-{next(self._uids)}")
        if created is not None:
            meta["creationTimestamp"] = created
        meta.setdefault("creationTimestamp", CREATED)
        meta.setdefault("resourceVersion", "7")
        if annotations is not None:
            meta["annotations"] = dict(annotations)
        if labels:
            meta["labels"] = {**meta.get("labels", {}), **labels}
        if deleting:
            meta["deletionTimestamp"] = "2024-05-02T10:00:00Z"
        condition = {"type": "Ready", "status": "True" if ready else "False"}
        if ready_since is not None:
            condition["lastTransitionTime"] = ready_since
        status: dict[str, Any] = {"phase": phase, "conditions": [condition]}
        if ip:
            status["podIP"] = ip
        out["status"] = status
        return out


@pytest.fixture
def k8s() -> Builders:
    return Builders()
