"""The operator against the real API server, running as its own ServiceAccount under the chart's RBAC.

There is no kubelet in these tests (the e2e suite adds one that runs real Ray): pods get scheduled but never
run, so where a test needs a Ready pod it patches the pod's status through the status subresource, as
envtest-based suites do. Pod IPs are set to 127.0.0.2, where nothing listens, so the dashboard is unreachable.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from serveplane.localcluster.controlplane import ControlPlane, KubectlError
from serveplane.localcluster.operatorproc import OperatorProcess
from serveplane.localcluster.testkit import (
    GENERATION_LABEL,
    condition,
    generation_of,
    head_pod,
    ray_pods,
    wait_for,
    worker_pods,
)
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
    found_pods = wait_for(
        "the head and two workers",
        lambda: (lambda ps: ps if len(ps) == 3 and all(p["spec"].get("nodeName") for p in ps) else None)(
            ray_pods(controlplane, "demo", namespace)
        ),
    )
    # One generation, named by its hash, in every pod's label and name.
    (gen,) = {generation_of(p) for p in found_pods}
    assert gen, "every Ray pod carries its generation"
    names = sorted(p["metadata"]["name"] for p in found_pods)
    assert names == [f"demo-{gen}-head", f"demo-{gen}-worker-cpu-0", f"demo-{gen}-worker-cpu-1"]
    for found in found_pods:
        owner = found["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("ServeCluster", cluster["metadata"]["uid"], True)
        assert found["metadata"]["labels"]["serveplane.dev/cluster"] == "demo"
        assert found["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "serveplane"
        assert found["spec"]["nodeName"], "the real scheduler binds every pod to a node"
    assert [p["metadata"]["name"] for p in worker_pods(controlplane, "demo", namespace, "cpu")] == names[1:]
    head_svc = wait_for("head Service", lambda: get(controlplane, "service", "demo-head", namespace))
    assert head_svc["spec"]["clusterIP"] == "None"
    assert head_svc["spec"]["selector"][GENERATION_LABEL] == gen, "the head Service selects the active generation"
    # The workers join their own generation's head by a Service of its own.
    gen_svc = wait_for("the generation's head Service", lambda: get(controlplane, "service", f"demo-{gen}-head",
                                                                   namespace))
    assert gen_svc["spec"]["clusterIP"] == "None" and gen_svc["spec"]["selector"][GENERATION_LABEL] == gen
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
    assert obj["status"]["activeGeneration"] == gen
    assert obj["status"]["headPod"] == f"demo-{gen}-head"
    for kind in ("Ready", "Progressing", "Degraded"):
        found = condition(obj, kind)
        assert set(found) >= {"type", "status", "reason", "message", "observedGeneration", "lastTransitionTime"}

    # A head that is Ready but whose dashboard does not answer shows up as such, on the cluster and its apps.
    mark_ready(controlplane, f"demo-{gen}-head", namespace)
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
    extra = f"demo-{gen}-worker-cpu-1"
    wait_for(
        f"{extra} to be deleted",
        lambda: (get(controlplane, "pod", extra, namespace) or {}).get("metadata", {}).get("deletionTimestamp")
        or get(controlplane, "pod", extra, namespace) is None,
    )
    kept = {p["metadata"]["name"]: p for p in ray_pods(controlplane, "demo", namespace)}
    for name in (f"demo-{gen}-head", f"demo-{gen}-worker-cpu-0"):
        assert not kept[name]["metadata"].get("deletionTimestamp"), f"{name} stays"


def test_deleted_pod_is_recreated(controlplane: ControlPlane, operator: OperatorProcess, namespace: str) -> None:
    apply(controlplane, [cluster_doc(workers=1)], namespace)
    first = wait_for("worker pod", lambda: worker_pods(controlplane, "demo", namespace, "cpu"))[0]
    name = first["metadata"]["name"]
    # No kubelet confirms the deletion here, so force it, as the kubelet would once the containers stopped.
    controlplane.kubectl("delete", "pod", name, "-n", namespace, "--grace-period=0", "--force")
    again = wait_for(
        "a new worker pod",
        lambda: (lambda p: p if p and p["metadata"]["uid"] != first["metadata"]["uid"] else None)(
            get(controlplane, "pod", name, namespace)
        ),
    )
    assert again["metadata"]["ownerReferences"][0]["name"] == "demo"
    assert generation_of(again) == generation_of(first), "the same generation: the same pod, made anew"


def test_deleting_the_cluster_garbage_collects_what_it_owns(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    apply(controlplane, [cluster_doc(workers=1), app_doc("hello")], namespace)
    wait_for("Ingress", lambda: get(controlplane, "ingress", "demo-serve", namespace))
    owned = wait_for("pods", lambda: (lambda ps: ps if len(ps) == 2 else None)(
        ray_pods(controlplane, "demo", namespace)))
    gen = generation_of(owned[0])
    wait_for("the generation's head Service", lambda: get(controlplane, "service", f"demo-{gen}-head", namespace))
    controlplane.kubectl("delete", "scl", "demo", "-n", namespace, "--wait=false")
    # The real controller-manager's garbage collector removes the owned objects.
    services = (("service", "demo-head"), ("service", f"demo-{gen}-head"), ("service", "demo-serve"))
    for kind, name in (*services, ("ingress", "demo-serve")):
        wait_for(f"{kind} {name} to go", lambda kind=kind, name=name: get(controlplane, kind, name, namespace) is None)
    for pod in (p["metadata"]["name"] for p in owned):
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


def namespace_pods(cp: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    """Every pod of the namespace, by name: whatever the operator made, not only what its labels say."""
    found = json.loads(cp.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: p for p in found}


def deleting(pods: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(n for n, p in pods.items() if p["metadata"].get("deletionTimestamp"))


def test_a_changed_worker_group_rolls_one_pod_at_a_time_without_extra_pods(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str, operator_rounds: Callable[..., None]
) -> None:
    """A change to a worker group alone is made in place, within the generation: one worker at a time."""
    cp = controlplane
    apply(cp, [cluster_doc(workers=2)], namespace)
    found = wait_for("the head and two workers", lambda: (lambda ps: ps if len(ps) == 3 else None)(
        ray_pods(cp, "demo", namespace)))
    gen = generation_of(found[0])
    head, worker0, worker1 = f"demo-{gen}-head", f"demo-{gen}-worker-cpu-0", f"demo-{gen}-worker-cpu-1"
    assert sorted(p["metadata"]["name"] for p in found) == [head, worker0, worker1]
    for pod in found:
        mark_ready(cp, pod["metadata"]["name"], namespace)
    env = [{"name": "ROLLED", "value": "yes"}]
    cp.kubectl("patch", "scl", "demo", "-n", namespace, "--type=json",
               "-p", json.dumps([{"op": "add", "path": "/spec/workerGroups/0/env", "value": env}]))

    def rolled(name: str) -> dict[str, Any] | None:
        pod = get(cp, "pod", name, namespace)
        container = (pod or {}).get("spec", {}).get("containers", [{}])[0]
        envs = {e["name"]: e.get("value") for e in container.get("env", [])}
        return pod if envs.get("ROLLED") == "yes" else None

    # One worker at a time; nothing is added beside it, so a worker change never grows the cluster.
    first = wait_for("one pod to be replaced", lambda: deleting(namespace_pods(cp, namespace)))
    assert first == [worker0]
    operator_rounds(3)  # rounds that saw worker0 terminating, in which the operator could have done more
    now = namespace_pods(cp, namespace)
    assert sorted(now) == [head, worker0, worker1] and deleting(now) == [worker0], sorted(now)
    # The kubelet's part: the old worker stops; the operator then creates it anew, in the same generation.
    cp.kubectl("delete", "pod", worker0, "-n", namespace, "--grace-period=0", "--force")
    worker = wait_for("the new worker", lambda: rolled(worker0))
    assert generation_of(worker) == gen, "a worker group's change makes no new generation"
    operator_rounds(3)  # the operator made the new worker, so its rounds from here on see it not ready
    assert not deleting(namespace_pods(cp, namespace)), "the next worker waits until the new one is ready"
    mark_ready(cp, worker0, namespace)
    wait_for("the other worker to be replaced next", lambda: deleting(namespace_pods(cp, namespace)) == [worker1])
    assert not rolled(head) and not get(cp, "pod", head, namespace)["metadata"].get("deletionTimestamp"), (
        "the head runs no worker group: it is left alone"
    )


def test_a_changed_image_starts_a_new_generation_beside_the_old_one_within_the_surge(
    controlplane: ControlPlane, operator: OperatorProcess, namespace: str, operator_rounds: Callable[..., None]
) -> None:
    """The image is what every Ray node must run alike: a new generation, started next to the serving one (one pod
    above the spec's count, the default maxSurgePods), which stays whole until the new one runs the applications."""
    cp = controlplane
    apply(cp, [cluster_doc(workers=1)], namespace)
    old = wait_for("the head and a worker", lambda: (lambda ps: ps if len(ps) == 2 else None)(
        ray_pods(cp, "demo", namespace)))
    gen = generation_of(old[0])
    for pod in old:
        mark_ready(cp, pod["metadata"]["name"], namespace)
    wait_for("the active generation in the status",
             lambda: (get(cp, "scl", "demo", namespace) or {}).get("status", {}).get("activeGeneration") == gen)
    cp.kubectl("patch", "scl", "demo", "-n", namespace, "--type=merge",
               "-p", json.dumps({"spec": {"image": "ray:new"}}))

    def new_pods() -> list[dict[str, Any]]:
        return [p for p in ray_pods(cp, "demo", namespace) if generation_of(p) != gen]

    (new_head,) = wait_for("the new generation's first pod", new_pods)
    new_gen = generation_of(new_head)
    assert new_gen and new_gen != gen
    assert new_head["metadata"]["name"] == f"demo-{new_gen}-head", "the new generation starts with its head"
    assert new_head["spec"]["containers"][0]["image"] == "ray:new"
    assert head_pod(cp, "demo", namespace, new_gen) is not None
    wait_for("the new generation's head Service", lambda: get(cp, "service", f"demo-{new_gen}-head", namespace))
    def upgrading() -> dict[str, Any] | None:
        found = get(cp, "scl", "demo", namespace)["status"]
        roles = {g["name"]: g["role"] for g in found.get("generations") or []}
        mine = (found.get("upgrade") or {}).get("generation") == new_gen
        return found if mine and roles == {gen: "Active", new_gen: "Pending"} else None

    status = wait_for("the upgrade and both generations in the status", upgrading)
    assert status["activeGeneration"] == gen and not status["upgrade"].get("failure"), status["upgrade"]
    assert status["headPod"] == f"demo-{gen}-head"
    # The user-facing head Service stays on the serving generation.
    assert get(cp, "service", "demo-head", namespace)["spec"]["selector"][GENERATION_LABEL] == gen
    # Ready, the new head still gets no worker: one pod above the spec is the surge, and no application runs on
    # the new generation (no Serve answers here), so no old pod makes room either.
    mark_ready(cp, new_head["metadata"]["name"], namespace)

    def new_head_seen_ready() -> bool:
        found = get(cp, "scl", "demo", namespace)["status"]
        return any(g["name"] == new_gen and g.get("readyPods") == 1 for g in found.get("generations") or [])

    # The status, written last in a round, shows the operator's store has the new head Ready; then rounds that
    # all began after that.
    wait_for("the operator to see the new head ready", new_head_seen_ready)
    operator_rounds(3)
    now = namespace_pods(cp, namespace)
    wanted = sorted([*(p["metadata"]["name"] for p in old), new_head["metadata"]["name"]])
    assert sorted(now) == wanted and not deleting(now), sorted(now)
