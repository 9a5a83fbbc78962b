"""serveplane under a GitOps tool: what Argo CD or Flux would see, against the real API server and operator.

(a) No drift: once the operator has processed the examples, applying the same manifests again changes nothing,
    `kubectl diff` is empty, the operator owns no field under spec and added no annotation or label.
(b) Ordering: an application synced before its cluster waits with a clear condition and moves on once the
    cluster exists.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import OperatorProcess
from serveplane.localcluster.testkit import condition, get_object, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MANIFESTS = [EXAMPLES / "cluster.yaml", EXAMPLES / "hello.yaml", EXAMPLES / "composed.yaml"]
RESOURCES = [("servecluster", "demo"), ("serveapplication", "hello"), ("serveapplication", "composed"),
             ("servedeployment", "composed-model")]
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Field managers of kubectl itself: every other manager of these objects is the operator.
KUBECTL_MANAGERS = {"kubectl", "kubectl-client-side-apply", "kubectl-last-applied", "before-first-apply"}




def get(cp: ControlPlane, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    return get_object(cp, kind, name, namespace, "--show-managed-fields")




def files(paths: list[Path]) -> list[str]:
    return [arg for path in paths for arg in ("-f", str(path))]





def observed(cp: ControlPlane, namespace: str) -> dict[tuple[str, str], dict[str, Any]] | None:
    """Every resource, once the operator has written a status for its current generation."""
    out = {}
    for kind, name in RESOURCES:
        obj = get(cp, kind, name, namespace)
        if not obj or (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]:
            return None
        out[(kind, name)] = obj
    return out


def settled(
    cp: ControlPlane, namespace: str, operator_rounds: Callable[..., None]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Wait until the operator has processed everything and stopped writing: no resourceVersion moved during
    rounds of the operator that all saw the resources as they are."""
    before = wait_for("every status to observe its generation", lambda: observed(cp, namespace))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        operator_rounds(3)
        after = observed(cp, namespace)
        if after and all(after[k]["metadata"]["resourceVersion"] == before[k]["metadata"]["resourceVersion"]
                         for k in after):
            return after
        before = after or before
    raise AssertionError("the operator kept writing to the resources")


def server_side_apply(cp: ControlPlane, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    out = json.loads(cp.kubectl("apply", "--server-side", "-n", namespace, "-o", "json", "--show-managed-fields",
                                *files(MANIFESTS)).stdout)
    items = out["items"] if out.get("kind") == "List" else [out]
    return {(item["kind"].lower(), item["metadata"]["name"]): item for item in items}


def operator_managers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in obj["metadata"].get("managedFields") or [] if m["manager"] not in KUBECTL_MANAGERS]


def test_no_drift_after_the_operator_has_processed_the_manifests(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str, operator_rounds: Callable[..., None]
) -> None:
    cp = controlplane
    first = server_side_apply(cp, namespace)
    assert set(first) == set(RESOURCES)
    live = settled(cp, namespace, operator_rounds)

    # The operator's marks: the finalizer on applications, and status. Nothing else.
    for key, obj in live.items():
        meta = obj["metadata"]
        assert (meta.get("annotations") or {}) == (first[key]["metadata"].get("annotations") or {}), key
        assert not any("kopf" in a for a in meta.get("annotations") or {}), key
        assert (meta.get("labels") or {}) == (first[key]["metadata"].get("labels") or {}), key
        expected_finalizers = ["serveplane.dev/serve-cleanup"] if key[0] == "serveapplication" else []
        assert (meta.get("finalizers") or []) == expected_finalizers, key
        managers = operator_managers(obj)
        assert managers, f"{key}: no field manager of the operator, so this test checks nothing"
        for entry in managers:
            owned = entry.get("fieldsV1") or {}
            assert "f:spec" not in owned, f"{key}: the operator's manager {entry['manager']!r} owns spec fields"
            if entry.get("subresource") != "status":
                # Outside the status subresource it may own only the finalizer.
                assert set(owned) <= {"f:metadata"} and set(owned.get("f:metadata", {})) <= {"f:finalizers"}, entry

    # (1) The same manifests, server-side applied again: a no-op on every object.
    again = server_side_apply(cp, namespace)
    after = {key: get(cp, key[0], key[1], namespace) for key in RESOURCES}
    for key in RESOURCES:
        for state in (again[key], after[key]):
            assert state["metadata"]["generation"] == live[key]["metadata"]["generation"], key
            assert state["metadata"]["resourceVersion"] == live[key]["metadata"]["resourceVersion"], (
                f"{key}: re-applying the same manifest wrote the object")
            assert state["metadata"]["managedFields"] == live[key]["metadata"]["managedFields"], key
        assert after[key]["spec"] == live[key]["spec"], key
    # A server-side `kubectl diff` (what Argo CD's server-side diff does) agrees.
    diff = cp.kubectl("diff", "--server-side", "-n", namespace, *files(MANIFESTS), check=False)
    assert diff.returncode == 0, f"server-side kubectl diff found drift:\n{diff.stdout}\n{diff.stderr}"

    # (2) Client-side apply (what Argo CD does by default), then `kubectl diff`: empty, exit code 0.
    cp.kubectl("apply", "-n", namespace, *files(MANIFESTS))
    diff = cp.kubectl("diff", "-n", namespace, *files(MANIFESTS), check=False)
    assert diff.returncode == 0, f"kubectl diff found drift:\n{diff.stdout}\n{diff.stderr}"
    assert diff.stdout == ""
    operator_rounds(3)  # rounds in which the operator could react to the client-side apply
    for key in RESOURCES:
        obj = get(cp, key[0], key[1], namespace)
        annotations = dict(obj["metadata"].get("annotations") or {})
        assert LAST_APPLIED in annotations, key
        annotations.pop(LAST_APPLIED)
        assert annotations == (first[key]["metadata"].get("annotations") or {}), f"{key}: annotations were added"
        assert obj["metadata"]["generation"] == live[key]["metadata"]["generation"], key
        assert obj["spec"] == live[key]["spec"], key
        for entry in operator_managers(obj):
            assert "f:spec" not in (entry.get("fieldsV1") or {}), key
    diff = cp.kubectl("diff", "-n", namespace, *files(MANIFESTS), check=False)
    assert diff.returncode == 0, f"kubectl diff found drift after the operator's next round:\n{diff.stdout}"


def test_an_application_synced_before_its_cluster_waits_then_joins(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = controlplane
    cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "hello.yaml"))

    def reason(wanted: Callable[[str], bool]) -> dict[str, Any] | None:
        obj = get(cp, "sapp", "hello", namespace)
        ready = condition(obj, "Ready")
        return obj if ready and wanted(ready["reason"]) else None

    waiting = wait_for("ClusterNotFound", lambda: reason(lambda r: r == "ClusterNotFound"))
    ready = condition(waiting, "Ready")
    assert ready["status"] == "False"
    assert ready["message"] == f"waiting for ServeCluster 'demo' in namespace '{namespace}' to exist"
    assert condition(waiting, "Progressing")["status"] == "True"
    assert condition(waiting, "Degraded")["status"] == "False", "waiting for a cluster is not a failure"
    assert waiting["status"]["observedGeneration"] == waiting["metadata"]["generation"]

    cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "cluster.yaml"))
    moved = wait_for("the application to move past ClusterNotFound",
                     lambda: reason(lambda r: r != "ClusterNotFound"))
    assert condition(moved, "Ready")["reason"] in ("ClusterUnavailable", "HeadNotReady", "Submitted", "Deploying")
    cluster = wait_for("the cluster to list the application",
                       lambda: (lambda o: o if "hello" in ((o or {}).get("status") or {}).get("applications", [])
                                else None)(get(cp, "scl", "demo", namespace)))
    assert cluster["status"]["applications"] == ["hello"]
    ingress = wait_for("the Ingress", lambda: get(cp, "ingress", "demo-serve", namespace))
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/hello"]
    # No kubelet runs the pods here: the ServeCluster waits for its head, which is what the application reports.
    assert condition(cluster, "Ready")["reason"] == "HeadNotReady"
    cp.kubectl("delete", "-n", namespace, "-f", str(EXAMPLES / "cluster.yaml"), "--wait=false")
    # With no cluster, a deleted application is let go at once (its finalizer is released).
    wait_for("ClusterNotFound again", lambda: reason(lambda r: r == "ClusterNotFound"))
    cp.kubectl("delete", "sapp", "hello", "-n", namespace, "--timeout=60s")
