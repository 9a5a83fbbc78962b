"""The operator against the real API server, running as its own ServiceAccount under the chart's RBAC.

There is no kubelet in these tests (the e2e suite adds one that runs real Ray): pods get scheduled but never
run, so where a test needs a Ready pod it patches the pod's status through the status subresource, as
envtest-based suites do. Pod IPs are set to 127.0.0.2, where nothing listens, so the dashboard is unreachable.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from serveplane.localcluster.controlplane import ControlPlane, KubectlError
from serveplane.localcluster.operatorproc import OperatorProcess
from serveplane.localcluster.testkit import condition, wait_for
from serveplane.localcluster.testkit import get_object as get
from serveplane.operator.render import render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"






def apply(cp: ControlPlane, docs: list[dict[str, Any]] | str, namespace: str, *extra: str) -> str:
    text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs)
    return cp.kubectl("apply", "-n", namespace, *extra, "-f", "-", input=text).stdout


def mark_ready(cp: ControlPlane, pod: str, namespace: str) -> None:
    status = {
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.2",
            "podIPs": [{"ip": "127.0.0.2"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
        }
    }
    cp.kubectl("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(status))







def cluster_doc(workers: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "serveplane.dev/v1alpha1",
        "kind": "ServeCluster",
        "metadata": {"name": "demo"},
        "spec": {
            "workerGroups": [{"name": "cpu", "replicas": workers}],
            "ingress": {"enabled": True, "host": "demo.example.com"},
        },
    }


def app_doc(name: str, **spec: Any) -> dict[str, Any]:
    body = {"cluster": "demo", "importPath": "serveplane.examples.hello:app", **spec}
    return {
        "apiVersion": "serveplane.dev/v1alpha1", "kind": "ServeApplication", "metadata": {"name": name}, "spec": body,
    }


def test_examples_are_accepted(controlplane: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    out = controlplane.kubectl("apply", "-n", namespace, "--dry-run=server", "-f", str(EXAMPLES)).stdout
    assert "servecluster.serveplane.dev/demo created (server dry run)" in out
    assert "serveapplication.serveplane.dev/hello created (server dry run)" in out
    assert "servedeployment.serveplane.dev/composed-model created (server dry run)" in out
    # Only ever dry-run: a trial node has no GPU (dev up, Argo CD's example app and the GitOps tests leave it out).
    assert "servecluster.serveplane.dev/gpu created (server dry run)" in out


def test_pods_of_the_gpu_example_pass_the_api_servers_validation(controlplane: ControlPlane, namespace: str) -> None:
    """The merged podTemplate, /dev/shm and securityContext as the API server and its admission check them, in a
    server-side dry run: nothing is scheduled (there is no GPU here)."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "gpu-cluster.yaml").read_text()) if d]
    built = [o for _, content in render(docs, "serveplane/runtime:0.1.0") if isinstance(content, list) for o in content]
    built_pods = [{**o, "metadata": {**o["metadata"], "namespace": namespace}} for o in built if o["kind"] == "Pod"]
    assert len(built_pods) == 4
    # The Priority admission plugin refuses a pod naming a PriorityClass that does not exist, dry run or not.
    priority = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "serving"},
                "value": 1000}
    controlplane.kubectl("apply", "-f", "-", input=yaml.safe_dump(priority))
    try:
        out = apply(controlplane, built_pods, namespace, "--dry-run=server")
    finally:
        controlplane.kubectl("delete", "priorityclass", "serving", "--wait=false")
    assert out.count("created (server dry run)") == 4, out


INVALID = {
    "missing import path": (
        {"kind": "ServeApplication", "spec": {"cluster": "demo"}},
        'spec.importPath: Required value',
    ),
    "import path syntax": (
        {"kind": "ServeApplication", "spec": {"importPath": "not a path"}},
        "importPath must look like package.module:attribute",
    ),
    "negative worker replicas": (
        {"kind": "ServeCluster", "spec": {"workerGroups": [{"name": "cpu", "replicas": -1}]}},
        "spec.workerGroups[0].replicas: Invalid value: -1: "
        "spec.workerGroups[0].replicas in body should be greater than or equal to 0",
    ),
    "zero deployment replicas": (
        {"kind": "ServeDeployment", "spec": {"application": "a", "numReplicas": 0}},
        "spec.numReplicas in body should be greater than or equal to 1",
    ),
    "unknown proxy location": (
        {"kind": "ServeCluster", "spec": {"serve": {"proxyLocation": "Everywhere"}}},
        'spec.serve.proxyLocation: Unsupported value: "Everywhere": supported values: "EveryNode", "HeadOnly"',
    ),
    "bad route prefix": (
        {"kind": "ServeApplication", "spec": {"importPath": "a.b:c", "routePrefix": "hello/"}},
        "spec.routePrefix in body should match",
    ),
    "replicas and autoscaling": (
        {
            "kind": "ServeDeployment",
            "spec": {"application": "a", "numReplicas": 2, "autoscalingConfig": {"maxReplicas": 3}},
        },
        "set either numReplicas or autoscalingConfig, not both",
    ),
    "pod template label not a string": (
        {"kind": "ServeCluster", "spec": {"head": {"podTemplate": {"metadata": {"labels": {"team": 7}}}}}},
        "spec.head.podTemplate.metadata.labels.team in body must be of type string",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_resources_are_rejected_with_a_clear_message(
    controlplane: ControlPlane, operator: OperatorProcess, case: str
) -> None:
    doc, message = INVALID[case]
    doc = {"apiVersion": "serveplane.dev/v1alpha1", "metadata": {"name": "bad"}, **doc}
    with pytest.raises(KubectlError) as failure:
        apply(controlplane, [doc], "default", "--dry-run=server")
    assert message in failure.value.stderr


def test_cluster_becomes_pods_services_and_ingress(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    apply(controlplane, [cluster_doc(), app_doc("hello"), app_doc("other", routePrefix="/other")], namespace)
    cluster = wait_for("the cluster", lambda: get(controlplane, "scl", "demo", namespace))
    names = ["demo-head", "demo-worker-cpu-0", "demo-worker-cpu-1"]
    for pod in names:
        found = wait_for(f"pod {pod}", lambda pod=pod: get(controlplane, "pod", pod, namespace))
        owner = found["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("ServeCluster", cluster["metadata"]["uid"], True)
        assert found["metadata"]["labels"]["serveplane.dev/cluster"] == "demo"
        assert found["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "serveplane"
        assert found["spec"]["nodeName"], "the real scheduler binds every pod to a node"
    head_svc = wait_for("head Service", lambda: get(controlplane, "service", "demo-head", namespace))
    assert head_svc["spec"]["clusterIP"] == "None"
    serve_svc = wait_for("serve Service", lambda: get(controlplane, "service", "demo-serve", namespace))
    assert {p["name"]: p["port"] for p in serve_svc["spec"]["ports"]} == {"http": 8000, "grpc": 9000}
    ingress = wait_for("Ingress", lambda: get(controlplane, "ingress", "demo-serve", namespace))
    paths = sorted(p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"])
    assert paths == ["/hello", "/other"]

    # Without a ready head, the statuses say so, through the status subresource, for the current generation.
    def waiting() -> dict[str, Any] | None:
        obj = get(controlplane, "scl", "demo", namespace)
        return obj if condition(obj, "Ready").get("reason") == "HeadNotReady" else None

    obj = wait_for("ServeCluster status", waiting)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["desiredNodes"] == 3
    for kind in ("Ready", "Progressing", "Degraded"):
        found = condition(obj, kind)
        assert set(found) >= {"type", "status", "reason", "message", "observedGeneration", "lastTransitionTime"}

    # A head that is Ready but whose dashboard does not answer shows up as such, on the cluster and its apps.
    mark_ready(controlplane, "demo-head", namespace)
    wait_for(
        "DashboardUnavailable",
        lambda: condition(get(controlplane, "scl", "demo", namespace), "Ready").get("reason") == "DashboardUnavailable",
    )
    app = wait_for(
        "application status",
        lambda: (lambda o: o if condition(o, "Ready").get("reason") == "ClusterUnavailable" else None)(
            get(controlplane, "sapp", "hello", namespace)
        ),
    )
    assert app["status"]["routePrefix"] == "/hello"
    assert "serveplane.dev/serve-cleanup" in app["metadata"]["finalizers"]

    # Scaling the worker group down removes exactly the extra pod.
    controlplane.kubectl(
        "patch", "scl", "demo", "-n", namespace, "--type=json",
        "-p", json.dumps([{"op": "replace", "path": "/spec/workerGroups/0/replicas", "value": 1}]),
    )
    wait_for(
        "demo-worker-cpu-1 to be deleted",
        lambda: (get(controlplane, "pod", "demo-worker-cpu-1", namespace) or {})
        .get("metadata", {})
        .get("deletionTimestamp")
        or get(controlplane, "pod", "demo-worker-cpu-1", namespace) is None,
    )


def test_deleted_pod_is_recreated(controlplane: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(controlplane, [cluster_doc(workers=1)], namespace)
    first = wait_for("worker pod", lambda: get(controlplane, "pod", "demo-worker-cpu-0", namespace))
    # No kubelet confirms the deletion here, so force it, as the kubelet would once the containers stopped.
    controlplane.kubectl("delete", "pod", "demo-worker-cpu-0", "-n", namespace, "--grace-period=0", "--force")
    again = wait_for(
        "a new worker pod",
        lambda: (lambda p: p if p and p["metadata"]["uid"] != first["metadata"]["uid"] else None)(
            get(controlplane, "pod", "demo-worker-cpu-0", namespace)
        ),
    )
    assert again["metadata"]["ownerReferences"][0]["name"] == "demo"


def test_deleting_the_cluster_garbage_collects_what_it_owns(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    apply(controlplane, [cluster_doc(workers=1), app_doc("hello")], namespace)
    wait_for("Ingress", lambda: get(controlplane, "ingress", "demo-serve", namespace))
    wait_for("pods", lambda: get(controlplane, "pod", "demo-worker-cpu-0", namespace))
    controlplane.kubectl("delete", "scl", "demo", "-n", namespace, "--wait=false")
    # The real controller-manager's garbage collector removes the owned objects.
    for kind, name in (("service", "demo-head"), ("service", "demo-serve"), ("ingress", "demo-serve")):
        wait_for(f"{kind} {name} to go", lambda kind=kind, name=name: get(controlplane, kind, name, namespace) is None)
    for pod in ("demo-head", "demo-worker-cpu-0"):
        # Scheduled pods wait for a kubelet to confirm; the GC's part is to start their deletion.
        wait_for(
            f"{pod} to be deleted",
            lambda pod=pod: get(controlplane, "pod", pod, namespace) is None
            or get(controlplane, "pod", pod, namespace)["metadata"].get("deletionTimestamp"),
        )
    app = wait_for(
        "the orphaned application to say so",
        lambda: (lambda o: o if condition(o, "Ready").get("reason") == "ClusterNotFound" else None)(
            get(controlplane, "sapp", "hello", namespace)
        ),
    )
    assert "waiting for ServeCluster 'demo'" in condition(app, "Ready")["message"]
    # With no cluster, a deleted application is let go at once.
    controlplane.kubectl("delete", "sapp", "hello", "-n", namespace, "--timeout=30s")


def test_kubectl_scale_uses_the_scale_subresource(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    sdep = {
        "apiVersion": "serveplane.dev/v1alpha1",
        "kind": "ServeDeployment",
        "metadata": {"name": "model"},
        "spec": {"application": "composed", "deploymentName": "Model", "numReplicas": 1},
    }
    apply(controlplane, [sdep], namespace)
    controlplane.kubectl("scale", "sdep/model", "-n", namespace, "--replicas=3")
    assert get(controlplane, "sdep", "model", namespace)["spec"]["numReplicas"] == 3
    scale = json.loads(
        controlplane.kubectl(
            "get", "--raw", f"/apis/serveplane.dev/v1alpha1/namespaces/{namespace}/servedeployments/model/scale"
        ).stdout
    )
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
    # Its application does not exist: the operator says so on the resource instead of failing silently.
    orphan = wait_for(
        "ApplicationNotFound",
        lambda: (lambda o: o if condition(o, "Ready").get("reason") == "ApplicationNotFound" else None)(
            get(controlplane, "sdep", "model", namespace)
        ),
    )
    assert condition(orphan, "Progressing")["reason"] == "WaitingForApplication"
    assert orphan["status"]["observedGeneration"] == orphan["metadata"]["generation"]


def test_kubectl_get_serveplane_lists_all_kinds(controlplane: ControlPlane, operator: OperatorProcess) -> None:
    resources = controlplane.kubectl("api-resources", "--categories=serveplane", "-o", "name").stdout.split()
    assert sorted(resources) == [
        "serveapplications.serveplane.dev", "serveclusters.serveplane.dev", "servedeployments.serveplane.dev"
    ]
    explained = controlplane.kubectl("explain", "serveapplication.spec").stdout
    assert "importPath" in explained and "package.module:attribute" in explained


def test_a_changed_pod_spec_rolls_one_pod_at_a_time_without_extra_pods(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    def pods() -> dict[str, dict[str, Any]]:
        found = json.loads(controlplane.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
        return {p["metadata"]["name"]: p for p in found}

    apply(controlplane, [cluster_doc(workers=1)], namespace)
    for pod in ("demo-head", "demo-worker-cpu-0"):
        wait_for(pod, lambda pod=pod: get(controlplane, "pod", pod, namespace))
        mark_ready(controlplane, pod, namespace)
    controlplane.kubectl(
        "patch", "scl", "demo", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"image": "ray:new"}})
    )
    # Workers go first, one at a time; nothing is added beside them, so an upgrade never doubles the cluster.
    first = wait_for(
        "one pod to be replaced",
        lambda: [n for n, p in pods().items() if p["metadata"].get("deletionTimestamp")],
    )
    assert first == ["demo-worker-cpu-0"]
    time.sleep(3)
    now = pods()
    assert len(now) == 2 and not now["demo-head"]["metadata"].get("deletionTimestamp")
    # The kubelet's part: the old worker stops; the operator then creates it anew with the new image.
    controlplane.kubectl("delete", "pod", "demo-worker-cpu-0", "-n", namespace, "--grace-period=0", "--force")
    worker = wait_for(
        "the new worker",
        lambda: (lambda p: p if p and p["spec"]["containers"][0]["image"] == "ray:new" else None)(
            get(controlplane, "pod", "demo-worker-cpu-0", namespace)
        ),
    )
    assert not get(controlplane, "pod", "demo-head", namespace)["metadata"].get("deletionTimestamp"), (
        "the head waits until the new worker is ready"
    )
    mark_ready(controlplane, worker["metadata"]["name"], namespace)
    wait_for(
        "the head to be replaced last",
        lambda: get(controlplane, "pod", "demo-head", namespace)["metadata"].get("deletionTimestamp"),
    )
