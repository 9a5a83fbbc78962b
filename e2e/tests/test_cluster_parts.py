"""The real node under the trial: what a kubelet, containerd, kube-proxy and CoreDNS do that no stand-in did.

Pods run from the images built from the project's Dockerfiles; a memory limit is the kernel's; the operator runs
as its chart's Deployment, non-root with a read-only root filesystem; pods find Services by DNS name and reach
them (and the API server) through ClusterIPs.
"""
from __future__ import annotations

import json
import time
from typing import Any

import yaml
from trialkit import Trial

from serveplane.localcluster.operatorproc import NAMESPACE
from serveplane.localcluster.testkit import head_pod_name, wait_for

RUNTIME_IMAGE = "serveplane/runtime:0.1.0"


def run_pod(trial: Trial, name: str, script: str, *, memory: str = "256Mi", timeout: float = 120) -> dict[str, Any]:
    """Run `python -c script` in a pod of the runtime image to completion; the pod's last state."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": RUNTIME_IMAGE,
                    "command": ["python", "-c", script],
                    "resources": {"limits": {"memory": memory}, "requests": {"memory": memory}},
                }
            ],
        },
    }
    trial.cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = json.loads(trial.cp.kubectl("get", "pod", name, "-n", "default", "-o", "json").stdout)
        if current["status"].get("phase") in ("Succeeded", "Failed"):
            return current
        time.sleep(0.5)
    raise AssertionError(f"pod {name} did not finish: {current['status']}")


def test_the_node_is_a_real_kubelet_on_containerd(trial: Trial) -> None:
    nodes = json.loads(trial.cp.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == 1
    info = nodes[0]["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.37.2"
    assert info["containerRuntimeVersion"].startswith("containerd://")


def test_a_pod_resolves_services_by_name_and_reaches_the_api_server_through_its_cluster_ip(trial: Trial) -> None:
    script = """
import json, socket, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
api = socket.gethostbyname("kubernetes.default.svc.cluster.local")
serve = socket.gethostbyname("demo-serve.default.svc.cluster.local")
context = ssl.create_default_context(cafile=sa + "/ca.crt")
request = urllib.request.Request("https://kubernetes.default.svc/version",
                                 headers={"Authorization": "Bearer " + open(sa + "/token").read()})
version = json.load(urllib.request.urlopen(request, context=context, timeout=10))["gitVersion"]
hello = json.load(urllib.request.urlopen("http://demo-serve.default.svc:8000/hello/", timeout=10))
print(json.dumps({"api": api, "serve": serve, "version": version, "hello": hello}))
"""
    pod = run_pod(trial, "dns-check", script)
    logs = trial.cp.kubectl("logs", "dns-check", "-n", "default").stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    seen = json.loads(logs.strip().splitlines()[-1])
    services = {
        name: trial.cp.kubectl("get", "service", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout
        for name, ns in (("kubernetes", "default"), ("demo-serve", "default"))
    }
    assert seen["api"] == services["kubernetes"] and seen["serve"] == services["demo-serve"]
    assert seen["version"] == "v1.37.2"
    assert seen["hello"]["greeting"] == "Hello from serveplane"
    trial.cp.kubectl("delete", "pod", "dns-check", "-n", "default", "--wait=false")


def test_the_kubelet_enforces_a_memory_limit(trial: Trial) -> None:
    pod = run_pod(trial, "oom-check", "x = bytearray(512 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096])",
                  memory="64Mi")
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["reason"] == "OOMKilled", state
    trial.cp.kubectl("delete", "pod", "oom-check", "-n", "default", "--wait=false")


def test_the_operator_runs_from_its_chart_as_non_root_with_a_read_only_root(trial: Trial) -> None:
    pods = json.loads(
        trial.cp.kubectl("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=serveplane", "-o", "json").stdout
    )["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    name = pods[0]["metadata"]["name"]
    probe = (
        "import os\n"
        "uid = [l.split()[1] for l in open('/proc/self/status') if l.startswith('Uid:')][0]\n"
        "try:\n    open('/probe', 'w')\nexcept OSError as e:\n    refused = e.strerror\nelse:\n    refused = ''\n"
        "print(uid, repr(refused))\n"
    )
    out = trial.cp.kubectl("exec", "-n", NAMESPACE, name, "--", "python", "-c", probe).stdout.split(maxsplit=1)
    assert out[0] == "10001"
    assert "Read-only file system" in out[1], out


def test_the_kubelet_enforces_a_ray_pods_memory_limit(trial: Trial) -> None:
    """A ServeCluster's `resources` reach the kernel: the head's limit is its cgroup's, and a process in the pod
    that grows past it is OOM-killed while Ray's own processes stay up."""
    cluster = {
        "apiVersion": "serveplane.dev/v1alpha1",
        "kind": "ServeCluster",
        "metadata": {"name": "tight", "namespace": "default"},
        "spec": {
            "image": RUNTIME_IMAGE,
            "head": {"resources": {"limits": {"memory": "2Gi"}}, "rayStartParams": {"num-cpus": "1"}},
            "workerGroups": [],
        },
    }
    cp = trial.cp
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(cluster))
    try:
        head = head_pod_name(cp, "tight", "default")
        # Ray up, not the pod Ready: with no application, Serve's proxy reports an empty route table (503) and
        # the head's readiness waits for an application.
        wait_for(
            "Ray to run in the limited head",
            lambda: cp.kubectl("exec", "-n", "default", head, "--", "ray", "status", check=False).returncode == 0,
            timeout=240,
        )
        pod = json.loads(cp.kubectl("get", "pod", head, "-n", "default", "-o", "json").stdout)
        assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "2Gi"
        limit = cp.kubectl("exec", "-n", "default", head, "--", "cat",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip()
        assert int(limit) == 2 * 1024**3
        grow = "x = bytearray(3 * 1024**3); x[::4096] = b'1' * len(x[::4096]); print('survived')"
        result = cp.kubectl("exec", "-n", "default", head, "--", "python", "-c", grow, check=False)
        assert result.returncode == 137 and "survived" not in result.stdout, (result.returncode, result.stderr)
        status = cp.kubectl("exec", "-n", "default", head, "--", "ray", "status", check=False)
        assert status.returncode == 0, "Ray itself must survive the OOM kill of the process that grew"
    finally:
        cp.kubectl("delete", "scl", "tight", "-n", "default", "--wait=false")
