"""Every object reaches its goal from the current state alone, whatever order its events arrive in.

Against the real API server and the operator as its own ServiceAccount. No kubelet runs here, so the head never
becomes ready and Serve can never be asked: a deleted application on a live cluster must keep its finalizer (Serve
might still run it), and must lose it as soon as its cluster is gone, whichever came first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from serveplane.localcluster.controlplane import ControlPlane
from serveplane.localcluster.operatorproc import OperatorProcess
from serveplane.localcluster.testkit import condition, get_object, head_pod, wait_for

FINALIZER = "serveplane.dev/serve-cleanup"
CLUSTER = {
    "apiVersion": "serveplane.dev/v1alpha1",
    "kind": "ServeCluster",
    "metadata": {"name": "demo"},
    "spec": {"workerGroups": [{"name": "cpu", "replicas": 1}]},
}


def app(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "serveplane.dev/v1alpha1",
        "kind": "ServeApplication",
        "metadata": {"name": name},
        "spec": {"cluster": "demo", "importPath": "serveplane.examples.hello:app", "routePrefix": f"/{name}"},
    }


def sdep(name: str, application: str) -> dict[str, Any]:
    return {
        "apiVersion": "serveplane.dev/v1alpha1",
        "kind": "ServeDeployment",
        "metadata": {"name": name},
        "spec": {"application": application, "deploymentName": "Hello", "numReplicas": 1},
    }


def write(tmp_path: Path, docs: list[dict[str, Any]]) -> str:
    path = tmp_path / "resources.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def apply(cp: ControlPlane, namespace: str, docs: list[dict[str, Any]]) -> None:
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))


def has_finalizer(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    obj = get_object(cp, "sapp", name, namespace)
    return obj if obj and FINALIZER in (obj["metadata"].get("finalizers") or []) else None


def with_reason(
    cp: ControlPlane, kind: str, name: str, namespace: str, cond: str, reason: str
) -> dict[str, Any] | None:
    """The object once its condition `cond` has `reason`, else None (for wait_for)."""
    obj = get_object(cp, kind, name, namespace)
    return obj if condition(obj, cond).get("reason") == reason else None


def gone(cp: ControlPlane, kind: str, name: str, namespace: str) -> bool:
    return get_object(cp, kind, name, namespace) is None


def delete(cp: ControlPlane, namespace: str, *what: str) -> None:
    cp.kubectl("delete", "-n", namespace, *what, "--wait=false")


def test_application_deleted_before_its_cluster_waits_for_it_then_goes(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = controlplane
    apply(cp, namespace, [CLUSTER, app("hello")])
    wait_for("the finalizer", lambda: has_finalizer(cp, namespace, "hello"))
    wait_for("the cluster's pods", lambda: head_pod(cp, "demo", namespace))
    delete(cp, namespace, "sapp", "hello")
    # A round saw the deletion (the cluster's status no longer lists the application), and since Serve cannot be
    # asked whether it still runs the application, the finalizer holds...
    wait_for(
        "the cluster to drop the application from its config",
        lambda: (get_object(cp, "scl", "demo", namespace) or {}).get("status", {}).get("applications") == [],
    )
    held = has_finalizer(cp, namespace, "hello")
    assert held and held["metadata"].get("deletionTimestamp"), "released while Serve might still run it"
    # ...until the cluster goes, and Serve with it.
    delete(cp, namespace, "scl", "demo")
    wait_for("the application to go", lambda: gone(cp, "sapp", "hello", namespace))


def test_application_deleted_together_with_its_cluster_goes(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """`kubectl delete -f dir/`, an Argo CD prune: the cluster's and the application's events interleave."""
    cp = controlplane
    manifest = write(tmp_path, [CLUSTER, app("hello"), app("world"), sdep("hello-model", "hello")])
    cp.kubectl("apply", "-n", namespace, "-f", manifest)
    for name in ("hello", "world"):
        wait_for(f"the finalizer of {name}", lambda name=name: has_finalizer(cp, namespace, name))
    # Steady (its loop sleeps in a slow poll): the deletion events alone must get everything done.
    wait_for("the cluster's status", lambda: condition(get_object(cp, "scl", "demo", namespace), "Ready"))
    cp.kubectl("delete", "-n", namespace, "-f", manifest, "--wait=false")
    for name in ("hello", "world"):
        wait_for(f"{name} to go", lambda name=name: gone(cp, "sapp", name, namespace))
    wait_for("the cluster to go", lambda: gone(cp, "scl", "demo", namespace))


def test_application_deleted_after_its_cluster_goes(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = controlplane
    apply(cp, namespace, [CLUSTER, app("hello"), sdep("hello-model", "hello")])
    wait_for("the finalizer", lambda: has_finalizer(cp, namespace, "hello"))
    delete(cp, namespace, "scl", "demo")
    waiting = wait_for(
        "ClusterNotFound",
        lambda: with_reason(cp, "sapp", "hello", namespace, "Ready", "ClusterNotFound"),
    )
    assert condition(waiting, "Degraded")["status"] == "False"
    dep = wait_for(
        "the deployment to wait for its application on a cluster",
        lambda: with_reason(cp, "sdep", "hello-model", namespace, "Progressing", "WaitingForApplication"),
    )
    assert condition(dep, "Ready")["status"] == "False"
    delete(cp, namespace, "sapp", "hello")
    wait_for("the application to go", lambda: gone(cp, "sapp", "hello", namespace))


def test_deployment_whose_application_is_deleted_waits_for_it(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    cp = controlplane
    apply(cp, namespace, [CLUSTER, app("hello"), sdep("hello-model", "hello")])
    wait_for(
        "the cluster to take the deployment in",
        lambda: condition(get_object(cp, "sdep", "hello-model", namespace), "Progressing").get("reason") == "Waiting",
    )
    delete(cp, namespace, "scl", "demo")
    delete(cp, namespace, "sapp", "hello")
    wait_for("the application to go", lambda: gone(cp, "sapp", "hello", namespace))
    dep = wait_for(
        "the orphaned deployment's status",
        lambda: with_reason(cp, "sdep", "hello-model", namespace, "Ready", "ApplicationNotFound"),
    )
    assert "'hello'" in condition(dep, "Ready")["message"]


def test_deletions_while_the_operator_is_down_are_finished_by_its_successor(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    """The restarted operator starts from its initial listing: no event of the deletions ever reaches it."""
    cp = controlplane
    apply(cp, namespace, [CLUSTER, app("hello"), app("world")])
    for name in ("hello", "world"):
        wait_for(f"the finalizer of {name}", lambda name=name: has_finalizer(cp, namespace, name))
    operator.stop()
    try:
        delete(cp, namespace, "sapp", "hello")
        delete(cp, namespace, "scl", "demo")
        wait_for("the cluster to go (nothing holds it)", lambda: gone(cp, "scl", "demo", namespace))
        held = has_finalizer(cp, namespace, "hello")
        assert held and held["metadata"].get("deletionTimestamp"), "no operator ran: the finalizer must still hold"
    finally:
        operator.start()
    wait_for("the deleted application to go", lambda: gone(cp, "sapp", "hello", namespace))
    waiting = wait_for(
        "the other application to report its missing cluster",
        lambda: with_reason(cp, "sapp", "world", namespace, "Ready", "ClusterNotFound"),
    )
    assert FINALIZER in waiting["metadata"]["finalizers"]
